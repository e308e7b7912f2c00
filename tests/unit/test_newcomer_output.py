"""What a newcomer sees: no colour escapes off a terminal, no TensorFlow noise from training jobs."""

from __future__ import annotations

import io
import logging

import pytest

from modelops_local import demo, twin
from modelops_local.twin import TF_DATASET_REWRITE_NOISE


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_demo_titles_are_plain_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    monkeypatch.setattr(demo.sys, "stdout", out)
    demo.step("Summary")
    assert out.getvalue() == "\n▶ Summary\n"


def test_demo_titles_are_bold_on_a_terminal_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert demo.use_colour(_Tty())
    monkeypatch.setenv("NO_COLOR", "")  # empty: no-color.org says ignore it
    assert demo.use_colour(_Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not demo.use_colour(_Tty())


def test_the_twin_drops_exactly_tensorflows_dataset_rewrite_line() -> None:
    noise = (
        "E0000 00:00:1796138552.771593   12900 node_def_util.cc:682] "
        f"{TF_DATASET_REWRITE_NOISE}: Op<name=MapDataset; ...> NodeDef: {{node ParallelMapDatasetV2/_15}}"
    )
    lines = [
        noise,
        "E0000 node_def_util.cc:682] NodeDef mentions attribute other_attr",
        "epoch 3/100 loss=0.41",
    ]
    records = [
        logging.LogRecord(
            "modelops.twin.training", logging.INFO, __file__, 1, "[%s] %s", ("job-1", line), None
        )
        for line in lines
    ]
    assert [r.getMessage() for r in records if twin._DROP_TF_NOISE.filter(r)] == [
        "[job-1] E0000 node_def_util.cc:682] NodeDef mentions attribute other_attr",
        "[job-1] epoch 3/100 loss=0.41",
    ]
