"""`modelops ui`'s reads (modelops.storage.fleet), its routes (modelops_cli.ui.site) and `modelops ui
build` (the CLI on moto). The pages in a real browser: tests/browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelops.domain.errors import InvalidNameError
from modelops.storage import fleet
from modelops.storage.registry import Registry
from modelops.storage.reports import ReportStore
from modelops_cli.main import cli
from modelops_cli.ui.data import FleetData
from modelops_cli.ui.site import Site
from tests.browser import fleet_data
from tests.fakes import MemoryObjectStore


@pytest.fixture
def store() -> MemoryObjectStore:
    s = MemoryObjectStore("registry")
    fleet_data.populate(s, wide=False)
    return s


def test_reads_return_each_unreadable_document_as_its_error(store: MemoryObjectStore) -> None:
    reg = Registry.over(store)
    store.put("models/houses/history/production/20261201T100000000000Z-bad.json", b"nope")
    store.put("models/houses/aliases/staging.json", b'{"version": "two"}')
    versions = fleet.version_manifests(reg, "houses")
    assert [v["version"] for v in versions] == [1, 2, 3] and "error" in versions[2]
    aliases = fleet.alias_documents(reg, "houses")
    assert aliases["production"]["version"] == 2 and "error" in aliases["staging"]
    history = fleet.alias_history(reg, "houses")
    bad = [h for h in history if "error" in h]
    assert len(bad) == 1 and bad[0]["at"] == "2026-12-01T10:00:00.000000Z"
    assert any(h.get("kind") == "gate" and h["candidate"] == 2 for h in history)


def test_monitor_windows_newest_last_and_limited(store: MemoryObjectStore) -> None:
    reports = ReportStore(store)
    everything = fleet.monitor_windows(reports, "houses")
    assert everything == ["20261201T093000Z", *fleet_data.STAMPS]
    assert fleet.monitor_windows(reports, "houses", 2) == fleet_data.STAMPS[1:]
    assert fleet.monitor_windows(reports, "quiet") == []
    with pytest.raises(InvalidNameError):
        fleet.monitor_report_html(reports, "houses", "../../models")
    assert fleet.window_of_uri("s3://b/monitoring/houses/20261201T100000Z/report.html") == "20261201T100000Z"
    assert fleet.window_of_uri("s3://b/elsewhere/report.html") is None


def test_routes(store: MemoryObjectStore) -> None:
    site = Site(FleetData(Registry.over(store)))
    assert site.get("/").status == 200
    assert site.get("/models/houses/").status == 200
    assert site.get("/models/houses").location == "/models/houses/"
    report = site.get(f"/models/houses/reports/{fleet_data.STAMPS[0]}/report.html")
    assert report.status == 200 and report.report and b"Monitor report" in report.body
    for path in ("/models/nobody/", "/models/../etc/passwd", "/models/houses/reports/x/report.html", "/x"):
        assert site.get(path).status == 404, path
    store.fail_next("list")
    down = site.get("/")
    assert down.status == 503 and b"unavailable" in down.body


def test_a_model_name_that_is_not_valid_shows_as_an_error(store: MemoryObjectStore) -> None:
    store.put("models/Bad<b>/versions/1/manifest.json", b"{}")
    html = Site(FleetData(Registry.over(store))).get("/").body.decode()
    assert "Bad&lt;b&gt;" in html and "invalid model name" in html and "<b>/" not in html


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3, registry_bucket: str) -> str:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    reg = Registry(s3, registry_bucket)
    reg.publish_version("houses", {"tflite": ("model.tflite", b"1")}, {"metrics": {"rmse": 0.9}})
    reg.promote("houses", 1)
    return registry_bucket


def test_ui_build_writes_the_site(bucket: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli, ["ui", "build", "--out", str(tmp_path / "site"), "--json"], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["models"] == 1 and summary["reports"] == 0
    index = Path(summary["index"])
    assert index.is_file() and (tmp_path / "site/models/houses/index.html").is_file()
    assert (tmp_path / "site/assets/app.js").is_file()
    text = CliRunner().invoke(cli, ["ui", "build", "--out", str(tmp_path / "again")])
    assert (
        text.exit_code == 0 and f"fleet page: {(tmp_path / 'again' / 'index.html').as_uri()}" in text.output
    )


def test_ui_bad_usage_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto: None) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELOPS_REGISTRY_BUCKET_NAME", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["ui", "build"]).exit_code == 2  # --out is required
    assert runner.invoke(cli, ["ui", "--top", "0", "build", "--out", "x"]).exit_code == 2
    unknown = runner.invoke(cli, ["ui", "build", "--out", str(tmp_path / "s")])
    assert unknown.exit_code == 1 and "RegistryBucketName is not known" in unknown.output
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", "no-such-bucket")
    gone = runner.invoke(cli, ["ui", "build", "--out", str(tmp_path / "s")])
    assert gone.exit_code == 1 and "no-such-bucket" in gone.output
