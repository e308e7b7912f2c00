"""The fleet page's rendering (modelops_cli.ui.pages and charts: dicts in, HTML out, no AWS SDK)."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

from modelops_cli.ui import charts, pages

EVIL = "<script>alert(1)</script>"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


def _report(features: dict[str, float], at: str = "2026-12-01T10:00:00Z") -> dict:
    return {
        "at": at,
        "verdict": "drift",
        "drift": True,
        "max_psi": max(features.values()),
        "samples": 300,
        "window": {"start": at, "end": at},
        "versions": [
            {
                "version": 1,
                "role": "previous",
                "samples": 10,
                "features": [{"name": "other", "psi": 9.0}],
            },
            {
                "version": 2,
                "role": "production",
                "samples": 290,
                "psi_threshold": 0.25,
                "features": [{"name": n, "psi": p} for n, p in features.items()],
                "prediction": {"psi": 0.1},
                "drifted_features": [{"name": n} for n, p in features.items() if p > 0.25],
                "quality": None,
            },
        ],
    }


def test_pages_import_no_aws_sdk() -> None:
    code = "import sys, modelops_cli.ui.pages, modelops_cli.ui.charts; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_window_is_summarised_from_its_production_version() -> None:
    s = pages.summarise_window(_report({"a": 0.1, EVIL: 0.5}))
    assert (s["version"], s["role"], s["psi_threshold"]) == (2, "production", 0.25)
    assert s["features"] == {"a": 0.1, EVIL: 0.5} and s["prediction"] == 0.1 and s["drifted"] == [EVIL]


def test_every_text_is_escaped_on_every_page() -> None:
    fleet = {
        "models": [
            {
                "model": "m",
                "versions": [1],
                "production": {"version": 1, "metrics": {"rmse": 1.0, EVIL: 2.0}},
                "monitor": {"verdict": EVIL, "at": EVIL},
                "monitor_stamp": "20261201T100000Z",
            },
            {"model": EVIL, "invalid": True, "error": f"invalid model name {EVIL!r}"},
        ],
        "alarms": {"items": [{"name": EVIL, "reason": EVIL, "since": EVIL}]},
        "source": EVIL,
    }
    model = {
        "model": "m",
        "versions": [
            {
                "version": 1,
                "manifest": {"dataset": {"key": EVIL, "sha256": EVIL * 3}, "metrics": {EVIL: 1.0}},
            },
            {"version": 2, "error": EVIL},
        ],
        "aliases": {"production": {"version": 1, "updated_by": EVIL, "reason": EVIL}},
        "history": [
            {"kind": "gate", "candidate": 1, "decision": EVIL, "reason": EVIL, "metric": EVIL},
            {"alias": EVIL, "actor": EVIL, "from": None, "to": 1, "reason": EVIL},
            {"alias": "production", "error": EVIL},
        ],
        "monitor": {"error": EVIL},
    }
    window = pages.summarise_window(_report({EVIL: 0.5}))
    window["quality"] = {"labelled": 3, "metrics": {"rmse": 1.0}, "heldout": {"rmse": 0.9}}
    drift = {
        "model": "m",
        "windows": [{"stamp": "20261201T100000Z", "report": window}, {"stamp": "x", "error": EVIL}],
    }
    for html in (pages.fleet_page(fleet), pages.model_page(model), pages.drift_page(drift)):
        tags = parse(html)
        assert [s.get("src") for s in tags.scripts] == ["assets/app.js"] or [
            s.get("src") for s in tags.scripts
        ] == ["../../assets/app.js"]
        assert EVIL not in html  # never raw markup
        assert EVIL in "".join(tags.text)  # always shown as text


def test_the_drift_page_charts_the_top_features_and_lists_all() -> None:
    names = {f"f{i:04d}": i / 2000 for i in range(2000)}
    windows = [
        {"stamp": f"20261201T1{h}0000Z", "report": pages.summarise_window(_report(names))} for h in range(3)
    ]
    html = pages.drift_page({"model": "wide", "windows": windows, "top": 12})
    assert html.count("class='card feature-chart'") == 12
    assert html.count("<tr data-feature=") == 2000
    assert "data-feature='f1999'" in html.split("id='features'")[0]  # the highest PSI is charted
    assert len(html) < 2_000_000  # a page a browser opens in a blink


def test_empty_states() -> None:
    assert "No models in the registry yet" in pages.fleet_page({"models": [], "alarms": {}})
    assert "No monitor runs yet" in pages.drift_page({"model": "m", "windows": []})
    window = pages.summarise_window(_report({"a": 0.1}))
    html = pages.drift_page({"model": "m", "windows": [{"stamp": "20261201T100000Z", "report": window}]})
    assert "No labelled predictions in these windows" in html


def test_a_chart_draws_the_threshold_and_links_each_window() -> None:
    svg = charts.line_chart(
        charts.Chart(
            "psi",
            [
                charts.Series("PSI", [0.1, None, 0.9]),
                charts.Series("threshold", [0.25] * 3, dashed=True, points=False),
            ],
            ["a", "b", "c"],
            ["r/a.html", None, "r/c.html"],
        )
    )
    assert svg.count("<circle") == 2 and svg.count('<a href="r/') == 2  # the gap has no point
    assert 'stroke-dasharray="5 4"' in svg
    assert svg.count("<polyline") == 1  # the PSI line breaks at the gap; the threshold is one line


def test_parity_that_is_not_gated_is_not_called_failed() -> None:
    manifest = {
        "parity": {
            "float32": {"passed": True, "max_abs_diff": 1e-6},
            "int8": {"max_abs_diff": 0.01, "metric": {"delta_vs_float32": -0.002}},
            "rows": 73,
        }
    }
    html = pages.model_page({"model": "m", "versions": [{"version": 1, "manifest": manifest}]})
    assert "float32 <span class='badge ok'>passed</span>" in html
    assert "int8 <span class='badge muted'>not gated</span>" in html and "metric Δ -0.002" in html
    assert "failed" not in html


def test_late_labels_are_shown_per_day_of_prediction_from_the_last_window() -> None:
    # Given two windows: the first counted no labels, the last one found labels for two days
    first = pages.summarise_window(_report({"a": 0.1}))
    assert "No labels joined" in pages.drift_page(
        {"model": "m", "windows": [{"stamp": "20261201T100000Z", "report": first}]}
    )
    report = _report({"a": 0.1}, at="2026-12-03T10:00:00Z")
    report["late_labels"] = {
        "days": [
            {
                "day": "2026-12-01",
                "version": 2,
                "captured": 200,
                "labelled": 150,
                "coverage": 0.75,
                "metrics": {"rmse": 1.25},
            },
            {
                "day": "<script>x</script>",
                "version": 2,
                "captured": 10,
                "labelled": 0,
                "coverage": 0.0,
                "metrics": {"rmse": None},
            },
        ]
    }
    last = pages.summarise_window(report)
    html = pages.drift_page(
        {"model": "m", "windows": [{"stamp": "a", "report": first}, {"stamp": "b", "report": last}]}
    )
    # Then the table holds each day's labelled share and its metric, escaped
    section = html[html.index("id='late-labels'") :]
    assert "150 of 200" in section and "1.25" in section and "0 of 10" in section
    assert "&lt;script&gt;x&lt;/script&gt;" in section and not parse(html).scripts[1:]
