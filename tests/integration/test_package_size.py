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
    "function",
    ["PredictFunction", "MonitorFunction", "TrainTriggerFunction", "AlertFunction", "GateFunction"],
)
def test_unzipped_size_with_layers_is_within_budget(function: str) -> None:
    functions = zip_functions()
    assert function in functions, f"{function} is not a zip function in the built template"
    size = tree_mb(BUILD / function) + sum(tree_mb(BUILD / layer) for layer in functions[function])
    budget = BUDGET_MB.get(function, AWS_LIMIT_MB * 0.8)
    assert size <= budget, f"{function} with its layers is {size:.1f} MB unzipped; budget {budget:.0f} MB"


# What the Lambda python3.12 runtime itself provides besides the standard library.
LAMBDA_RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")


@pytest.mark.parametrize(
    "function",
    ["PredictFunction", "MonitorFunction", "TrainTriggerFunction", "AlertFunction", "GateFunction"],
)
def test_built_function_imports_from_its_own_layers(function: str, tmp_path: Path) -> None:
    """The handler imports with nothing but the standard library, the runtime's boto3 and what its
    own layers carry: no site-packages of the development environment (python -S)."""
    import importlib.util
    import subprocess
    import sys

    runtime = tmp_path / "lambda-runtime"
    runtime.mkdir()
    for name in LAMBDA_RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name.removesuffix(".py"))
        assert spec is not None and spec.origin, name
        src = Path(spec.origin) if name.endswith(".py") else Path(spec.origin).parent
        (runtime / src.name).symlink_to(src)
    layers = zip_functions()[function]
    path = [str(BUILD / function)] + [str(BUILD / layer / "python") for layer in layers] + [str(runtime)]
    probe = (
        "import sys; sys.path[:0] = sys.argv[1].split(':'); import app; "
        "heavy = [m for m in ('tensorflow', 'scipy', 'pandas', 'keras') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {"AWS_DEFAULT_REGION": "us-east-1", "PATH": os.environ.get("PATH", "")}
    r = subprocess.run(
        [sys.executable, "-S", "-E", "-c", probe, os.pathsep.join(path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=BUILD / function,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_shared_layer_carries_the_training_source_bundle(tmp_path: Path) -> None:
    """train_trigger uploads the layer's modelops package as a SageMaker job's source: it must hold
    the trainer (shipped as source, never imported by a function)."""
    import subprocess
    import sys

    probe = (
        "import sys, io, tarfile, gzip; sys.path[:0] = sys.argv[1].split(':'); "
        "from modelops.compute import source_bundle; "
        "names = tarfile.open(fileobj=io.BytesIO(source_bundle())).getnames(); "
        "print('\\n'.join(names)); sys.exit(0 if 'modelops/ml/trainer.py' in names else 1)"
    )
    layer = BUILD / "SharedLayer" / "python"
    r = subprocess.run(
        [sys.executable, "-c", probe, f"{layer}"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        str(layer)
        in subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path[:0] = [sys.argv[1]]; import modelops; print(modelops.__file__)",
                str(layer),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
