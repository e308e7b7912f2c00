"""Shared fixtures. A guard makes sure no test can ever reach a real AWS account."""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from modelops import aws
from tests.fakes import FakeBus, FakeContext, MemoryObjectStore


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake credentials, no config files, a fixed region (chalice's ``no_local_config``)."""
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    empty.touch()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    if not os.environ.get("MODELOPS_TEST_KEEP_ENDPOINT"):
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.clear_cache()
    yield
    aws.clear_cache()


@pytest.fixture
def moto() -> Iterator[None]:
    """In-process moto for every service (started before any client is built)."""
    with mock_aws():
        aws.clear_cache()
        yield
    aws.clear_cache()


@pytest.fixture
def s3(moto: None):  # type: ignore[no-untyped-def]
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def registry_bucket(s3) -> str:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="registry")
    s3.put_bucket_versioning(Bucket="registry", VersioningConfiguration={"Status": "Enabled"})
    return "registry"


@pytest.fixture
def bus() -> FakeBus:
    """An in-memory event bus (what the stage published, in order)."""
    return FakeBus()


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def memory_store() -> MemoryObjectStore:
    """An in-memory bucket behaving like ``modelops.storage.s3.ObjectStore``."""
    return MemoryObjectStore("registry")


# ---- the local twin (appended by the twin's owner; see docs/local-twin.md) --------------------------


@pytest.fixture(scope="session")
def twin() -> Iterator[object]:
    """The whole ``template.yaml`` on the local twin (moto + in-process handlers), once per session,
    on free ports. Talk to it with ``twin.client("s3")``, ``twin.api_url``, ``twin.outputs``; call
    ``twin.wait_idle()`` instead of sleeping, and read ``twin.invocations``."""
    from modelops_local.testing import start_twin

    started = start_twin()
    yield started
    started.stop()


@pytest.fixture
def twin_in_env(twin: object, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[object]:
    """The session twin, with the environment naming it as ``eval "$(modelops local env)"`` would (for
    the CLI in this process), run from an empty directory (no ``.modelops/local.json`` there)."""
    from modelops_local.twin import exports

    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    for key, value in dict(exports(twin.state())).items():  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELOPS_TEST_KEEP_ENDPOINT", "1")
    aws.clear_cache()
    yield twin
    aws.clear_cache()


@pytest.fixture(autouse=True)
def _twin_cold_start(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests may call handlers directly (and leave their cached clients built for ``mock_aws``):
    each test that uses the session twin starts with cold handlers. And it ends with the twin idle: a
    twin invocation sets its function's environment (``AWS_ENDPOINT_URL`` included) process-wide while
    it runs, so work a test set off and left running would send the next test's moto clients to the
    twin."""
    if "twin" not in request.fixturenames:
        yield
        return
    twin = request.getfixturevalue("twin")
    twin.cold_start()
    yield
    twin.wait_idle()
