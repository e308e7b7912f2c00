"""The model spec (datasets/{model}/model.json): typed, strict, and every error names its field."""

from __future__ import annotations

import json

import pytest

from modelops.domain.errors import SpecError
from modelops.domain.spec import ModelSpec, check_model_name, parse_spec

MINIMAL = {"task": "regression", "target": "y"}


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = parse_spec(json.dumps(MINIMAL).encode())
    assert spec.features is None
    assert spec.training.backend == "sagemaker"
    assert spec.training.hidden_units == [64, 32]
    assert spec.training.validation_split == pytest.approx(0.2)
    assert spec.metric == "rmse"


def test_full_design_example_parses() -> None:
    raw = {
        "task": "binary",
        "target": "label",
        "features": ["a", "b"],
        "training": {
            "backend": "batch",
            "epochs": 5,
            "batch_size": 8,
            "hidden_units": [4],
            "validation_split": 0.25,
            "seed": 7,
            "instance_type": "ml.g5.2xlarge",
        },
        "conversion": {"quantize": "dynamic_int8", "parity_tolerance": 1e-3},
        "promotion": {"metric": "auc", "min_improvement": 0.01, "canary_weight": 0.1},
        "monitoring": {"psi_threshold": 0.3, "capture_sample_rate": 0.5},
    }
    spec = parse_spec(raw)
    assert isinstance(spec, ModelSpec)
    assert spec.training.instance_type == "ml.g5.2xlarge"
    assert spec.metric == "auc"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({**MINIMAL, "colour": "red"}, "colour: unknown key"),
        ({**MINIMAL, "training": {"epochz": 3}}, "training.epochz: unknown key"),
        ({**MINIMAL, "task": "ranking"}, "task"),
        ({"task": "regression"}, "target"),
        ({**MINIMAL, "training": {"epochs": 0}}, "training.epochs"),
        ({**MINIMAL, "training": {"validation_split": 0.95}}, "training.validation_split"),
        ({**MINIMAL, "training": {"hidden_units": [0]}}, "training.hidden_units.0"),
        ({**MINIMAL, "training": {"instance_type": "g5.xlarge"}}, "training.instance_type"),
        ({**MINIMAL, "training": {"backend": "kubernetes"}}, "training.backend"),
        ({**MINIMAL, "features": []}, "features"),
    ],
)
def test_bad_values_are_rejected_with_the_field_named(raw: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(raw)
    assert field in str(exc.value)
    assert exc.value.code == "invalid_spec"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({**MINIMAL, "features": ["a", "a"]}, "duplicate"),
        ({**MINIMAL, "features": ["a", "y"]}, "target column cannot also be a feature"),
        ({**MINIMAL, "promotion": {"metric": "auc"}}, "does not apply to regression"),
        ({"task": "binary", "target": "y", "promotion": {"metric": "rmse"}}, "does not apply to binary"),
    ],
)
def test_inconsistent_specs_are_rejected(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        parse_spec(raw)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", "null"])
def test_not_a_json_object_is_rejected(raw: bytes | str) -> None:
    with pytest.raises(SpecError):
        parse_spec(raw)


@pytest.mark.parametrize("name", ["demo", "a", "diabetes-2", "x" * 40])
def test_good_model_names(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "Demo", "-demo", "de_mo", "x" * 41, "a/b"])
def test_bad_model_names(name: str) -> None:
    with pytest.raises(SpecError):
        check_model_name(name)


# ---- the stack's spend policy (issue 17: uploaders must not choose GPU spend) ---------------------------
def test_spend_policy_refuses_an_instance_type_the_stack_does_not_allow() -> None:
    from modelops.domain.errors import SpendLimitError
    from modelops.domain.spec import SpendPolicy

    policy = SpendPolicy.parse("ml.m5.large, ml.g5.xlarge", 4)
    policy.check(
        parse_spec({"task": "regression", "target": "y", "training": {"instance_type": "ml.g5.xlarge"}})
    )
    with pytest.raises(SpendLimitError, match=r"training\.instance_type 'ml\.p4d\.24xlarge'") as err:
        policy.check(
            parse_spec(
                {"task": "regression", "target": "y", "training": {"instance_type": "ml.p4d.24xlarge"}}
            )
        )
    assert err.value.code == "spend_limit" and "ml.m5.large" in str(err.value)


def test_spend_policy_caps_parallel_trials_and_empty_allows_any() -> None:
    from modelops.domain.errors import SpendLimitError
    from modelops.domain.spec import SpendPolicy

    search = {"max_trials": 8, "max_parallel": 8, "learning_rate": {"min": 1e-4, "max": 1e-2}}
    spec = parse_spec({"task": "regression", "target": "y", "training": {"search": search}})
    with pytest.raises(SpendLimitError, match=r"training\.search\.max_parallel 8 .* \(4 trials at once\)"):
        SpendPolicy.parse("", 4).check(spec)
    SpendPolicy.parse("", 0).check(spec)  # no cap configured: the spec's own limits apply
    SpendPolicy.parse("", 8).check(spec)


def test_split_key_is_optional_and_never_the_target() -> None:
    """Issue 14: ``training.split_key`` names the column whose value decides a row's side."""
    spec = parse_spec({**MINIMAL, "training": {"split_key": "customer"}})
    assert spec.training.split_key == "customer"
    # absent, it is left out of the canonical JSON (job names of existing specs do not change)
    assert "split_key" not in parse_spec(MINIMAL).model_dump(mode="json")["training"]
    with pytest.raises(SpecError, match="training.split_key"):
        parse_spec({**MINIMAL, "training": {"split_key": "y"}})
    with pytest.raises(SpecError, match="training.split_key"):
        parse_spec({**MINIMAL, "training": {"split_key": ""}})


def test_spend_policy_counts_every_batch_trial_as_parallel() -> None:
    """A Batch search is one array job whose children all run at once: max_parallel does not bound it."""
    from modelops.domain.errors import SpendLimitError
    from modelops.domain.spec import SpendPolicy

    search = {"max_trials": 10, "max_parallel": 1, "learning_rate": {"min": 1e-4, "max": 1e-2}}
    batch = parse_spec(
        {"task": "regression", "target": "y", "training": {"backend": "batch", "search": search}}
    )
    with pytest.raises(SpendLimitError, match=r"training\.search\.max_trials 10 .* on Batch"):
        SpendPolicy.parse("", 4).check(batch)
    sagemaker = parse_spec({"task": "regression", "target": "y", "training": {"search": search}})
    SpendPolicy.parse("", 4).check(sagemaker)  # a tuning job runs max_parallel at once
