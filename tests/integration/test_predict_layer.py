"""The LiteRT layer (layers/litert) strips files predict never loads: an interpreter must still load
and run every kind of model convert produces (float32 and dynamic int8) without them.

The layer's Makefile installs the same ai-edge-litert wheel (pinned in layers/litert/requirements.txt)
and deletes the paths in layers/litert/strip.txt; here the installed package is copied and stripped
the same way (no download), and a fresh process runs the models from the copy alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import ai_edge_litert
import numpy as np
import pytest

from tests.integration.predict_support import FEATURES, BuiltModel, models

ROOT = Path(__file__).resolve().parents[2]
STRIP = [
    line.strip()
    for line in (ROOT / "layers" / "litert" / "strip.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import ai_edge_litert
from ai_edge_litert.interpreter import Interpreter
assert ai_edge_litert.__file__.startswith(sys.argv[1]), ai_edge_litert.__file__
out = {}
for name, path in json.loads(sys.argv[2]).items():
    it = Interpreter(model_path=path, num_threads=1)
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    x = np.asarray(json.loads(sys.argv[3]), dtype=np.float32)
    it.resize_tensor_input(i, list(x.shape), strict=False)
    it.allocate_tensors()
    it.set_tensor(i, x)
    it.invoke()
    out[name] = it.get_tensor(o).tolist()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def stripped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("litert-layer")
    pkg = site / "ai_edge_litert"
    shutil.copytree(Path(ai_edge_litert.__file__).parent, pkg)
    for rel in STRIP:
        target = pkg / rel
        assert target.exists(), f"strip.txt names {rel}, which ai-edge-litert does not ship"
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return site


def test_strip_list_removes_the_large_unused_parts(stripped: Path) -> None:
    size = sum(p.stat().st_size for p in stripped.rglob("*") if p.is_file()) / 1e6
    assert size < 30, f"stripped LiteRT is {size:.1f} MB"
    assert not (stripped / "ai_edge_litert" / "libLiteRtWebGpuAccelerator.so").exists()


def test_stripped_interpreter_runs_float32_and_int8_models(stripped: Path) -> None:
    built: dict[str, BuiltModel] = models()
    names = ["binary", "binary_int8", "multiclass", "regression"]
    x = np.random.default_rng(0).uniform(0, 8, size=(5, len(FEATURES))).astype(np.float32)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN,
            str(stripped),
            json.dumps({n: str(built[n].path) for n in names}),
            json.dumps(x.tolist()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("binary", "multiclass", "regression"):
        np.testing.assert_allclose(got[name], built[name].keras_predict(x), atol=1e-5)
    np.testing.assert_allclose(got["binary_int8"], built["binary"].keras_predict(x), atol=0.05)
