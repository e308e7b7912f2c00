"""Batch scoring's row reading (modelops.stages.scoring): the plan's cut of an input into row ranges,
and rows read exactly as predict reads them (categorical features included)."""

from __future__ import annotations

import numpy as np
import pytest

from modelops.domain.encoding import Feature, InputSchema
from modelops.stages.predict.parse import to_encoded
from modelops.stages.predict.serving import ModelInfo
from modelops.stages.scoring import rows as csvrows
from modelops.stages.scoring.run import scan

SCHEMA = InputSchema((Feature("age"), Feature("plan", "categorical", ("basic", "pro", "team"))))
INFO = ModelInfo("m", 1, "binary", ("age", "plan"), (0, 1), 1.0, "tflite", "0" * 64, SCHEMA)


@pytest.mark.parametrize("trailing", [b"\n", b""])
@pytest.mark.parametrize("block", [1, 7, 1 << 20])
def test_the_plan_cuts_rows_at_line_boundaries_whatever_the_read_blocks(trailing: bytes, block: int) -> None:
    body = b"a,b\n" + b"\n".join(f"{i},{i * 2}".encode() for i in range(1, 26)) + trailing
    got = scan((body[i : i + block] for i in range(0, len(body), block)), 10)
    assert got.rows == 25 and got.header == b"a,b\n"
    chunks = [body[a:b] for a, b in got.bounds]
    assert [c.count(b"\n") + (0 if c.endswith(b"\n") else 1) for c in chunks] == [10, 10, 5]
    assert b"".join(chunks) == body[4:]
    assert chunks[1].startswith(b"11,22\n")


def test_a_header_alone_has_no_rows() -> None:
    assert scan([b"a,b\n"], 10).rows == 0 and scan([b"a,b"], 10).bounds == []


def test_rows_encode_as_predict_encodes_the_same_values() -> None:
    data = b"1,pro,31\n2, team ,40.5\n3,enterprise,22\n"
    parsed = csvrows.parse_rows(data, 1, ["id", "plan", "age"], SCHEMA)
    want, oov = to_encoded([[31, "pro"], [40.5, " team "], [22, "enterprise"]], INFO)
    np.testing.assert_array_equal(parsed.x, want)
    assert parsed.oov == oov == {"plan": 1}
    assert parsed.rows.tolist() == [1, 2, 3] and parsed.rejects == []


def test_rows_predict_would_refuse_are_rejects_with_their_reason() -> None:
    data = "\n".join(["5,NA", ",pro", "x,pro", "1e39,pro", "1,2,3", "", "7," + "p" * 201, "1_0,pro"]).encode()
    parsed = csvrows.parse_rows(data + b"\n\xff\xfe,pro\n", 1, ["age", "plan"], SCHEMA)
    assert parsed.x.shape == (0, 2) and parsed.lines == 9
    reasons = dict(parsed.rejects)
    assert reasons == {
        1: "plan is missing ('NA'); expected a category",
        2: "age is missing; expected a number",
        3: "age is 'x'; expected a number",
        4: "age is not a finite float32 number",
        5: "has 3 fields; the header has 2",
        6: "empty row",
        7: "plan is 201 characters long; a category has at most 200",
        8: "age is '1_0'; expected a number",
        9: "the row is not UTF-8",
    }


def test_a_header_without_a_feature_cannot_be_scored() -> None:
    with pytest.raises(csvrows.InputError, match="lacks the model's feature"):
        csvrows.columns_for(["id", "age"], SCHEMA)
