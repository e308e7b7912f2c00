"""predict must never import TensorFlow, SciPy or pandas, not even transitively (size and cold start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "scipy", "pandas", "keras", "tflite_runtime", "jax", "torch")

PROBE = """
import json, sys
import functions.predict.app
import modelops.stages.predict.api, modelops.stages.predict.service, modelops.storage.capture_sink
from ai_edge_litert.interpreter import Interpreter
lean = "aws_lambda_powertools.event_handler" not in sys.modules
import modelops.stages.predict.routes
print(json.dumps({"lean": lean, "modules": sorted({m.split('.')[0] for m in sys.modules})}))
"""


def test_predict_imports_no_tensorflow_scipy_or_pandas() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = set(got["modules"])
    assert "ai_edge_litert" in loaded and "numpy" in loaded
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
    assert "aws_xray_sdk" not in loaded  # Tracer stays off unless asked for
    # the Powertools resolver (~150 ms of imports) is only loaded for the catalogue routes
    assert got["lean"]
