"""`modelops models ...` against moto: clear errors, non-zero exit codes, no partial writes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from modelops.domain import canary
from modelops.storage.registry import Registry
from modelops_cli.main import cli


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path, s3, registry_bucket):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no .modelops/local.json here
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    reg = Registry(s3, registry_bucket)
    for payload in (b"1", b"2"):
        reg.publish_version("demo", {"tflite": ("model.tflite", payload)}, {"metrics": {"rmse": 0.5}})
    return reg


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_list_show_promote_rollback(env: Registry) -> None:
    assert run("models", "promote", "demo", "1").exit_code == 0
    r = run("models", "promote", "demo", "2")
    assert r.exit_code == 0 and "v2" in r.output
    listed = json.loads(run("models", "list", "--json").output)
    assert listed == [{"model": "demo", "versions": [1, 2], "aliases": {"production": 2}}]
    shown = json.loads(run("models", "show", "demo", "2").output)
    assert shown["version"] == 2 and shown["metrics"] == {"rmse": 0.5}
    r = run("models", "rollback", "demo")
    assert r.exit_code == 0 and env.resolve("demo") == 1


def test_promoting_the_canary_finishes_it(env: Registry) -> None:
    env.promote("demo", 1)
    env.update_alias("demo", "production", lambda cur: canary.start(cur, 2, 0.1), reason="gate: canary")
    assert env.get_alias("demo")[0].canary == {"version": 2, "weight": 0.1}
    r = run("models", "promote", "demo", "2")
    assert r.exit_code == 0 and "demo production -> v2 (previous: v1)" in r.output
    doc = env.get_alias("demo")[0]
    assert (doc.version, doc.previous, doc.canary) == (2, 1, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "promote", "demo", "7"), "version_not_found"),
        (("models", "promote", "ghost", "1"), "model_not_found"),
        (("models", "rollback", "demo"), "alias_not_found"),
        (("models", "show", "ghost"), "model_not_found"),
        (("models", "show", "demo", "9"), "version_not_found"),
    ],
)
def test_errors_exit_non_zero_with_a_clear_message(
    env: Registry, args: tuple[str, ...], message: str
) -> None:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output


def test_malformed_alias_exits_non_zero(env: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket="registry", Key="models/demo/aliases/production.json", Body=b"{oops")
    r = CliRunner().invoke(cli, ["models", "promote", "demo", "1"])
    assert r.exit_code != 0 and "corrupt_document" in r.output
    assert (
        s3.get_object(Bucket="registry", Key="models/demo/aliases/production.json")["Body"].read() == b"{oops"
    )


def test_empty_registry(monkeypatch: pytest.MonkeyPatch, tmp_path, s3, registry_bucket) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    r = run("models", "list")
    assert r.exit_code == 0 and "no models" in r.output


def test_missing_bucket_setting_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path, moto) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELOPS_REGISTRY_BUCKET_NAME", raising=False)
    r = CliRunner().invoke(cli, ["models", "list"])
    assert r.exit_code != 0 and "MODELOPS_REGISTRY_BUCKET_NAME" in r.output


def test_bucket_that_does_not_exist(monkeypatch: pytest.MonkeyPatch, tmp_path, moto) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["models", "--bucket", "no-such-bucket", "list"])
    assert r.exit_code != 0 and "does not exist" in r.output


@pytest.mark.parametrize(
    "args", [("models", "promote", "Bad_Name", "1"), ("models", "promote", "demo", "1", "--alias", "../x")]
)
def test_invalid_names_are_refused(env: Registry, args: tuple[str, ...]) -> None:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code != 0 and "invalid_name" in r.output


# ---------------------------------------------------------------------------- compare (issue 14)
@pytest.fixture
def scored(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path, s3, registry_bucket):  # type: ignore[no-untyped-def]
    """v1 off by a bias, v2 with the true weights, 300 held-out rows; LiteRT replaced by the linear
    stand-in of tests/unit/gate_models.py (the registry, checksums and gate code are the real ones)."""
    from modelops.stages import gate as gating
    from tests.unit.gate_models import TRUE_W, LinearInterpreter, publish, rows_csv, store_heldout

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    monkeypatch.setattr(gating, "litert_interpreter", LinearInterpreter)
    reg = Registry(s3, registry_bucket, actor="gate")
    publish(reg, TRUE_W, 0.6, claims={"rmse": 0.2})
    publish(reg, TRUE_W, 0.0, claims={"rmse": 0.25})
    if "unscored" not in request.fixturenames:
        store_heldout(reg, rows_csv(300, seed=31))
    return reg


@pytest.fixture
def unscored(scored: Registry) -> Registry:
    """The same versions, and no evaluation rows held by the platform."""
    return scored


def test_compare_prints_both_metrics_on_the_same_rows_and_the_interval(scored: Registry) -> None:
    r = run("models", "compare", "demo", "1", "2")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("demo: v2 against v1 on the same 300 heldout evaluation rows (sha256 ")
    v1, v2 = (float(line.rsplit(" ", 1)[1]) for line in lines[1:3])
    assert lines[1].startswith("  v1 rmse ") and lines[2].startswith("  v2 rmse ")
    assert v1 == pytest.approx((0.3**2 + 0.6**2) ** 0.5, abs=0.05) and v2 == pytest.approx(0.3, abs=0.05)
    improvement = float(lines[3].split("improvement of v2 ")[1].split(" ")[0])
    assert improvement == pytest.approx(v1 - v2, rel=1e-4) and "95% interval [" in lines[3]
    assert "1000 paired bootstrap resamples" in lines[3]

    doc = json.loads(run("models", "compare", "demo", "1", "2", "--json").output)
    assert (doc["source"], doc["rows"], doc["metric"]) == ("heldout", 300, "rmse")
    assert doc["a_value"] > doc["b_value"] and 0 < doc["interval"]["lower"] < doc["interval"]["upper"]
    assert doc["claims"] == {"a": 0.2, "b": 0.25}  # shown apart, never compared
    # the other way round: the same rows, the improvement mirrored
    back = json.loads(run("models", "compare", "demo", "2", "1", "--json").output)
    assert back["rows"] == 300 and back["interval"]["improvement"] == pytest.approx(
        -doc["interval"]["improvement"]
    )


def test_compare_reproduces_the_gates_recorded_decision(scored: Registry) -> None:
    from modelops.stages import gate as gating
    from modelops.storage.evaluation import EvaluationStore
    from tests.unit.gate_models import LinearInterpreter

    for v in (1, 2):
        gating.run_gate(
            scored,
            scored.get_manifest("demo", v),
            gating.spec_of(scored.get_manifest("demo", v)),
            evaluation=EvaluationStore(scored.objects),
            interpreter_factory=LinearInterpreter,
        )
    [entry] = [
        h for h in scored.history("demo", "production") if h.get("kind") == "gate" and h["candidate"] == 2
    ]
    doc = json.loads(run("models", "compare", "demo", "1", "2", "--json").output)
    assert (
        doc["interval"] == entry["interval"] and doc["evaluation"]["sha256"] == entry["evaluation"]["sha256"]
    )
    assert (doc["a_value"], doc["b_value"]) == (entry["production_value"], entry["candidate_value"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "compare", "demo", "1", "9"), "version_not_found"),
        (("models", "compare", "ghost", "1", "2"), "model_not_found"),
        (("models", "compare", "demo", "1", "1"), "invalid_argument"),
    ],
)
def test_compare_errors_exit_non_zero(scored: Registry, args: tuple[str, ...], message: str) -> None:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_compare_without_evaluation_rows_says_what_to_upload(unscored: Registry) -> None:
    r = run("models", "compare", "demo", "1", "2")
    assert r.exit_code == 0 and "holds no evaluation rows" in r.output and "datasets/demo/eval/" in r.output


def test_compare_with_a_tampered_artifact_fails_clearly(scored: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    key = scored.get_manifest("demo", 1).artifacts["tflite"].key
    s3.put_object(Bucket="registry", Key=key, Body=b"\x1c\x00\x00\x00TFL3{}")
    r = CliRunner().invoke(cli, ["models", "compare", "demo", "1", "2"])
    assert r.exit_code != 0 and "not_comparable" in r.output and "failed its SHA-256 check" in r.output
