"""The monitor report page: a histogram per numeric feature (drifted first), the trend of the last
windows, data-quality counts, late labels; escaped everywhere; report links (presigned or the fleet page's)
for monitoring/ keys only; the alert carries the link whole."""

from __future__ import annotations

import re
from typing import Any

import boto3
import pytest

from modelops.domain import alerts
from modelops.domain import report as reports
from modelops.storage.reports import SIGNING_CONFIG, ReportLinkError, ReportLinks

EVIL = "<script>alert(1)</script>"


def feature(name: str, psi: float, missing: float = 0.0, outside: float = 0.0) -> dict[str, Any]:
    return {
        "name": name,
        "count": 1000,
        "psi": psi,
        "ks": 0.1,
        "missing_rate": missing,
        "out_of_range_rate": outside,
        "edges": [0.0, 1.0, 2.0],
        "reference_proportions": [0.25, 0.25, 0.25, 0.25],
        "current_proportions": [0.1, 0.2, 0.3, 0.4],
    }


def version(features: list[dict[str, Any]], drifted: list[str], threshold: float = 0.2) -> dict[str, Any]:
    return {
        "model": "m",
        "version": 1,
        "role": "production",
        "verdict": "drift" if drifted else "ok",
        "samples": 1000,
        "lines": 1000,
        "bad": {"not_json": 3},
        "psi_threshold": threshold,
        "max_psi": max((f["psi"] for f in features), default=None),
        "max_psi_ratio": max((f["psi"] for f in features), default=0.0) / threshold,
        "features": features,
        "drifted_features": [{"name": n, "psi": 0.5} for n in drifted],
        "prediction": None,
        "quality": None,
    }


def report(
    features: list[dict[str, Any]], drifted: list[str], at: str = "2026-01-02T10:00:00Z"
) -> dict[str, Any]:
    doc = reports.model_report(
        "m", [version(features, drifted)], {"start": "a", "end": "b", "seconds": 3600}, at, 100, 0
    )
    return {**doc, "report": "s3://r/x.json", "report_html": "s3://r/x.html"}


def test_every_numeric_feature_has_a_histogram_drifted_first_and_names_are_escaped() -> None:
    feats = [feature("calm", 0.01), feature(EVIL, 0.9, missing=0.02), feature("mild", 0.1, outside=0.01)]
    html = reports.render_html(report(feats, [EVIL]))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    grid = html[html.index("<div class='grid'>") :]
    titles = re.findall(r"<h4>(.*?)</h4>", grid)
    assert [t.split(":")[0] for t in titles] == [
        "&lt;script&gt;alert(1)&lt;/script&gt; (drift)",
        "mild",
        "calm",
    ]
    assert grid.count("<svg") == 3
    assert "Histograms (3 of 3 numeric features, drifted first)" in html
    # no scripts and nothing fetched from elsewhere
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html


def test_a_wide_model_draws_the_top_histograms_and_says_where_the_rest_are() -> None:
    feats = [feature(f"f{i:04d}", i / 10000) for i in range(2000)]
    html = reports.render_html(report(feats, []))
    grid = html[html.index("<div class='grid'>") :]
    assert grid.count("<svg") == reports.SHOWN_HISTOGRAMS
    assert "f1999" in grid and "f0000" not in grid  # the highest PSI first
    assert "1,940 more numeric features" in html


def test_data_quality_counts_missing_invalid_and_out_of_range() -> None:
    cat = {"name": "colour", "type": "categorical", "count": 1000, "invalid": 7, "psi": 0.0,
           "vocabulary": ["a"], "reference_proportions": [1.0, 0.0], "current_proportions": [1.0, 0.0]}  # fmt: skip
    feats = [feature("a", 0.0, missing=0.02), feature("b", 0.0, outside=0.005), feature("c", 0.0), cat]
    html = reports.render_html(report(feats, []))
    dq = html[html.index("<h3>Data quality</h3>") :]
    assert "3 capture lines skipped (not_json: 3); 3 of 4 columns" in dq
    assert "<tr><td>a</td><td>1,000</td><td>20</td><td>0</td><td>0</td></tr>" in dq
    assert "<tr><td>colour</td><td>1,000</td><td>0</td><td>7</td><td>0</td></tr>" in dq
    assert "<tr><td>b</td><td>1,000</td><td>0</td><td>0</td><td>5</td></tr>" in dq


def test_the_trend_covers_the_previous_windows_with_the_threshold() -> None:
    previous = [
        report([feature("x", 0.05 * i), feature(EVIL, 0.01)], [], at=f"2026-01-01T{i:02d}:00:00Z")
        for i in range(1, 15)
    ]
    current = report([feature("x", 0.9), feature(EVIL, 0.02)], ["x"], at="2026-01-02T10:00:00Z")
    trend = reports.trend_of(current, previous)
    assert len(trend["windows"]) == reports.TREND_WINDOWS
    assert trend["features"] == ["x", EVIL]
    assert [w["psi"]["x"] for w in trend["windows"]][-3:] == [pytest.approx(0.65), pytest.approx(0.7), 0.9]
    html = reports.render_html({**current, "trend": trend})
    section = html[html.index("<h2>Trend") :]
    assert "PSI over the last 12 windows" in section and "stroke-dasharray" in section
    assert section.count("<polyline") == 2 and "<script>" not in section


def test_no_earlier_window_says_so() -> None:
    current = report([feature("x", 0.1)], [])
    html = reports.render_html({**current, "trend": reports.trend_of(current, [])})
    assert "No earlier window to compare with yet." in html


def test_late_labels_show_labelled_of_captured_per_day_escaped() -> None:
    section = {
        "label_window_days": 7,
        "since": "x",
        "labels": {"lines": 5, "matched": 3, "unknown": 1, "duplicates": 1, "bad_lines": 0, "wrong_type": 0},
        "days": [
            {
                "day": "2026-01-01",
                "version": 1,
                "captured": 10,
                "labelled": 3,
                "coverage": 0.3,
                "metrics": {"rmse": 0.5, EVIL: 1.0},
                "wrong_type": 0,
            },  # fmt: skip
        ],
    }
    html = reports.render_html({**report([feature("x", 0.1)], []), "late_labels": section})
    assert "labelled 3 of 10" in html and "30.00%" in html and "<script>" not in html


def test_report_links_presigned_for_monitoring_keys_only() -> None:
    s3 = boto3.client("s3", region_name="us-east-1", config=SIGNING_CONFIG)
    links = ReportLinks(s3, "registry", lifetime=3600, clock=lambda: 0.0)
    url, expires = links.link("monitoring/demo/20260101T000000Z/report.html")
    assert url.startswith("https://") and "X-Amz-Expires=3600" in url and "X-Amz-Signature=" in url
    assert expires == "1970-01-01T01:00:00Z"
    for key in ("models/demo/versions/1/manifest.json", "datasets/demo/data.csv", "monitoring/../models/x"):
        with pytest.raises(ReportLinkError, match="only monitor reports"):
            links.link(key)
    with pytest.raises(ValueError, match="lifetime"):
        ReportLinks(s3, "registry", lifetime=8 * 24 * 3600)


def test_report_links_to_the_fleet_page_when_a_base_url_is_set() -> None:
    links = ReportLinks(None, "registry", base_url="http://127.0.0.1:8765/")
    assert links.link("monitoring/demo/20260101T000000Z/report.html") == (
        "http://127.0.0.1:8765/models/demo/reports/20260101T000000Z/report.html",
        None,
    )
    with pytest.raises(ReportLinkError):
        links.link("monitoring/demo/latest.json")
    with pytest.raises(ValueError, match="REPORT_BASE_URL"):
        ReportLinks(None, "registry", base_url="javascript:alert(1)")


def test_the_drift_alert_carries_the_link_whole_and_refuses_a_hostile_one() -> None:
    url = "https://registry.s3.amazonaws.com/monitoring/demo/x/report.html?X-Amz-Signature=" + "a" * 1400
    detail = {
        "model": "demo",
        "version": 1,
        "features": [{"name": "f", "psi": 0.5}],
        "report_html": "s3://registry/monitoring/demo/x/report.html",
        "report_url": url,
        "report_url_expires_at": "2026-01-01T12:00:00Z",
    }
    event = {"source": "modelops", "detail-type": "DriftDetected", "detail": detail}
    body = alerts.from_event(event).body
    assert f"Report link: {url} (link valid until 2026-01-01T12:00:00Z at most)" in body
    assert "Report: s3://registry/monitoring/demo/x/report.html" in body
    for bad in ("javascript:alert(1)", "https://x/<script>", "https://x/a b", "https://x/" + "a" * 5000):
        event["detail"] = {**detail, "report_url": bad}
        assert "Report link" not in alerts.from_event(event).body
