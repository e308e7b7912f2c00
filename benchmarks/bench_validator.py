"""The dataset validator's read speed: ``domain.dataset.validate_stream`` over a 50 MB CSV, one core.

``run()`` returns the row ``validator_mb_s`` (MB/s, higher is better; ratio = ours / peer, so > 1 means
we are faster): the streaming validator (``train_trigger``'s check of every dataset: parse, types,
missing values, classes, the duplicate estimate, SHA-256) reading the file in 8 MiB chunks as it reads
an S3 body, against the floor any Python CSV check pays: the ``csv`` module's reader iterating the same
rows (no checks). Each runs in its own subprocess pinned to one core; the validator's peak RSS (VmHWM) is
in the notes (its memory is meant to stay flat whatever the file's size), and its CPU seconds beside the
wall-clock ones (a core shared with other work shows as wall > CPU: the MB/s is then lower).

The validator checks runs of plain lines (no quotes) a column at a time (the fast path), falling back to
the row-at-a-time path for anything else, with the same report either way (tests/unit/test_dataset_fast.py).

The data: a header and 20 numeric feature columns plus a numeric target (``regression``), values
written as ``repr`` of float64 rounded to 6 digits, about 50 MB; a few empty cells (missing values).
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from bench_monitor import _subprocess

FEATURES = 20
TARGET_BYTES = 50_000_000
CHUNK = 8 * 1024 * 1024


def write_csv(path: Path, target_bytes: int = TARGET_BYTES, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(FEATURES)]
    rows = 0
    with open(path, "w", encoding="ascii", newline="") as fh:
        fh.write(",".join([*names, "y"]) + "\n")
        while fh.tell() < target_bytes:
            x = np.round(rng.normal(size=(10_000, FEATURES + 1)) * 100, 6)
            cells = [list(map(repr, row)) for row in x.tolist()]
            if rows == 0:  # a few missing feature values
                for i in range(3):
                    cells[i][i] = ""
            fh.write("".join(",".join(row) + "\n" for row in cells))
            rows += x.shape[0]
    return {"path": str(path), "rows": rows, "bytes": path.stat().st_size}


_OURS = textwrap.dedent(
    """
    import json, os, sys, time
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from modelops.domain.dataset import Limits, validate_stream
    from modelops.domain.spec import parse_spec
    work = json.loads(sys.argv[1])
    spec = parse_spec({"task": "regression", "target": "y"})
    def chunks():
        with open(work["path"], "rb") as fh:
            while chunk := fh.read(work["chunk"]):
                yield chunk
    t0, c0 = time.perf_counter(), time.process_time()
    report = validate_stream(chunks(), spec, Limits(), size=work["bytes"])
    t1, c1 = time.perf_counter(), time.process_time()
    print(json.dumps({"seconds": t1 - t0, "cpu": c1 - c0, "ok": report.ok, "rows": report.rows,
                      "problems": [p.code for p in report.problems][:5], "peak_mb": peak_mb()}))
    """
)

_PEER = textwrap.dedent(
    """
    import csv, io, json, os, sys, time
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    work = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    rows = 0
    with open(work["path"], newline="", encoding="utf-8") as fh:
        for _ in csv.reader(fh):
            rows += 1
    t1 = time.perf_counter()
    print(json.dumps({"seconds": t1 - t0, "rows": rows - 1, "peak_mb": peak_mb()}))
    """
)


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-validator-") as tmp:
        data = write_csv(Path(tmp) / "data.csv")
        arg = {**data, "chunk": CHUNK}
        ours = _subprocess(_OURS, arg)
        peer = _subprocess(_PEER, arg)
    if not ours["ok"] or ours["rows"] != data["rows"] or peer["rows"] != data["rows"]:
        raise RuntimeError(f"the validator bench did not read the file it wrote: {ours} {peer} {data}")
    mb = data["bytes"] / 1e6
    ours_mb_s, peer_mb_s = mb / ours["seconds"], mb / peer["seconds"]
    return [
        {
            "name": "validator_mb_s",
            "value": round(ours_mb_s, 1),
            "unit": "MB/s",
            "peer": "csv.reader, rows only (the floor)",
            "peer_value": round(peer_mb_s, 1),
            "ratio": round(ours_mb_s / peer_mb_s, 2),
            "notes": (
                f"1 core; {mb:.0f} MB, {data['rows']:,} rows x {FEATURES + 1} numeric columns, read in "
                f"{CHUNK >> 20} MiB chunks; validate_stream {ours['seconds']:.2f} s (CPU {ours['cpu']:.2f} s; "
                f"plain lines checked a column at a time), peak RSS (VmHWM) "
                f"{ours['peak_mb']:.0f} MB; csv.reader {peer['seconds']:.2f} s. One 300 s invocation at this "
                f"speed reads about {ours_mb_s * 300 / 1000:.1f} GB."
            ),
        }
    ]


if __name__ == "__main__":  # pragma: no cover
    for r in run():
        print(f"{r['name']:<16} {r['value']:>8} {r['unit']} peer {r['peer_value']:>8}  ratio {r['ratio']}")
        print(f"    {r['notes']}")
