"""The README's commands, run as written against the twin (the blocks marked as checked)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelops_local.lifecycle import sklearn_table
from modelops_local.testing import find_aws_cli

ROOT = Path(__file__).resolve().parents[2]
MARK = "# checked by tests/e2e/test_readme.py"
pytestmark = [pytest.mark.slow, pytest.mark.twin]


def checked_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if b.startswith(MARK)]


def run_block(block: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    aws = find_aws_cli()
    assert aws, "the AWS CLI is missing: run `make tools` or set MODELOPS_AWS_CLI"
    path = os.pathsep.join([str(Path(sys.executable).parent), str(Path(aws).parent), os.environ["PATH"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELOPS_"))}
    env.update(
        {
            "PATH": path,
            "HOME": str(cwd),
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
    )
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_readme_shows_both_commands_on_its_first_screen() -> None:
    first = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make demo" in first and "make test" in first


def test_the_quick_tour_works_as_written(twin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocks = checked_blocks()
    assert len(blocks) == 2
    (tmp_path / ".modelops").mkdir()
    (tmp_path / ".modelops" / "local.json").write_text(json.dumps(twin.state()))
    spec = {
        "task": "multiclass",
        "target": "label",
        "training": {"backend": "local", "epochs": 30, "hidden_units": [8], "learning_rate": 0.02, "seed": 0},
    }
    (tmp_path / "model.json").write_text(json.dumps(spec))
    (tmp_path / "iris.csv").write_bytes(sklearn_table("iris").csv_bytes())

    first = run_block(blocks[0], tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    twin.wait_idle(300)

    second = run_block(blocks[1], tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert re.search(r"^iris\s+versions \[1\]\s+production=v1", out, flags=re.M), out
    assert '"model": "iris"' in out and '"version": 1' in out
    assert '"probabilities"' in out
    assert "iris: 1 version(s), production v1" in out
    twin.wait_idle()
