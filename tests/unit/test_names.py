"""Names checked with ``re.match`` must end at the end of the string: ``$`` also matches before a
trailing newline, so ``"demo\\n"`` passed as a model name, an alias and a job name (issue 17)."""

from __future__ import annotations

import pytest

from modelops.domain.alias import ALIAS_RE
from modelops.domain.errors import InvalidNameError
from modelops.domain.search import JOB_NAME_RE
from modelops.domain.spec import MODEL_NAME_RE, check_model_name


@pytest.mark.parametrize(
    ("pattern", "good"),
    [(MODEL_NAME_RE, "demo-1"), (ALIAS_RE, "production"), (JOB_NAME_RE, "modelops-demo-0123456789ab")],
)
def test_a_trailing_newline_is_not_part_of_a_name(pattern, good) -> None:  # type: ignore[no-untyped-def]
    assert pattern.match(good)
    assert not pattern.match(good + "\n")
    assert not pattern.match(good + "\n\n")


def test_check_model_name_refuses_a_trailing_newline() -> None:
    assert check_model_name("demo") == "demo"
    with pytest.raises(InvalidNameError):
        check_model_name("demo\n")
