"""The fleet page as a person uses it, in a real headless Chromium: `modelops ui` (live) and `modelops
ui build` (files) on the twin after a life, then the bad inputs of issue 18 on a registry in memory.

Every page visited must leave no error in the browser's console and open no alert (the model's
``<script>`` feature name stays text); each step leaves a screenshot (tests/browser/conftest.py).
"""

from __future__ import annotations

import http.client
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By

from modelops_cli.ui.data import FleetData
from modelops_cli.ui.site import Site
from tests.browser import fleet_data
from tests.browser.conftest import EVIL_FEATURE, Lived, Visit
from tests.fakes import MemoryObjectStore

pytestmark = [pytest.mark.browser]


def shown_features(d: Any) -> list[str]:
    """The feature rows the search leaves visible (asked in one call: 2,000 rows, one round trip)."""
    return list(
        d.execute_script(
            "return Array.from(document.querySelectorAll('#features tr[data-feature]'))"
            ".filter(r => r.offsetParent !== null).map(r => r.dataset.feature)"
        )
    )


def walk_the_fleet(visit: Visit, index_url: str, model: str) -> None:
    """Fleet page -> the model (two versions, the gate's decision) -> its drift chart -> a report."""
    d = visit.driver
    visit.open(index_url, "1-fleet")
    row = d.find_element(By.CSS_SELECTOR, f"tr[data-model='{model}']")
    assert "v2" in row.text and row.find_element(By.CSS_SELECTOR, "[data-verdict]").text == "drift"

    row.find_element(By.CSS_SELECTOR, "a.model-link").click()
    visit.check("2-model")
    assert d.find_element(By.TAG_NAME, "h1").text == model
    versions = d.find_elements(By.CSS_SELECTOR, "#versions tr[data-version]")
    assert [v.get_attribute("data-version") for v in versions] == ["2", "1"]
    assert "production" in versions[0].text and "passed" in versions[0].text
    decision = d.find_element(By.CSS_SELECTOR, "#decisions tr.decision[data-candidate='2']")
    assert "v2 vs v1" in decision.text and "promote" in decision.text
    assert "resamples" in decision.text  # the bootstrap interval's numbers are shown
    assert d.find_elements(By.CSS_SELECTOR, "#history tr")  # who moved production, and when

    d.find_element(By.ID, "drift-link").click()
    visit.check("3-drift")
    chart = d.find_element(By.CSS_SELECTOR, "#drift-chart svg")
    assert len(chart.find_elements(By.TAG_NAME, "circle")) >= 4  # two windows, two series
    titles = [c.get_attribute("data-feature") for c in d.find_elements(By.CSS_SELECTOR, ".feature-chart")]
    assert titles[0] == EVIL_FEATURE, titles  # the shifted column ranks first, its name shown as text
    assert len(visit.scripts()) == 1  # app.js only: the name made no script element
    box = d.find_element(By.ID, "feature-search")
    box.send_keys("script")
    assert shown_features(d) == [EVIL_FEATURE]
    assert d.find_element(By.ID, "feature-count").text.startswith("1 of ")
    visit.check("4-search")

    windows = d.find_elements(By.CSS_SELECTOR, "#windows tr.window")
    assert len(windows) == 2 and "drift" in windows[0].text
    windows[0].find_element(By.CSS_SELECTOR, "a.report-link").click()
    visit.check("5-report")
    assert d.find_element(By.TAG_NAME, "h1").text == f"Monitor report: {model}"
    assert EVIL_FEATURE in d.find_element(By.TAG_NAME, "body").text
    assert visit.scripts() == []  # the monitor's report runs nothing


def _url(proc: subprocess.Popen[str]) -> str:
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("fleet page: "):
        proc.kill()
        raise AssertionError(f"modelops ui printed {line!r}; stderr: {proc.communicate()[1]}")
    return line.split()[2]


@pytest.mark.twin
def test_the_live_fleet_page_after_a_life(lived: Lived, modelops: Any, visit: Visit) -> None:
    # Given `modelops ui` on a free port, against the twin
    url = _url(modelops("ui", "--port", "0"))
    # When a person walks from the fleet to a report, Then every page reads right and logs no error
    walk_the_fleet(visit, url, lived.model)

    # And it only reads, and only for its own name (no DNS rebinding)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=30)
    conn.request("POST", "/", body=b"x")
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("Allow")) == (405, "GET, HEAD")
    resp.read()
    conn.request("GET", "/", headers={"Host": f"evil.example:{parts.port}"})
    resp = conn.getresponse()
    assert resp.status == 421
    resp.read()
    conn.request("GET", f"/models/{lived.model}/reports/20990101T000000Z/report.html")
    resp = conn.getresponse()
    assert resp.status == 404 and b"has no report.html" in resp.read()
    conn.request("GET", f"/models/{lived.model}/drift.html")
    stamp = re.search(r"reports/(\d{8}T\d{6}Z)/report\.html", (resp := conn.getresponse()).read().decode())
    assert stamp is not None
    conn.request("GET", f"/models/{lived.model}/reports/{stamp[1]}/report.html")
    resp = conn.getresponse()
    resp.read()
    # the monitor's report is served as written, where no script may run
    assert resp.status == 200 and "script-src" not in resp.getheader("Content-Security-Policy", "script-src")
    conn.close()


@pytest.mark.twin
def test_the_static_site_after_a_life(lived: Lived, modelops: Any, visit: Visit, tmp_path: Path) -> None:
    # Given the site written as files
    proc = modelops("ui", "build", "--out", str(tmp_path / "site"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    index = tmp_path / "site" / "index.html"
    assert f"fleet page: {index.as_uri()}" in out
    # Then the same walk works from file:// URLs
    walk_the_fleet(visit, index.as_uri(), lived.model)


@pytest.fixture(scope="module")
def memory_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = MemoryObjectStore("registry")
    registry = fleet_data.populate(store)
    fleet_data.corrupt_latest(store, "quiet")
    out = tmp_path_factory.mktemp("memory-site")
    Site(FleetData(registry, None, source="memory")).build(out)
    return out


def test_bad_inputs_render_as_errors_and_text(memory_site: Path, visit: Visit) -> None:
    d = visit.driver
    visit.open((memory_site / "index.html").as_uri(), "fleet")
    quiet = d.find_element(By.CSS_SELECTOR, "tr[data-model='quiet']")
    assert "latest.json is not an object" in quiet.text  # a corrupt summary: that model's error only
    assert d.find_element(By.CSS_SELECTOR, "tr[data-model='houses'] [data-verdict]").text == "drift"

    visit.open((memory_site / "models" / fleet_data.MODEL / "index.html").as_uri(), "model")
    v3 = d.find_element(By.CSS_SELECTOR, "#versions tr[data-version='3']")
    assert "not valid JSON" in v3.text
    assert len(d.find_elements(By.CSS_SELECTOR, "#versions tr[data-version]")) == 3
    assert fleet_data.EVIL in d.find_element(By.ID, "history").text  # the reason, as text
    assert len(visit.scripts()) == 1

    visit.open((memory_site / "models" / fleet_data.MODEL / "drift.html").as_uri(), "drift")
    errors = d.find_elements(By.CSS_SELECTOR, "#windows .error")
    assert len(errors) == 1 and "20261201T093000Z" in errors[0].find_element(By.XPATH, "../..").text
    assert d.find_elements(By.CSS_SELECTOR, "#quality-charts svg")  # one window had labels

    visit.open((memory_site / "models" / "quiet" / "drift.html").as_uri(), "never-monitored")
    assert "No monitor runs yet" in d.find_element(By.ID, "no-windows").text


def test_two_thousand_features_stay_usable(memory_site: Path, visit: Visit) -> None:
    d = visit.driver
    visit.open((memory_site / "models" / fleet_data.WIDE / "drift.html").as_uri(), "wide")
    assert len(d.find_elements(By.CSS_SELECTOR, ".feature-chart")) == 12  # top-N charted, not 2,000
    assert len(d.find_elements(By.CSS_SELECTOR, "#features tr[data-feature]")) == fleet_data.WIDE_FEATURES
    assert d.find_element(By.ID, "feature-count").text == "2000 of 2000 features"
    d.find_element(By.ID, "feature-search").send_keys("f1234")
    assert shown_features(d) == ["f1234"]
    assert d.find_element(By.ID, "feature-count").text == "1 of 2000 features"
    visit.check("wide-search")
