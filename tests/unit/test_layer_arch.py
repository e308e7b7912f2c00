"""The layers' Makefiles build for the architecture ``ARCH`` names (docs/deploy.md "Architecture"):
x86_64 by default, arm64 with aarch64 wheels, anything else refused; the LiteRT layer's import check
runs only where the host can load the target's libraries. pip is replaced by a stand-in (no network)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"shared": "build-SharedLayer", "litert": "build-LiteRTLayer"}

FAKE_PYTHON = """#!/bin/sh
# records its arguments; "-m pip ... --target DIR" makes DIR/ai_edge_litert; everything else succeeds
echo "$@" >> "$(dirname "$0")/calls"
if [ "$2" = pip ]; then
  while [ $# -gt 0 ]; do
    if [ "$1" = --target ]; then mkdir -p "$2/ai_edge_litert"; fi
    shift
  done
fi
exit 0
"""


def make(layer: str, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    proc = subprocess.run(
        [
            shutil.which("make") or "make",
            "-s",
            "-C",
            str(ROOT / "layers" / layer),
            LAYERS[layer],
            f"ARTIFACTS_DIR={tmp_path / 'out'}",
            f"PYTHON={python}",
            "HOST_ARCH=x86_64",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    return proc, calls


def pip_platforms(calls: str) -> set[str]:
    line = next(c for c in calls.splitlines() if c.startswith("-m pip install"))
    words = line.split()
    return {words[i + 1] for i, w in enumerate(words) if w == "--platform"}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_default_is_x86_64(layer: str, tmp_path: Path) -> None:
    proc, calls = make(layer, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert pip_platforms(calls) == {f"manylinux_{v}_x86_64" for v in ("2_17", "2_27", "2_28", "2_34")}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_arm64_asks_for_aarch64_wheels(layer: str, tmp_path: Path) -> None:
    proc, calls = make(layer, tmp_path, "ARCH=arm64")
    assert proc.returncode == 0, proc.stderr
    assert pip_platforms(calls) == {f"manylinux_{v}_aarch64" for v in ("2_17", "2_27", "2_28", "2_34")}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_an_unknown_arch_is_refused_before_anything_is_installed(layer: str, tmp_path: Path) -> None:
    proc, calls = make(layer, tmp_path, "ARCH=aarch64")
    assert proc.returncode != 0
    assert "ARCH must be x86_64 or arm64, not 'aarch64'" in proc.stderr
    assert calls == ""


def test_litert_import_check_runs_on_a_matching_host(tmp_path: Path) -> None:
    proc, calls = make("litert", tmp_path)
    assert "the stripped interpreter imports" in proc.stdout
    assert "from ai_edge_litert.interpreter import Interpreter" in calls


def test_litert_import_check_is_skipped_when_cross_building(tmp_path: Path) -> None:
    proc, calls = make("litert", tmp_path, "ARCH=arm64")
    assert proc.returncode == 0, proc.stderr
    assert "built for arm64 on a x86_64 host; the import check needs an arm64 host" in proc.stdout
    assert "ai_edge_litert.interpreter" not in calls
