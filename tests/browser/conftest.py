"""Fixtures of the browser tests: Debian's headless Chromium driven by Selenium (never a downloaded
browser: no Selenium Manager), a short life on the twin for the fleet page to show, and the
``modelops`` CLI run as a user would run it.

Chromium and chromedriver come from ``make chromium`` (``make test`` runs it); without them these
tests fail, they do not skip. Screenshots go to ``screenshots/`` in pytest's base temporary folder
(``/tmp/pytest-of-$USER/pytest-current/screenshots/`` after a run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops_local.lifecycle import Life, sklearn_table
from modelops_local.twin import Twin, exports

EVIL_FEATURE = "<script>alert('bmi')</script>"
"""The diabetes table's ``bmi`` column, renamed: the fleet page and the report must show it as text."""
LIFE_MODEL = "fleet-view"
LIFE_SPEC = {
    "task": "regression",
    "target": "progression",
    "training": {
        "backend": "local",
        "epochs": 20,
        "batch_size": 32,
        "hidden_units": [8],
        "learning_rate": 0.02,
        "seed": 3,
    },
    "promotion": {"metric": "rmse"},
    "monitoring": {"psi_threshold": 0.25},
}


def _executable(name: str, fallback: str) -> str:
    found = shutil.which(name) or (fallback if os.access(fallback, os.X_OK) else None)
    if found is None:
        pytest.fail(
            f"{name} is missing: the browser tests drive Debian's chromium and chromium-driver; "
            "`make chromium` installs them (`make test` does it first)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots", numbered=False)


@pytest.fixture(scope="session")
def driver() -> Iterator[Any]:
    """One headless Chromium for the session, its console collected (``goog:loggingPrefs``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _executable("chromium", "/usr/bin/chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_executable("chromedriver", "/usr/bin/chromedriver"))
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@dataclass
class Visit:
    """Opens pages in the session's browser; after each, fails on any console error (SEVERE) or an
    alert dialog (a script that ran), and saves a screenshot."""

    driver: Any
    folder: Path
    prefix: str

    def console(self) -> list[dict[str, Any]]:
        return [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def check(self, name: str) -> None:
        from selenium.common.exceptions import NoAlertPresentException

        try:
            text = self.driver.switch_to.alert.text
        except NoAlertPresentException:
            text = None
        assert text is None, f"{name}: a script ran and opened an alert: {text!r}"
        errors = self.console()
        self.driver.save_screenshot(str(self.folder / f"{self.prefix}-{name}.png"))
        assert not errors, f"{name} ({self.driver.current_url}): console errors {errors}"

    def open(self, url: str, name: str) -> None:
        self.driver.get(url)
        self.check(name)

    def scripts(self) -> list[str]:
        """The ``src`` of every script element of the page (an injected one has none)."""
        return [
            str(s.get_attribute("src") or "inline") for s in self.driver.find_elements("tag name", "script")
        ]


@pytest.fixture
def visit(driver: Any, screenshots: Path, request: pytest.FixtureRequest) -> Visit:
    driver.get_log("browser")  # what an earlier test left in the console is not this test's
    return Visit(driver, screenshots, request.node.name)


@dataclass
class Lived:
    twin: Twin
    model: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def browser_twin() -> Iterator[Twin]:
    """A twin of the browser tests' own, not the session's: their life (captured traffic, a drifted
    model, the drift alarm) must not show in the shared twin, whose monitor runs the e2e tests count."""
    from modelops_local.testing import start_twin

    started = start_twin()
    started.cold_start()  # handlers cached for another twin (or mock_aws) are forgotten
    try:
        yield started
    finally:
        started.stop()
        started.cold_start()  # and the next test finds no handler cached for this one


@pytest.fixture(scope="module")
def lived(browser_twin: Twin) -> Lived:
    """A short life on the browser tests' twin (about 20 s): a model whose ``bmi`` column is named
    ``<script>...``; v1, its traffic like the training data and a monitor run; v2 (the gate's
    decision), traffic with that column shifted, another monitor run (drift)."""
    twin = browser_twin
    table = sklearn_table("diabetes")
    col = table.features.index("bmi")
    table.features[col] = EVIL_FEATURE
    order = np.random.default_rng(7).permutation(len(table.y))
    life = Life(twin)
    life.upload_spec(LIFE_MODEL, LIFE_SPEC)
    life.upload_dataset(LIFE_MODEL, "v1.csv", table.csv_bytes(order[:150]))
    life.settle()
    # v1's traffic, like the training data, and a first monitor window (training v2 then takes
    # seconds, so the second window gets another stamp: a window's folder is named by its second)
    life.wait_serving(LIFE_MODEL, 1, table.x[order[0]].tolist())
    before = life.captured_rows()
    life.send_traffic(LIFE_MODEL, table.x[order[:120]], batch=10)
    life.wait_captured(before + 120)
    life.run_monitor()
    life.upload_dataset(LIFE_MODEL, "v2.csv", table.csv_bytes(order))
    life.settle()
    assert life.versions(LIFE_MODEL) == [1, 2]
    life.wait_serving(LIFE_MODEL, life.production(LIFE_MODEL), table.x[order[0]].tolist())
    shifted = table.x[order[120:240]].copy()
    shifted[:, col] += 3 * table.x[:, col].std()
    life.send_traffic(LIFE_MODEL, shifted, batch=10)
    life.wait_captured(before + 240)
    life.run_monitor()
    twin.wait_idle()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELOPS_"))}
    env.update(exports(twin.state()))
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return Lived(twin, LIFE_MODEL, env)


@pytest.fixture
def modelops(lived: Lived, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``modelops ARGS...`` against the twin, as a user in another shell would (its own
    process, the twin's environment, a folder without a ``.modelops/local.json``)."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelops_cli.main", *args],
            env=lived.env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
