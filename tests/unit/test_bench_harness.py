"""The benchmark modules that issue 20 added: their inputs are what they claim, their failures are clear."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_evidently  # noqa: E402
import bench_validator  # noqa: E402

from modelops.domain.dataset import Limits, validate_stream  # noqa: E402
from modelops.domain.spec import parse_spec  # noqa: E402


def test_evidently_bench_without_its_virtualenv_names_the_make_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given no Evidently interpreter where the bench looks for one
    monkeypatch.setenv("MODELOPS_EVIDENTLY_PYTHON", str(tmp_path / "nowhere" / "python"))
    # When / Then: the bench stops before generating data and says how to build the environment
    with pytest.raises(RuntimeError, match=r"make \.tools/evidently/\.stamp"):
        bench_evidently.run()


def test_evidently_bench_uses_the_named_interpreter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    monkeypatch.setenv("MODELOPS_EVIDENTLY_PYTHON", str(python))
    assert bench_evidently.evidently_python() == python


def test_validator_bench_csv_is_a_valid_dataset_with_the_rows_it_reports(tmp_path: Path) -> None:
    # Given the bench's generator, small
    data = bench_validator.write_csv(tmp_path / "d.csv", target_bytes=200_000)
    # When the validator reads it
    report = validate_stream(
        [Path(data["path"]).read_bytes()], parse_spec({"task": "regression", "target": "y"}), Limits()
    )
    # Then it is accepted whole, with the three missing cells the generator writes
    assert report.ok, report.problems
    assert report.rows == data["rows"] == 10_000
    assert sum(report.missing.values()) == 3
    assert report.features == [f"f{i}" for i in range(bench_validator.FEATURES)]
