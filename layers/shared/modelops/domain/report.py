"""The monitor's report documents: ``report.json`` of one model's window (:func:`model_report`), its
``latest.json`` summary (:func:`latest_summary`), their JSON encoding (:func:`to_json`) and
``report.html`` (:func:`render_html`: one self-contained page, inline CSS and SVG, no scripts, no
links to fetch, readable in a browser straight from S3 or from an e-mail attachment)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

import numpy as np

SCHEMA_VERSION = 1


def iso_of(ts: float) -> str:
    """Epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ`` (the reports' and events' time format)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_of(ts: float) -> str:
    """Epoch seconds as ``YYYYMMDDTHHMMSSZ`` (the folder of one window's report)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


def window_of(start: float, end: float, seconds: int) -> dict[str, Any]:
    return {"start": iso_of(start), "end": iso_of(end), "seconds": seconds}


def model_report(
    model: str,
    versions: list[dict[str, Any]],
    window: dict[str, Any],
    at: str,
    min_samples: int,
    labels_bad: int,
) -> dict[str, Any]:
    """``report.json`` of one model: its versions' results (the monitor's ``evaluate``) and the worst
    verdict among them (drift, else ok, else the first of the others by name)."""
    verdicts = {r["verdict"] for r in versions}
    if not verdicts:
        verdict = "no_traffic"  # a report for its late labels only
    elif "drift" in verdicts:
        verdict = "drift"
    elif "ok" in verdicts:
        verdict = "ok"
    else:
        verdict = sorted(verdicts)[0]
    ratios = [r["max_psi_ratio"] for r in versions if r["max_psi_ratio"] is not None]
    psis = [r["max_psi"] for r in versions if r["max_psi"] is not None]
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "at": at,
        "window": window,
        "verdict": verdict,
        "drift": verdict == "drift",
        "max_psi": max(psis) if psis else None,
        "max_psi_ratio": max(ratios) if ratios else None,
        "samples": sum(r["samples"] for r in versions),
        "min_samples": min_samples,
        "labels_bad_lines": labels_bad,
        "versions": versions,
    }


def latest_summary(report: dict[str, Any]) -> dict[str, Any]:
    """``latest.json``: the headline of a written report (with its ``report``/``report_html`` URIs)."""
    return {
        "model": report["model"],
        "at": report["at"],
        "verdict": report["verdict"],
        "drift": report["drift"],
        "max_psi": report["max_psi"],
        "max_psi_ratio": report["max_psi_ratio"],
        "samples": report["samples"],
        "window": report["window"],
        "report": report["report"],
        "report_html": report["report_html"],
        **{k: report[k] for k in ("report_url", "report_url_expires_at") if report.get(k)},
        "versions": [
            {
                "version": r["version"],
                "role": r.get("role"),
                "verdict": r["verdict"],
                "samples": r["samples"],
                "max_psi": r["max_psi"],
                "psi_threshold": r["psi_threshold"],
                "drifted_features": r["drifted_features"],
            }
            for r in report["versions"]
        ],
    }


RUN_KEYS = frozenset(
    {
        "at",
        "generated_at",
        "report_url",
        "stamp",
        "window",
        "run",
        "report",
        "report_html",
        "link",
        "links",
        "url",
    }
)
"""What differs between two monitor runs over the same captures: when they ran, what they are called and
where their reports are."""


def run_independent(doc: Any, also: frozenset[str] = frozenset()) -> Any:
    """A report or summary without ``RUN_KEYS`` (and ``also``) at any depth: two runs over the same
    captures (the single pass and the fan-out, or any two fan-outs) give equal results."""
    drop = RUN_KEYS | also
    if isinstance(doc, dict):
        return {k: run_independent(v, also) for k, v in doc.items() if k not in drop}
    if isinstance(doc, list):
        return [run_independent(v, also) for v in doc]
    return doc


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def to_json(doc: Any) -> bytes:
    """A report document as stored (numpy numbers become JSON numbers)."""
    return json.dumps(doc, indent=1, default=_json_default).encode()


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24;max-width:72rem}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
.drift{background:#ffebe9}.ok{color:#1a7f37}.bad{color:#cf222e;font-weight:600}.muted{color:#57606a}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}
.grid{display:flex;flex-wrap:wrap;gap:.5rem}.cell{border:1px solid #d0d7de;padding:.3rem}
.cell h4{font-size:.8rem;margin:0 0 .2rem 0;word-break:break-all}.cell.driftcell{border-color:#cf222e}
"""
_REF, _CUR = "#8c959f", "#cf222e"


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return escape(str(v))


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}%"


SHOWN_CATEGORIES = 20
"""A categorical feature's table and chart show this many categories (the largest shares, baseline or
window), the rest summed in one row, and the OOV bucket."""
OOV_LABEL = "(new / missing)"


def category_shares(feature: dict[str, Any], limit: int = SHOWN_CATEGORIES) -> list[tuple[str, float, float]]:
    """``(label, baseline share, window share)`` of a categorical feature's ``limit`` largest
    categories (largest first), one row for the others when there are more, and the OOV bucket last.
    Labels are the raw category values (the caller escapes them)."""
    vocab = [str(v) for v in feature.get("vocabulary") or []]
    ref = [float(p) for p in feature.get("reference_proportions") or []]
    cur = [float(p) for p in feature.get("current_proportions") or []]
    if len(ref) != len(vocab) + 1 or len(cur) != len(vocab) + 1:
        return []
    order = sorted(range(len(vocab)), key=lambda i: (-max(ref[i], cur[i]), i))
    rows = [(vocab[i], ref[i], cur[i]) for i in order[:limit]]
    rest = order[limit:]
    if rest:
        rows.append((f"({len(rest)} other categories)", sum(ref[i] for i in rest), sum(cur[i] for i in rest)))
    rows.append((OOV_LABEL, ref[-1], cur[-1]))
    return rows


def bar_chart(feature: dict[str, Any], width: int = 560, height: int = 200) -> str:
    """Grouped bars: the baseline's and the window's share of each PSI bin of one feature (of each
    shown category, for a categorical feature: :func:`category_shares`)."""
    labels: list[str] | None = None
    if feature.get("type") == "categorical":
        shares = category_shares(feature)
        labels = [label for label, _, _ in shares]
        ref = [r for _, r, _ in shares]
        cur = [c for _, _, c in shares]
        edges: list[float] = []
    else:
        ref = [float(p) for p in feature.get("reference_proportions") or []]
        cur = [float(p) for p in feature.get("current_proportions") or []]
        edges = [float(e) for e in feature.get("edges") or []]
    n = max(len(ref), len(cur))
    if n == 0:
        return ""
    top = max([*ref, *cur, 1e-9])
    pad_l, pad_b, pad_t = 40, 36, 10
    plot_w, plot_h = width - pad_l - 10, height - pad_b - pad_t
    slot = plot_w / n
    bar = slot * 0.38
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="bin shares of {escape(str(feature.get("name")))}">',
        f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 10}" y2="{pad_t + plot_h}" stroke="#57606a"/>',
        f'<text x="4" y="{pad_t + 10}" font-size="10" fill="#57606a">{top:.0%}</text>',
    ]
    for i in range(n):
        x0 = pad_l + i * slot + slot * 0.1
        for j, (vals, colour) in enumerate(((ref, _REF), (cur, _CUR))):
            v = vals[i] if i < len(vals) else 0.0
            h = plot_h * v / top
            what = f"bin {i}" if labels is None else escape(labels[i])
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{what}: {"baseline" if j == 0 else "window"} {v:.2%}</title></rect>'
            )
        if labels is not None:
            short = labels[i] if len(labels[i]) <= 12 else labels[i][:11] + "\u2026"
            parts.append(
                f'<text x="{pad_l + (i + 0.5) * slot:.1f}" y="{height - pad_b + 14 + 10 * (i % 2)}" '
                f'font-size="9" text-anchor="middle" fill="#57606a">{escape(short)}</text>'
            )
        elif i < len(edges):
            xe = pad_l + (i + 1) * slot
            parts.append(
                f'<text x="{xe:.1f}" y="{height - pad_b + 14 + 10 * (i % 2)}" font-size="9" '
                f'text-anchor="middle" fill="#57606a">{edges[i]:.3g}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _version_section(r: dict[str, Any]) -> str:
    out = [
        f"<h2>{escape(str(r['model']))} v{_num(r['version'])} "
        f"<span class='muted'>({escape(str(r.get('role') or 'other'))})</span></h2>"
    ]
    verdict = str(r.get("verdict"))
    cls = "bad" if verdict in ("drift", "baseline_error") else ("ok" if verdict == "ok" else "muted")
    out.append(
        f"<p>Verdict: <span class='{cls}'>{escape(verdict)}</span>; {_num(r.get('samples'))} rows in "
        f"{_num(r.get('lines'))} capture lines; max PSI {_num(r.get('max_psi'))} "
        f"(threshold {_num(r.get('psi_threshold'))}); missing {_pct(r.get('missing_rate'))}.</p>"
    )
    if r.get("problem"):
        out.append(f"<p class='bad'>{escape(str(r['problem']))}</p>")
    if verdict == "insufficient_samples":
        out.append(f"<p class='muted'>Fewer than {_num(r.get('min_samples'))} rows: counted, not judged.</p>")
    bad = r.get("bad") or {}
    if bad:
        items = ", ".join(f"{escape(k)}: {_num(v)}" for k, v in sorted(bad.items()))
        out.append(f"<p>Skipped lines: {items}.</p>")
    q = r.get("quality")
    if q:
        if q.get("error"):
            out.append(
                f"<p>Quality on {_num(q.get('labelled'))} labelled rows: {escape(str(q['error']))}</p>"
            )
        else:
            rows = "".join(
                f"<tr><td>{escape(m)}</td><td>{_num(v)}</td><td>{_num((q.get('heldout') or {}).get(m))}</td>"
                f"<td>{_num((q.get('delta') or {}).get(m))}</td></tr>"
                for m, v in (q.get("metrics") or {}).items()
            )
            out.append(
                f"<h3>Quality on {_num(q.get('labelled'))} labelled rows</h3><table><tr><th>metric</th>"
                f"<th>window</th><th>held-out</th><th>change</th></tr>{rows}</table>"
            )
    feats = list(r.get("features") or [])
    if r.get("prediction"):
        feats.append({**r["prediction"], "name": "(prediction)"})
    if feats:
        drifted = {f["name"] for f in r.get("drifted_features") or []}
        rows = "".join(
            f"<tr class='{'drift' if f['name'] in drifted else ''}'><td>{escape(str(f['name']))}</td>"
            f"<td>{_num(f.get('psi'))}</td><td>{_num(f.get('ks'))}</td><td>{_num(f.get('wasserstein_norm'))}</td>"
            f"<td>{_pct(f.get('missing_rate'))}</td><td>{_pct(f.get('out_of_range_rate'))}</td>"
            f"<td>{_num(f.get('mean'))}</td><td>{_num(f.get('std'))}</td></tr>"
            for f in feats
        )
        out.append(
            "<table><tr><th>feature</th><th>PSI</th><th>KS</th><th>Wasserstein (norm.)</th><th>missing</th>"
            f"<th>out of range</th><th>mean</th><th>std</th></tr>{rows}</table>"
        )
        cats = [f for f in feats if f.get("type") == "categorical"]
        if cats:
            out.append(_categorical_section(r, cats, drifted))
        if r.get("kind") == "tensor":
            out.append(tensor_section(r, drifted))
        for f in feats:
            if f["name"] in drifted and f.get("type") == "categorical":
                out.append(
                    f"<h3>{escape(str(f['name']))}: PSI {_num(f.get('psi'))}, new categories "
                    f"{_pct(f.get('new_category_rate'))}</h3>"
                    f"<p class='legend'><span style='background:{_REF}'></span>baseline"
                    f"<span style='background:{_CUR}'></span>this window</p>{bar_chart(f)}"
                )
        out.append(data_quality_section(r, feats))
        out.append(histograms_section(feats, drifted))
    return "".join(out)


def _vs(now: Any, base: Any, fmt: Any = _num) -> str:
    return f"{fmt(now)} <span class='muted'>({fmt(base)})</span>"


def tensor_section(r: dict[str, Any], drifted: set[str]) -> str:
    """A tensor model's inputs, one row per channel (an image's colour channel, a vector's element:
    ``modelops/domain/baseline.py``) with this window's summary beside the baseline's, and every
    output's drift (``drift.judge_tensors``)."""
    channels = [f for f in r.get("features") or [] if "baseline" in f]
    out = []
    if channels:
        rows = "".join(
            f"<tr class='{'drift' if f['name'] in drifted else ''}'><td>{escape(str(f.get('input')))}</td>"
            f"<td>{escape(str(f['name']))}</td><td>{_vs(f.get('mean'), f['baseline'].get('mean'))}</td>"
            f"<td>{_vs(f.get('std'), f['baseline'].get('std'))}</td>"
            f"<td>{_vs(f.get('min'), f['baseline'].get('min'))}</td>"
            f"<td>{_vs(f.get('max'), f['baseline'].get('max'))}</td>"
            f"<td>{_vs(f.get('zero_rate'), f['baseline'].get('zero_rate'), _pct)}</td>"
            f"<td>{_num(f.get('psi'))}</td></tr>"
            for f in channels
        )
        out.append(
            "<h3>Inputs per channel</h3><p class='muted'>this window (baseline: the sample convert "
            "recorded)</p><table><tr><th>input</th><th>channel</th><th>mean</th><th>std</th><th>min</th>"
            f"<th>max</th><th>zeros</th><th>PSI</th></tr>{rows}</table>"
        )
    outputs = r.get("outputs") or []
    if outputs:
        rows = "".join(
            f"<tr><td>{escape(str(o.get('name')))}</td><td>{escape(str(o.get('reduce')))}</td>"
            f"<td>{_num(o.get('psi'))}</td><td>{_num(o.get('ks'))}</td><td>{_num(o.get('mean'))}</td>"
            f"<td>{_num(o.get('std'))}</td></tr>"
            for o in outputs
        )
        out.append(
            "<h3>Outputs</h3><table><tr><th>output</th><th>compared as</th><th>PSI</th><th>KS</th>"
            f"<th>mean</th><th>std</th></tr>{rows}</table>"
        )
    return "".join(out)


SHOWN_HISTOGRAMS = 60
"""A report draws this many numeric features' histograms (drifted first, then by PSI); a wider model's
others are in the table above (every feature's numbers) and in report.json."""


def histograms_section(feats: list[dict[str, Any]], drifted: set[str], limit: int = SHOWN_HISTOGRAMS) -> str:
    """Small multiples: the baseline's and the window's share of each PSI bin of every numeric feature
    (and the prediction), drifted features first, then by PSI (at most ``limit``)."""
    numeric = [f for f in feats if f.get("type") != "categorical" and f.get("reference_proportions")]
    if not numeric:
        return ""
    numeric.sort(key=lambda f: (f["name"] not in drifted, -(f.get("psi") or 0.0), str(f["name"])))
    shown = numeric[:limit]
    cells = "".join(
        f"<div class='cell{' driftcell' if f['name'] in drifted else ''}'><h4>{escape(str(f['name']))}"
        f"{' (drift)' if f['name'] in drifted else ''}: PSI {_num(f.get('psi'))}</h4>"
        f"{bar_chart(f, width=300, height=130)}</div>"
        for f in shown
    )
    more = (
        f"<p class='muted'>{_num(len(numeric) - len(shown))} more numeric features: their numbers are in the "
        "table above and in report.json.</p>"
        if len(numeric) > len(shown)
        else ""
    )
    return (
        f"<h3>Histograms ({_num(len(shown))} of {_num(len(numeric))} numeric features, drifted first)</h3>"
        f"<p class='legend'><span style='background:{_REF}'></span>baseline"
        f"<span style='background:{_CUR}'></span>this window (share of rows per PSI bin; ticks: bin edges)</p>"
        f"<div class='grid'>{cells}</div>{more}"
    )


def data_quality_section(r: dict[str, Any], feats: list[dict[str, Any]]) -> str:
    """Counts of what was not clean: skipped capture lines by reason, and per feature the missing values
    (NaN or infinite), the invalid ones (a categorical value that is not an index) and those outside the
    training range; only the features that have any."""
    rows = []
    for f in feats:
        count = int(f.get("count") or 0)
        if f.get("type") == "categorical":
            missing, invalid, outside = 0, int(f.get("invalid") or 0), 0
        else:
            missing = round(float(f.get("missing_rate") or 0.0) * count)
            invalid = 0
            outside = round(float(f.get("out_of_range_rate") or 0.0) * count)
        if missing or invalid or outside:
            rows.append((str(f["name"]), count, missing, invalid, outside))
    bad = r.get("bad") or {}
    skipped = sum(int(v) for v in bad.values())
    head = (
        f"<h3>Data quality</h3><p>{_num(r.get('samples'))} rows judged; {_num(skipped)} capture lines skipped"
        + (
            " (" + ", ".join(f"{escape(str(k))}: {_num(v)}" for k, v in sorted(bad.items())) + ")"
            if bad
            else ""
        )
        + f"; {_num(len(rows))} of {_num(len(feats))} columns with missing, invalid or out-of-range values.</p>"
    )
    if not rows:
        return head
    rows.sort(key=lambda t: (-(t[2] + t[3] + t[4]), t[0]))
    body = "".join(
        f"<tr><td>{escape(name)}</td><td>{_num(c)}</td><td>{_num(m)}</td><td>{_num(i)}</td><td>{_num(o)}</td></tr>"
        for name, c, m, i, o in rows[:SHOWN_HISTOGRAMS]
    )
    return (
        head
        + "<table><tr><th>feature</th><th>rows</th><th>missing</th><th>invalid</th><th>out of range</th></tr>"
        f"{body}</table>"
    )


def late_labels_section(section: dict[str, Any]) -> str:
    """Quality per day of prediction from labels that arrived since (the monitor's ``late_labels``)."""
    counts = section.get("labels") or {}
    days = section.get("days") or []
    out = [
        f"<h2>Quality by day of prediction (labels of the last {_num(section.get('label_window_days'))} days)</h2>",
        f"<p>Label lines {_num(counts.get('lines'))}: matched {_num(counts.get('matched'))}, unknown request "
        f"{_num(counts.get('unknown'))}, duplicates {_num(counts.get('duplicates'))}, unreadable "
        f"{_num(counts.get('bad_lines'))}, wrong type {_num(counts.get('wrong_type'))}"
        + (f", over the limit {_num(counts.get('over_limit'))}" if counts.get("over_limit") else "")
        + ". Figures are recomputed on every run, so a day's numbers change as its labels arrive.</p>",
    ]
    if not days:
        out.append("<p class='muted'>No captured predictions in the label window.</p>")
        return "".join(out)
    names = sorted({m for d in days for m, v in (d.get("metrics") or {}).items() if v is not None})
    rows = "".join(
        f"<tr><td>{escape(str(d.get('day')))}</td><td>v{_num(d.get('version'))}</td>"
        f"<td>labelled {_num(d.get('labelled'))} of {_num(d.get('captured'))}</td><td>{_pct(d.get('coverage'))}</td>"
        + "".join(f"<td>{_num((d.get('metrics') or {}).get(m))}</td>" for m in names)
        + f"<td>{_num(d.get('wrong_type'))}</td></tr>"
        for d in days
    )
    out.append(
        "<table><tr><th>day</th><th>version</th><th>predictions</th><th>with labels</th>"
        + "".join(f"<th>{escape(m)}</th>" for m in names)
        + f"<th>wrong type</th></tr>{rows}</table>"
    )
    return "".join(out)


TREND_WINDOWS = 12
"""The report's trend covers this many windows: the previous reports' and this one."""
TREND_FEATURES = 12
"""... for this many features: the drifted ones, then the highest PSI of this window."""


def trend_of(
    report: dict[str, Any], previous: list[dict[str, Any]], top: int = TREND_FEATURES
) -> dict[str, Any]:
    """The report's ``trend``: per window (oldest first, this one last) its time, verdict and the PSI of
    the ``top`` features of this window's main version (production, else the most rows) and of the
    prediction. ``previous`` are earlier ``report.json`` documents (any order; unreadable ones left out)."""

    def main(rep: dict[str, Any]) -> dict[str, Any]:
        vs = [v for v in rep.get("versions") or [] if isinstance(v, dict)]
        prod = [v for v in vs if v.get("role") == "production"]
        return prod[0] if prod else max(vs, key=lambda v: v.get("samples") or 0, default={})

    cur = main(report)
    drifted = {str(f.get("name")) for f in cur.get("drifted_features") or [] if isinstance(f, dict)}
    feats = sorted(
        (f for f in cur.get("features") or [] if isinstance(f, dict)),
        key=lambda f: (str(f.get("name")) not in drifted, -(f.get("psi") or 0.0), str(f.get("name"))),
    )
    names = [str(f.get("name")) for f in feats[:top]]
    docs = sorted((p for p in previous if isinstance(p, dict)), key=lambda p: str(p.get("at")))
    docs = [*docs[-(TREND_WINDOWS - 1) :], report]
    windows = []
    for doc in docs:
        v = main(doc)
        psis = {str(f.get("name")): f.get("psi") for f in v.get("features") or [] if isinstance(f, dict)}
        windows.append(
            {
                "at": doc.get("at"),
                "verdict": doc.get("verdict"),
                "psi_threshold": v.get("psi_threshold"),
                "psi": {n: psis.get(n) for n in names},
                "prediction_psi": (v.get("prediction") or {}).get("psi")
                if isinstance(v.get("prediction"), dict)
                else None,
            }
        )
    return {"features": names, "windows": windows}


def trend_section(trend: dict[str, Any]) -> str:
    """A line per feature (PSI across the windows) against the threshold, and the numbers in a table."""
    windows = trend.get("windows") or []
    names = trend.get("features") or []
    if len(windows) < 2 or not names:
        return "<h2>Trend</h2><p class='muted'>No earlier window to compare with yet.</p>"
    series = [(n, [w["psi"].get(n) for w in windows]) for n in names]
    thresholds = [w.get("psi_threshold") for w in windows if isinstance(w.get("psi_threshold"), int | float)]
    chart = line_chart(series, thresholds[-1] if thresholds else None)
    head = "".join(f"<th>{escape(str(w.get('at')))}</th>" for w in windows)
    rows = "".join(
        f"<tr><td>{escape(n)}</td>" + "".join(f"<td>{_num(v)}</td>" for v in vals) + "</tr>"
        for n, vals in series
    )
    return (
        f"<h2>Trend: PSI over the last {_num(len(windows))} windows</h2>{chart}"
        f"<table><tr><th>feature</th>{head}</tr>{rows}</table>"
    )


_LINE_COLOURS = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#57606a")


def line_chart(
    series: list[tuple[str, list[Any]]], threshold: float | None, width: int = 640, height: int = 220
) -> str:
    """PSI per window, one polyline per feature (a gap where a window had no value), the threshold dashed."""
    n = max((len(v) for _, v in series), default=0)
    values = [float(x) for _, vals in series for x in vals if isinstance(x, int | float)]
    top = max([*values, threshold or 0.0, 1e-6]) * 1.1
    pad_l, pad_r, pad_t, pad_b = 40, 10, 10, 20
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b

    def xy(i: int, v: float) -> str:
        x = pad_l + (pw * i / (n - 1) if n > 1 else pw / 2)
        return f"{x:.1f},{pad_t + ph - ph * v / top:.1f}"

    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="PSI per feature over the windows">',
        f'<line x1="{pad_l}" y1="{pad_t + ph}" x2="{width - pad_r}" y2="{pad_t + ph}" stroke="#57606a"/>',
        f'<text x="4" y="{pad_t + 10}" font-size="10" fill="#57606a">{top:.3g}</text>',
    ]
    if threshold:
        y = pad_t + ph - ph * threshold / top
        parts.append(
            f'<line x1="{pad_l}" y1="{y:.1f}" x2="{width - pad_r}" y2="{y:.1f}" stroke="#cf222e" '
            f'stroke-dasharray="4 3"><title>threshold {threshold:.3g}</title></line>'
        )
    for k, (name, vals) in enumerate(series):
        colour = _LINE_COLOURS[k % len(_LINE_COLOURS)]
        run: list[str] = []
        for i, v in enumerate([*vals, None]):
            if isinstance(v, int | float):
                run.append(xy(i, float(v)))
                continue
            if run:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(run)}">'
                    f"<title>{escape(name)}</title></polyline>"
                )
            run = []
    parts.append("</svg>")
    return "".join(parts)


def _categorical_section(r: dict[str, Any], cats: list[dict[str, Any]], drifted: set[str]) -> str:
    """The categorical features: PSI, new-category rate against the baseline's, invalid values; then
    each one's shares per category (:func:`category_shares`)."""
    threshold = r.get("new_category_threshold")
    rows = "".join(
        f"<tr class='{'drift' if f['name'] in drifted else ''}'><td>{escape(str(f['name']))}</td>"
        f"<td>{_num(len(f.get('vocabulary') or []))}</td><td>{_num(f.get('psi'))}</td>"
        f"<td>{_pct(f.get('new_category_rate'))}</td><td>{_pct(f.get('baseline_new_category_rate'))}</td>"
        f"<td>{_pct(f.get('new_category_rise'))}</td><td>{_num(f.get('invalid'))}</td></tr>"
        for f in cats
    )
    out = [
        "<h3>Categorical features</h3>",
        f"<p class='muted'>New categories: the share of rows whose value is not in the training vocabulary "
        f"(or is missing); a rise above {_pct(threshold)} over the baseline's share is drift. Invalid: "
        "captured values that are not a category index (counted, not compared).</p>",
        "<table><tr><th>feature</th><th>categories</th><th>PSI</th><th>new categories</th>"
        f"<th>baseline</th><th>rise</th><th>invalid</th></tr>{rows}</table>",
    ]
    for f in cats:
        shares = "".join(
            f"<tr><td>{escape(label)}</td><td>{_pct(ref)}</td><td>{_pct(cur)}</td></tr>"
            for label, ref, cur in category_shares(f)
        )
        out.append(
            f"<table><tr><th>{escape(str(f['name']))}</th><th>baseline</th><th>window</th></tr>{shares}</table>"
        )
    return "".join(out)


def render_html(report: dict[str, Any]) -> str:
    """The whole page for one model's report (``report.json``'s document)."""
    model = escape(str(report.get("model")))
    window = report.get("window") or {}
    head = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>modelops monitor: {model}</title>"
        f"<style>{_CSS}</style></head><body>"
    )
    verdict = str(report.get("verdict"))
    body = [
        f"<h1>Monitor report: {model}</h1>",
        f"<p>Window {escape(str(window.get('start')))} to {escape(str(window.get('end')))}; verdict "
        f"<span class='{'bad' if verdict == 'drift' else 'ok'}'>{escape(verdict)}</span>; max PSI "
        f"{_num(report.get('max_psi'))}; {_num(report.get('samples'))} rows.</p>",
        "<p class='muted'>PSI on the training baseline's decile bins (empty bins floored at 1e-4); KS is the "
        "two-sample statistic against the baseline's reference sample; Wasserstein is W1 divided by the "
        "training standard deviation. A categorical feature's PSI is over its categories plus one bucket "
        "for new (or missing) values.</p>",
    ]
    if not report.get("versions"):
        body.append("<p class='muted'>No captured traffic in this window.</p>")
    body.extend(_version_section(r) for r in report.get("versions") or [])
    if report.get("trend"):
        body.append(trend_section(report["trend"]))
    if report.get("late_labels"):
        body.append(late_labels_section(report["late_labels"]))
    return head + "".join(body) + "</body></html>"
