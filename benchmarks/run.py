"""`make bench`: run every benchmark, write benchmarks/results.json, print a table.

Each benchmark module exposes ``run() -> list[dict]`` returning rows
``{"name", "value", "unit", "peer", "peer_value", "ratio"}`` (ratio > 1 means we are better),
measured against its peer in the same run (these machines are noisy; absolute numbers are not
compared across runs). Optional keys: ``target``, ``notes``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = [
    "bench_predict",
    "bench_monitor",
    "bench_load",
    "bench_cost",
    "bench_evidently",
    "bench_validator",
    "bench_fanout",
]
KEYS = ("name", "value", "unit", "peer", "peer_value", "ratio")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def table(rows: list[dict]) -> str:
    head = ["name", "value", "unit", "peer", "peer value", "ratio", "target"]
    body = [
        [
            r["name"],
            _fmt(r["value"]),
            r["unit"],
            r["peer"],
            _fmt(r["peer_value"]),
            _fmt(r["ratio"]) + "x",
            str(r.get("target", "")),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=None, help="module names to run (default: all)")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    rows: list[dict] = []
    failed = []
    for name in args.only or MODULES:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            mod = importlib.import_module(name)
            got = mod.run()
        except Exception:  # a broken benchmark is reported, the others still run
            traceback.print_exc()
            failed.append(name)
            continue
        for row in got:
            missing = [k for k in KEYS if k not in row]
            if missing:
                raise ValueError(f"{name}: row {row.get('name')} lacks {missing}")
        rows.extend(got)
        print(f"   {len(got)} results in {time.perf_counter() - started:.1f} s", flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    print()
    print(table(rows))
    print(f"\nwrote {args.out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
