"""The monitor against Evidently on the same 1,000,000 captured rows x 20 features, in the same run.

``run()`` returns two rows for ``make bench`` (ratio > 1 means we are better):

* ``monitor_vs_evidently_time`` (s): the monitor's own path over the capture files
  (``bench_monitor``'s subprocess: ``WindowScan`` + ``evaluate``, one core) against Evidently 0.7's
  ``DataDriftPreset`` (``Report([DataDriftPreset()]).run(current, reference)``) on the same rows given
  as pandas DataFrames (the capture decoding is not charged to Evidently), also pinned to one core.
  Target: at least 40x faster.
* ``monitor_vs_evidently_memory`` (MB): the two subprocesses' peak RSS (VmHWM), interpreter and
  libraries included. Target: at least 10x less.

The rows: ``bench_monitor.write_workload`` (the monitor bench's capture files, one feature shifted by
one standard deviation); the current DataFrame holds exactly the rows the files carry (decoded once by
``capture.decode_line`` before timing), the reference DataFrame the 20,000 training rows the
baseline was computed from. Both sides must find the shifted feature, else the bench fails.

Evidently 0.7 imports only with pandas < 3, so it runs in its own virtualenv (as the command-line
tools do): ``.tools/evidently`` from ``requirements/tool-evidently.txt`` (``make .tools/evidently/.stamp``),
or the interpreter named by ``MODELOPS_EVIDENTLY_PYTHON``. Without one the bench fails and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import bench_monitor

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".tools" / "evidently"

_WRITE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from bench_monitor import write_workload
    from modelops.domain.capture import decode_line
    work = Path(json.loads(sys.argv[1])["dir"])
    wl = write_workload(work)
    xs = []
    for path in wl["files"]:
        with open(path, "rb") as fh:
            xs.extend(decode_line(line).x for line in fh)
    np.save(work / "current.npy", np.vstack(xs))
    print(json.dumps(wl))
    """
)

_EVIDENTLY = textwrap.dedent(
    """
    import json, os, sys, time
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import numpy as np
    import pandas as pd
    import evidently
    from evidently import Report
    from evidently.presets import DataDriftPreset
    work = json.loads(sys.argv[1])
    names = work["names"]
    t0 = time.perf_counter()
    reference = pd.DataFrame(np.load(work["train"]), columns=names)
    current = pd.DataFrame(np.load(work["current"]), columns=names)
    t1 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    t2 = time.perf_counter()
    drifted, method = [], ""
    for metric in snapshot.dict()["metrics"]:
        cfg = metric.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift") and metric["value"] >= cfg.get("threshold", 0.1):
            drifted.append(cfg["column"])
            method = cfg.get("method", "")
    print(json.dumps({"seconds": t2 - t1, "load": t1 - t0, "rows": len(current), "drifted": sorted(drifted),
                      "method": method, "version": evidently.__version__, "pandas": pd.__version__,
                      "peak_mb": peak_mb()}))
    """
)


def evidently_python() -> Path:
    """The interpreter of Evidently's own virtualenv; a clear error when there is none."""
    path = Path(os.environ.get("MODELOPS_EVIDENTLY_PYTHON") or VENV / "bin" / "python")
    if not path.exists():
        raise RuntimeError(
            f"Evidently's virtualenv is missing ({path}): run `make .tools/evidently/.stamp` (it installs "
            "requirements/tool-evidently.txt) or set MODELOPS_EVIDENTLY_PYTHON to a Python with evidently 0.7 "
            "and pandas < 3"
        )
    return path


def _evidently(arg: dict[str, Any], python: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # its own site-packages only
    out = subprocess.run(
        [str(python), "-c", bench_monitor._PEAK + _EVIDENTLY, json.dumps(arg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if out.returncode:
        raise RuntimeError(f"the Evidently run failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run() -> list[dict[str, Any]]:
    python = evidently_python()  # before minutes of data generation
    shifted = f"f{bench_monitor.SHIFTED}"
    with tempfile.TemporaryDirectory(prefix="bench-evidently-") as tmp:
        work = Path(tmp)
        wl = bench_monitor._subprocess(_WRITE, {"dir": str(work)})
        arg = {
            "baseline": str(work / "baseline.json"),
            "train": str(work / "train.npy"),
            "current": str(work / "current.npy"),
            "files": wl["files"],
            "names": wl["names"],
            "ts": wl["ts"],
        }
        ours = bench_monitor._subprocess(bench_monitor._OURS, arg)
        theirs = _evidently(arg, python)
    if ours["rows"] != bench_monitor.ROWS or ours["drifted"] != [shifted]:
        raise RuntimeError(f"the monitor did not see the workload it was given: {ours}")
    if theirs["rows"] != bench_monitor.ROWS or shifted not in theirs["drifted"]:
        raise RuntimeError(f"Evidently did not see the workload it was given: {theirs}")
    peer = f"Evidently {theirs['version']} DataDriftPreset (pandas {theirs['pandas']})"
    same = (
        f"same {ours['rows']:,} rows x {len(wl['names'])} features (reference: the {bench_monitor.TRAIN_ROWS:,} "
        f"training rows), one core each"
    )
    time_ratio = theirs["seconds"] / ours["seconds"]
    mem_ratio = theirs["peak_mb"] / ours["peak_mb"]
    return [
        {
            "name": "monitor_vs_evidently_time",
            "value": round(ours["seconds"], 3),
            "unit": "s",
            "peer": peer,
            "peer_value": round(theirs["seconds"], 3),
            "ratio": round(time_ratio, 1),
            "target": ">= 40x",
            "notes": (
                f"{same}. Ours: from the {len(wl['files'])} capture files ({wl['bytes'] / 1e6:.0f} MB of "
                f"JSON lines) to the verdict. Evidently: Report.run on DataFrames already in memory "
                f"(building them, not charged: {theirs['load']:.2f} s; its numeric test: {theirs['method']}). "
                f"Drifted: ours {ours['drifted']}, Evidently {theirs['drifted']}."
            ),
        },
        {
            "name": "monitor_vs_evidently_memory",
            "value": round(ours["peak_mb"], 1),
            "unit": "MB",
            "peer": peer,
            "peer_value": round(theirs["peak_mb"], 1),
            "ratio": round(mem_ratio, 1),
            "target": ">= 10x",
            "notes": f"peak RSS (VmHWM) of each subprocess, interpreter and libraries included; {same}.",
        },
    ]


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for r in run():
        print(
            f"{r['name']:<30} {r['value']:>10} {r['unit']:<3} peer {r['peer_value']:>10}  ratio {r['ratio']}"
        )
        print(f"    {r['notes']}")
