"""A training entrypoint for tests/integration/test_twin_security.py: it reports, in its model
artifact (``probe.json``), what a job's process sees: its working directory, its import path, the
channel folders' files and whether a ``sitecustomize`` came from the downloaded data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    data = Path(os.environ["SM_INPUT_DATA_DIR"])
    sitecustomize = sys.modules.get("sitecustomize")
    report = {
        "cwd": os.getcwd(),
        "cwd_entries": sorted(os.listdir(".")),
        "sys_path": [str(Path(p).resolve()) if p else os.getcwd() for p in sys.path],
        "data_dir": str(data.resolve()),
        "data_files": sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()),
        "sitecustomize": getattr(sitecustomize, "__file__", None),
        "pwned": os.environ.get("TWIN_PROBE_PWNED"),
        "environment": {k: v for k, v in os.environ.items() if k.startswith("MODELOPS_")},
    }
    (Path(os.environ["SM_MODEL_DIR"]) / "probe.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
