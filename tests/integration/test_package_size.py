"""Unzipped size of each zip function with its layers, as `make build` (sam build) produced them.

AWS refuses more than 250 MB unzipped (function plus layers); predict's budget is 150 MB so that
its cold start stays short. `make test` runs `make build` first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cfn import load

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
AWS_LIMIT_MB = 250.0
BUDGET_MB = {"PredictFunction": 150.0}


def tree_mb(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = Path(dirpath, f)
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 1e6


def zip_functions() -> dict[str, list[str]]:
    built = load(BUILD / "template.yaml")
    out = {}
    for name, res in built["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function" and props.get("PackageType", "Zip") == "Zip":
            out[name] = [
                layer["Ref"]
                for layer in props.get("Layers", [])
                if isinstance(layer, dict) and "Ref" in layer
            ]
    return out


def test_build_exists() -> None:
    assert (BUILD / "template.yaml").exists(), "run `make build` first (make test does)"


@pytest.mark.parametrize(
    "function", ["PredictFunction", "MonitorFunction", "TrainTriggerFunction", "AlertFunction"]
)
def test_unzipped_size_with_layers_is_within_budget(function: str) -> None:
    functions = zip_functions()
    assert function in functions, f"{function} is not a zip function in the built template"
    size = tree_mb(BUILD / function) + sum(tree_mb(BUILD / layer) for layer in functions[function])
    budget = BUDGET_MB.get(function, AWS_LIMIT_MB * 0.8)
    assert size <= budget, f"{function} with its layers is {size:.1f} MB unzipped; budget {budget:.0f} MB"


@pytest.mark.parametrize(
    "function", ["PredictFunction", "MonitorFunction", "TrainTriggerFunction", "AlertFunction"]
)
def test_built_function_imports_from_its_own_layers(function: str) -> None:
    """The handler imports with the layers' copies of our dependencies (boto3 is Lambda's own)."""
    import subprocess
    import sys

    layers = zip_functions()[function]
    path = [str(BUILD / layer / "python") for layer in layers] + [str(BUILD / function)]
    probe = (
        "import app, sys, modelops, numpy, pydantic; "
        "mods = [modelops, numpy, pydantic] + ([sys.modules['ai_edge_litert']] if 'ai_edge_litert' in sys.modules else []); "
        "bad = [m.__name__ for m in mods if not m.__file__.startswith(sys.argv[1])]; "
        "heavy = [m for m in ('tensorflow', 'scipy', 'pandas', 'keras') if m in sys.modules]; "
        "print(bad, heavy); sys.exit(1 if bad or heavy else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "AWS_DEFAULT_REGION": "us-east-1"}
    r = subprocess.run(
        [sys.executable, "-c", probe, str(BUILD)], env=env, capture_output=True, text=True, cwd=BUILD
    )
    assert r.returncode == 0, r.stdout + r.stderr
