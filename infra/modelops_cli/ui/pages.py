"""The fleet page's HTML (pure: the documents :mod:`modelops_cli.ui.data` gathered in, a page out).

No AWS SDK here, no I/O: the live server and the static build render the same pages from the same
dicts. Every text that comes from the registry or a report (model, feature and alias names, reasons,
errors) goes through :func:`html.escape`; a document that could not be read arrives as ``{"error":
...}`` and is shown as that item's error while the rest of the page renders.

The links are relative, so the pages work from the live server and from files (``file://``)::

    index.html                                 the fleet
    models/{model}/index.html                  a model: versions, gate decisions, alias history
    models/{model}/drift.html                  drift and quality over the monitor's windows
    models/{model}/reports/{stamp}/report.html a window's report, as the monitor wrote it
    assets/style.css, assets/app.js
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from modelops_cli.ui.charts import PALETTE, THRESHOLD_COLOUR, Chart, Series, legend, line_chart, sparkline

TOP_FEATURES = 12
"""How many features get a full chart on the drift page (the rest: a row with a sparkline, searchable)."""
METRIC_ORDER = ("rmse", "mae", "r2", "accuracy", "auc", "log_loss")


# ---------------------------------------------------------------------------- small pieces
def e(v: Any) -> str:
    """Escaped text of anything (None as an empty string)."""
    return "" if v is None else escape(str(v))


def num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return e(v)
        return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return e(v)


def size(v: Any) -> str:
    if not isinstance(v, int) or isinstance(v, bool):
        return "–"
    if v < 1024:
        return f"{v:,} B"
    scaled = float(v)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            break
    return f"{scaled:.1f} {unit}"


def short_hash(v: Any) -> str:
    s = str(v or "")
    return (
        f'<code title="{e(s)}">{e(s[:12])}…</code>' if len(s) > 12 else (f"<code>{e(s)}</code>" if s else "–")
    )


def verdict_badge(verdict: Any, drift: Any = False) -> str:
    v = "drift" if drift else str(verdict or "unknown")
    cls = {"drift": "bad", "ok": "ok"}.get(v, "muted")
    label = {"insufficient_samples": "too few samples", "no_baseline": "no baseline"}.get(v, v)
    return f'<span class="badge {cls}" data-verdict="{e(v)}">{e(label)}</span>'


def error_text(msg: Any) -> str:
    return f'<span class="error">{e(msg)}</span>'


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def report_href(model: str, stamp: str, up: str = "") -> str:
    return f"{up}models/{model}/reports/{stamp}/report.html"


def layout(title: str, body: str, *, depth: int, source: str = "", generated_at: str = "") -> str:
    """The whole document around ``body`` (already HTML); ``depth`` is how many folders below the
    site's root the page is (for its relative links)."""
    up = "../" * depth
    src = " · ".join(e(s) for s in (source, f"read {generated_at}" if generated_at else "") if s)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)} · modelops</title>"
        "<link rel='icon' href='data:,'>"
        f"<link rel='stylesheet' href='{up}assets/style.css'>"
        f"<script src='{up}assets/app.js' defer></script>"
        "</head><body>"
        f"<header><a href='{up}index.html' id='home'>modelops fleet</a><span class='src'>{src}</span></header>"
        f"<main>{body}</main></body></html>"
    )


def error_page(title: str, message: str, *, depth: int = 0) -> str:
    return layout(title, f"<h1>{e(title)}</h1><p class='error'>{e(message)}</p>", depth=depth)


def _table(head: Sequence[str], rows: Iterable[str], attrs: str = "") -> str:
    ths = "".join(f"<th>{h}</th>" for h in head)
    return f"<table{attrs}><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _metrics(m: Any, limit: int = 6) -> str:
    m = _dict(m)
    keys = [k for k in METRIC_ORDER if k in m] + sorted(
        k for k in m if k not in METRIC_ORDER and not k.startswith(("n_", "baseline_"))
    )
    parts = [f"{e(k)} {num(m[k])}" for k in keys[:limit] if _number(m[k]) is not None]
    return "<br>".join(parts) or "–"


# ---------------------------------------------------------------------------- the fleet
def fleet_page(fleet: Mapping[str, Any]) -> str:
    """``index.html``: every model (production and canary versions, last monitor verdict) and the
    stack's open alarms."""
    models = list(fleet.get("models") or [])
    body = ["<h1>Fleet</h1>"]
    if not models:
        body.append(
            "<p class='empty' id='no-models'>No models in the registry yet. Upload a model spec and a "
            "dataset under <code>datasets/{model}/</code> of the data bucket to train the first one "
            "(README: Quick tour).</p>"
        )
    else:
        rows = [_fleet_row(m) for m in models]
        body.append(
            _table(
                ["model", "versions", "production", "canary", "last monitor run", "max PSI", "report"],
                rows,
                " id='models'",
            )
        )
    body.append(_alarms(_dict(fleet.get("alarms"))))
    return layout(
        "Fleet",
        "".join(body),
        depth=0,
        source=str(fleet.get("source") or ""),
        generated_at=str(fleet.get("generated_at") or ""),
    )


def _fleet_row(m: Mapping[str, Any]) -> str:
    name = str(m.get("model"))
    if m.get("invalid"):
        return f"<tr><td>{e(name)}</td><td colspan='6'>{error_text(m.get('error'))}</td></tr>"
    link = f"<a href='models/{e(name)}/index.html' class='model-link'>{e(name)}</a>"
    if m.get("error"):
        link += f"<br>{error_text(m['error'])}"
    versions = m.get("versions") or []
    prod = m.get("production")
    if prod is None:
        prod_cell = "<span class='muted'>none</span>"
    elif prod.get("error"):
        prod_cell = f"v{num(prod.get('version'))} {error_text(prod['error'])}"
    else:
        prod_cell = (
            f"v{num(prod.get('version'))}<br><span class='muted'>{_metrics(prod.get('metrics'), 2)}</span>"
        )
    canary = m.get("canary")
    if canary is None:
        canary_cell = "–"
    else:
        weight = _number(canary.get("weight"))
        canary_cell = f"v{num(canary.get('version'))} at {weight:.0%}" if weight is not None else "?"
        if canary.get("error"):
            canary_cell += f" {error_text(canary['error'])}"
    mon = m.get("monitor")
    if mon is None:
        mon_cell, psi, report = "<span class='muted'>not monitored yet</span>", "–", "–"
    elif mon.get("error"):
        mon_cell, psi, report = error_text(mon["error"]), "–", "–"
    else:
        mon_cell = f"{verdict_badge(mon.get('verdict'), mon.get('drift'))} {e(mon.get('at'))}"
        psi = num(mon.get("max_psi"))
        stamp = m.get("monitor_stamp")
        report = (
            f"<a href='{e(report_href(name, stamp))}' class='report-link'>report</a> · "
            f"<a href='models/{e(name)}/drift.html'>drift</a>"
            if stamp
            else "–"
        )
    return (
        f"<tr data-model='{e(name)}'><td>{link}</td><td class='num'>{len(versions)}</td><td>{prod_cell}</td>"
        f"<td>{canary_cell}</td><td>{mon_cell}</td><td class='num'>{psi}</td><td>{report}</td></tr>"
    )


def _alarms(alarms: Mapping[str, Any]) -> str:
    scope = e(alarms.get("scope") or "")
    out = [f"<h2>Open alarms</h2><p class='muted'>{scope}</p>"]
    if alarms.get("error"):
        out.append(f"<p>{error_text(alarms['error'])}</p>")
        return "".join(out)
    items = list(alarms.get("items") or [])
    if not items:
        out.append("<p id='no-alarms'>No alarms open.</p>")
        return "".join(out)
    rows = (
        f"<tr><td>{e(a.get('name'))}</td><td>{e(a.get('since'))}</td><td>{e(a.get('reason'))}</td></tr>"
        for a in items
    )
    out.append(_table(["alarm", "since", "why"], rows, " id='alarms'"))
    return "".join(out)


# ---------------------------------------------------------------------------- a model
def model_page(data: Mapping[str, Any]) -> str:
    """``models/{model}/index.html``: the versions (lineage, metrics, parity, sizes), the gate's
    decisions with their numbers, and the alias history."""
    model = str(data.get("model"))
    aliases = _dict(data.get("aliases"))
    history = [h for h in data.get("history") or [] if isinstance(h, dict)]
    body = [f"<h1>{e(model)}</h1>", _alias_summary(aliases)]
    mon = data.get("monitor")
    if isinstance(mon, dict) and mon.get("error"):
        body.append(f"<p>Last monitor run: {error_text(mon['error'])}</p>")
    elif isinstance(mon, dict):
        body.append(
            f"<p>Last monitor run {e(mon.get('at'))}: {verdict_badge(mon.get('verdict'), mon.get('drift'))}, "
            f"max PSI {num(mon.get('max_psi'))}, {num(mon.get('samples'))} rows.</p>"
        )
    else:
        body.append("<p class='muted'>Not monitored yet.</p>")
    body.append("<p><a href='drift.html' id='drift-link'>Drift and quality over time</a></p>")
    body.append("<h2>Versions</h2>")
    versions = list(data.get("versions") or [])
    if not versions:
        body.append("<p class='empty'>No versions yet.</p>")
    else:
        roles = _roles(aliases)
        rows = [_version_row(v, roles.get(int(v.get("version") or 0), [])) for v in reversed(versions)]
        body.append(
            _table(
                ["version", "created", "dataset", "training", "metrics", "parity", "sizes"],
                rows,
                " id='versions'",
            )
        )
    body.append("<h2>Gate decisions</h2>")
    gate = [h for h in history if h.get("kind") == "gate"]
    if gate:
        body.append(
            _table(
                [
                    "at",
                    "candidate",
                    "decision",
                    "metric",
                    "candidate",
                    "production",
                    "improvement",
                    "95% interval",
                    "evaluation rows",
                    "reason",
                ],
                (_decision_row(d) for d in reversed(gate)),
                " id='decisions'",
            )
        )
    else:
        body.append("<p class='muted'>No gate decisions recorded.</p>")
    body.append("<h2>Alias history</h2>")
    moves = [h for h in history if h.get("kind") != "gate"]
    if moves:
        body.append(
            _table(
                ["at", "alias", "who", "what", "outcome", "reason"],
                (_history_row(h) for h in reversed(moves)),
                " id='history'",
            )
        )
    else:
        body.append("<p class='muted'>No alias moves recorded.</p>")
    return layout(
        model,
        "".join(body),
        depth=2,
        source=str(data.get("source") or ""),
        generated_at=str(data.get("generated_at") or ""),
    )


def _roles(aliases: Mapping[str, Any]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, doc in sorted(aliases.items()):
        if not isinstance(doc, dict) or doc.get("error"):
            continue
        if isinstance(doc.get("version"), int):
            out.setdefault(doc["version"], []).append(str(name))
        canary = _dict(doc.get("canary"))
        if isinstance(canary.get("version"), int):
            w = _number(canary.get("weight"))
            out.setdefault(canary["version"], []).append(
                f"{name} canary" + (f" {w:.0%}" if w is not None else "")
            )
    return out


def _alias_summary(aliases: Mapping[str, Any]) -> str:
    if not aliases:
        return "<p class='muted'>No aliases: nothing serves this model yet.</p>"
    parts = []
    for name, doc in sorted(aliases.items()):
        if doc.get("error"):
            parts.append(f"{e(name)}: {error_text(doc['error'])}")
            continue
        text = f"<b>{e(name)}</b> → v{num(doc.get('version'))}"
        if doc.get("previous") is not None:
            text += f" (previous v{num(doc.get('previous'))})"
        canary = _dict(doc.get("canary"))
        if canary:
            w = _number(canary.get("weight"))
            text += f", canary v{num(canary.get('version'))}" + (f" at {w:.0%}" if w is not None else "")
        text += f" <span class='muted'>by {e(doc.get('updated_by'))} {e(doc.get('updated_at'))}</span>"
        parts.append(text)
    return f"<p id='aliases'>{'<br>'.join(parts)}</p>"


def _version_row(v: Mapping[str, Any], roles: list[str]) -> str:
    n = v.get("version")
    badges = "".join(f" <span class='badge ok'>{e(r)}</span>" for r in roles)
    head = f"<td><b>v{num(n)}</b>{badges}</td>"
    if v.get("error"):
        return f"<tr data-version='{e(n)}'>{head}<td colspan='6'>{error_text(v['error'])}</td></tr>"
    m = _dict(v.get("manifest"))
    ds = _dict(m.get("dataset"))
    training = _dict(m.get("training"))
    hp = _dict(training.get("hyperparameters"))
    record = _dict(training.get("record"))
    train_sha = hp.get("dataset_sha256") or _dict(record.get("dataset")).get("sha256")
    dataset = (
        f"{e(ds.get('key') or ds.get('uri') or '–')}<br>{num(ds.get('rows'))} rows, sha256 {short_hash(ds.get('sha256'))}"
        f"<br><span class='muted'>train rows sha256</span> {short_hash(train_sha)}"
    )
    code = m.get("code") or hp.get("sagemaker_submit_directory")
    job = (
        f"job <code>{e(training.get('job') or m.get('dedup_key') or '–')}</code><br>"
        f"backend {e(training.get('backend') or '–')}, {num(training.get('epochs_run'))} epochs"
        + (f"<br>code {short_hash(code)}" if code else "")
    )
    parity_cells = []
    for kind, p in sorted(_dict(m.get("parity")).items()):
        if not isinstance(p, dict):
            continue
        ok = p.get("passed")  # absent: measured, not gated (int8)
        mark = {
            True: "<span class='badge ok'>passed</span>",
            False: "<span class='badge bad'>failed</span>",
        }.get(ok, "<span class='badge muted'>not gated</span>")
        delta = _dict(p.get("metric")).get("delta_vs_float32")
        parity_cells.append(
            f"{e(kind)} {mark} max |Δ| {num(p.get('max_abs_diff'))}"
            + (f", metric Δ {num(delta)}" if _number(delta) is not None else "")
        )
    sizes = [
        f"{e(role)} {size(_dict(a).get('size'))}" for role, a in sorted(_dict(m.get("artifacts")).items())
    ]
    return (
        f"<tr data-version='{e(n)}'>{head}<td>{e(m.get('created_at'))}</td><td>{dataset}</td><td>{job}</td>"
        f"<td>{_metrics(m.get('metrics'))}</td><td>{'<br>'.join(parity_cells) or '–'}</td>"
        f"<td>{'<br>'.join(sizes) or '–'}</td></tr>"
    )


def _decision_row(d: Mapping[str, Any]) -> str:
    iv = _dict(d.get("interval"))
    interval = (
        f"[{num(iv.get('lower'))}, {num(iv.get('upper'))}]<br><span class='muted'>{num(iv.get('resamples'))} "
        "resamples</span>"
        if iv
        else "–"
    )
    ev = _dict(d.get("evaluation"))
    rows = (
        f"{num(ev.get('rows'))} ({e(d.get('source') or ev.get('source') or '–')})"
        if ev
        else e(d.get("source") or "–")
    )
    action = str(d.get("decision") or d.get("action") or "?")
    cls = {"promote": "ok", "canary": "ok", "reject": "bad", "keep": "muted"}.get(action, "muted")
    applied = "" if d.get("applied") in (None, True) else " <span class='muted'>(not applied)</span>"
    prod = d.get("production")
    return (
        f"<tr class='decision' data-candidate='{e(d.get('candidate'))}'><td>{e(d.get('at'))}</td>"
        f"<td>v{num(d.get('candidate'))} vs {('v' + num(prod)) if prod is not None else 'none'}</td>"
        f"<td><span class='badge {cls}'>{e(action)}</span>{applied}</td><td>{e(d.get('metric'))}</td>"
        f"<td class='num'>{num(d.get('candidate_value'))}</td><td class='num'>{num(d.get('production_value'))}</td>"
        f"<td class='num'>{num(d.get('improvement'))}<br><span class='muted'>needs &gt; {num(d.get('min_improvement'))}"
        f"</span></td><td>{interval}</td><td>{rows}</td><td>{e(d.get('reason'))}</td></tr>"
    )


def _history_row(h: Mapping[str, Any]) -> str:
    if h.get("error"):
        return f"<tr><td>{e(h.get('at'))}</td><td>{e(h.get('alias'))}</td><td colspan='4'>{error_text(h['error'])}</td></tr>"
    frm, to = h.get("from"), h.get("to")
    if to is not None:
        what = f"{('v' + num(frm)) if frm is not None else 'nothing'} → v{num(to)}"
        canary = _dict(h.get("canary"))
        if canary:
            w = _number(canary.get("weight"))
            what += f", canary v{num(canary.get('version'))}" + (f" at {w:.0%}" if w is not None else "")
    else:
        what = e(h.get("decision") or h.get("kind") or "–")
    return (
        f"<tr><td>{e(h.get('at'))}</td><td>{e(h.get('alias'))}</td><td>{e(h.get('actor'))}</td><td>{what}</td>"
        f"<td>{e(h.get('outcome') or '–')}</td><td>{e(h.get('reason'))}</td></tr>"
    )


# ---------------------------------------------------------------------------- drift over time
def summarise_window(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the drift page needs of one window's ``report.json``: the production version's numbers
    (else the version with the most rows), each feature's PSI, the prediction's, the quality figures."""
    versions = [v for v in report.get("versions") or [] if isinstance(v, dict)]
    prod = [v for v in versions if v.get("role") == "production"]
    pick = prod[0] if prod else max(versions, key=lambda v: _number(v.get("samples")) or 0.0, default={})
    features = {}
    for f in pick.get("features") or []:
        if isinstance(f, dict) and "name" in f:
            features[str(f["name"])] = _number(f.get("psi"))
    quality = _dict(pick.get("quality"))
    return {
        "at": report.get("at"),
        "window": _dict(report.get("window")),
        "verdict": report.get("verdict"),
        "drift": bool(report.get("drift")),
        "samples": report.get("samples"),
        "max_psi": _number(report.get("max_psi")),
        "version": pick.get("version"),
        "role": pick.get("role"),
        "version_verdict": pick.get("verdict"),
        "psi_threshold": _number(pick.get("psi_threshold")),
        "features": features,
        "prediction": _number(_dict(pick.get("prediction")).get("psi")),
        "drifted": [str(_dict(f).get("name", f)) for f in pick.get("drifted_features") or []],
        "quality": (
            {
                "labelled": quality.get("labelled"),
                "metrics": {k: _number(v) for k, v in _dict(quality.get("metrics")).items()},
                "heldout": {k: _number(v) for k, v in _dict(quality.get("heldout")).items()},
                "error": quality.get("error"),
            }
            if quality
            else None
        ),
        "late_labels": [
            {k: d.get(k) for k in ("day", "version", "captured", "labelled", "coverage", "metrics")}
            for d in _dict(report.get("late_labels")).get("days") or []
            if isinstance(d, dict)
        ],
    }


def _label(w: Mapping[str, Any]) -> str:
    rep = _dict(w.get("report"))
    return str(rep.get("at") or w.get("stamp") or "?")


def drift_page(data: Mapping[str, Any]) -> str:
    """``models/{model}/drift.html``: PSI per feature (and the prediction's) over the monitor's windows,
    the threshold, each window's report, and the quality figures where labels exist."""
    model = str(data.get("model"))
    windows = list(data.get("windows") or [])
    top = int(data.get("top") or TOP_FEATURES)
    body = [f"<h1>{e(model)}: drift and quality over time</h1>", "<p><a href='index.html'>← versions</a></p>"]
    if not windows:
        body.append(
            "<p class='empty' id='no-windows'>No monitor runs yet for this model. The monitor runs every "
            f"hour once predictions are captured; <code>modelops monitor run --model {e(model)}</code> runs "
            "one now.</p>"
        )
        return _drift_layout(model, body, data)
    shown = data.get("limit")
    body.append(
        f"<p class='muted'>{len(windows)} window(s)"
        + (f", the last {num(shown)} at most" if shown else "")
        + "; each point links to its window's report. Numbers of the production version of each window "
        "(else the version with the most rows).</p>"
    )
    reps = [_dict(w.get("report")) for w in windows]
    labels = [_label(w) for w in windows]
    links = [f"reports/{w.get('stamp')}/report.html" if w.get("report") else None for w in windows]
    threshold = [r.get("psi_threshold") for r in reps]
    th_series = Series("threshold", threshold, THRESHOLD_COLOUR, dashed=True, points=False)
    headline = [
        Series("prediction PSI", [r.get("prediction") for r in reps], PALETTE[1]),
        Series("worst feature PSI", [r.get("max_psi") for r in reps], PALETTE[0]),
        th_series,
    ]
    body.append("<h2>PSI over time</h2>")
    body.append(
        f"<div class='card' id='drift-chart'>{line_chart(Chart('PSI of the prediction and the worst feature', headline, labels, links, 'PSI'))}"
        f"{legend(headline)}</div>"
    )
    body.append(_features_section(reps, labels, links, threshold, th_series, top))
    body.append(_windows_table(model, windows))
    body.append(_quality_section(reps, labels, links))
    body.append(_late_labels_section(reps[-1] if reps else {}))
    return _drift_layout(model, body, data)


def _late_labels_section(last: Mapping[str, Any]) -> str:
    """Labels that arrived after the fact, per day of prediction, as the last window counted them:
    how many predictions have labels so far, and the quality on those (docs/monitoring.md)."""
    days = [d for d in last.get("late_labels") or [] if isinstance(d, dict)]
    out = ["<h2>Labels per day of prediction</h2>"]
    if not days:
        out.append(
            "<p class='empty' id='no-late-labels'>No labels joined to the predictions of the label window "
            "yet. Labels may arrive days later; each monitor run counts them again.</p>"
        )
        return "".join(out)
    names = sorted({m for d in days for m, v in _dict(d.get("metrics")).items() if v is not None})
    rows = (
        f"<tr><td>{e(d.get('day'))}</td><td class='num'>{num(d.get('version'))}</td>"
        f"<td class='num'>{num(d.get('labelled'))} of {num(d.get('captured'))}</td>"
        f"<td class='num'>{num(d.get('coverage'))}</td>"
        + "".join(f"<td class='num'>{num(_dict(d.get('metrics')).get(m))}</td>" for m in names)
        + "</tr>"
        for d in days
    )
    out.append(
        _table(
            ["day", "version", "labelled so far", "coverage", *(e(m) for m in names)],
            rows,
            " id='late-labels'",
        )
    )
    return "".join(out)


def _drift_layout(model: str, body: list[str], data: Mapping[str, Any]) -> str:
    return layout(
        f"{model}: drift",
        "".join(body),
        depth=2,
        source=str(data.get("source") or ""),
        generated_at=str(data.get("generated_at") or ""),
    )


def _features_section(
    reps: list[dict[str, Any]],
    labels: list[str],
    links: list[str | None],
    threshold: list[Any],
    th_series: Series,
    top: int,
) -> str:
    names: dict[str, list[float | None]] = {}
    for i, r in enumerate(reps):
        for name, psi in _dict(r.get("features")).items():
            names.setdefault(name, [None] * len(reps))[i] = psi
    if not names:
        return "<h2>Features</h2><p class='muted'>No window has per-feature numbers yet (too few rows, or no baseline).</p>"

    def latest(vals: list[float | None]) -> float:
        return next((v for v in reversed(vals) if v is not None), -1.0)

    def peak(vals: list[float | None]) -> float:
        return max((v for v in vals if v is not None), default=-1.0)

    ranked = sorted(names.items(), key=lambda kv: (-latest(kv[1]), -peak(kv[1]), kv[0]))
    th_last = next((t for t in reversed(threshold) if t is not None), None)
    out = [
        f"<h2>Features</h2><p>{len(ranked)} feature(s), ranked by their PSI in the latest window; the top "
        f"{min(top, len(ranked))} are charted. <label>Search <input type='search' id='feature-search' "
        "placeholder='feature name' autocomplete='off'></label> <span id='feature-count' class='muted'>"
        f"{len(ranked)} of {len(ranked)} features</span></p>",
        "<div class='charts' id='feature-charts'>",
    ]
    for name, vals in ranked[:top]:
        series = [Series("PSI", vals, PALETTE[0]), th_series]
        out.append(
            f"<div class='card feature-chart' data-feature='{e(name)}'>"
            f"{line_chart(Chart(name, series, labels, links, 'PSI', width=420, height=170))}</div>"
        )
    out.append("</div>")
    rows = []
    for rank, (name, vals) in enumerate(ranked, 1):
        over = sum(
            1 for v, t in zip(vals, threshold, strict=True) if v is not None and t is not None and v > t
        )
        rows.append(
            f"<tr data-feature='{e(name)}'><td class='num'>{rank}</td><td>{e(name)}</td>"
            f"<td class='num'>{num(latest(vals) if latest(vals) >= 0 else None)}</td>"
            f"<td class='num'>{num(peak(vals) if peak(vals) >= 0 else None)}</td><td class='num'>{over}</td>"
            f"<td>{sparkline(vals, th_last)}</td></tr>"
        )
    out.append(
        _table(
            ["#", "feature", "PSI (latest)", "PSI (highest)", "windows over threshold", "trend"],
            rows,
            " id='features'",
        )
    )
    return "".join(out)


def _windows_table(model: str, windows: list[Mapping[str, Any]]) -> str:
    rows = []
    for w in reversed(windows):
        stamp = str(w.get("stamp"))
        if w.get("error") or not w.get("report"):
            rows.append(
                f"<tr><td>{e(stamp)}</td><td colspan='6'>{error_text(w.get('error') or 'no report.json')}</td></tr>"
            )
            continue
        r = _dict(w.get("report"))
        win = _dict(r.get("window"))
        drifted = [str(d) for d in r.get("drifted") or []]
        shown = ", ".join(e(d) for d in drifted[:3]) + (
            f" and {len(drifted) - 3} more" if len(drifted) > 3 else ""
        )
        role = f" ({e(r.get('role'))})" if r.get("role") else ""
        rows.append(
            f"<tr class='window'><td>{e(r.get('at') or stamp)}<br><span class='muted'>{e(win.get('start'))} to "
            f"{e(win.get('end'))}</span></td><td>v{num(r.get('version'))}{role}</td>"
            f"<td>{verdict_badge(r.get('verdict'), r.get('drift'))}</td><td class='num'>{num(r.get('samples'))}</td>"
            f"<td class='num'>{num(r.get('max_psi'))}</td><td>{shown or '–'}</td>"
            f"<td><a class='report-link' href='reports/{e(stamp)}/report.html'>report</a></td></tr>"
        )
    return "<h2>Windows</h2>" + _table(
        ["window", "version", "verdict", "rows", "max PSI", "drifted features", "report"],
        rows,
        " id='windows'",
    )


def _quality_section(reps: list[dict[str, Any]], labels: list[str], links: list[str | None]) -> str:
    quality = [_dict(r.get("quality")) for r in reps]
    metric_names = sorted({m for q in quality for m, v in _dict(q.get("metrics")).items() if v is not None})
    out = ["<h2>Quality over time</h2>"]
    if not metric_names:
        errors = [str(q["error"]) for q in quality if q.get("error")]
        out.append(
            "<p class='empty' id='no-quality'>No labelled predictions in these windows. Quality is measured "
            "where labels exist: upload them under <code>labels/{model}/</code> of the data bucket, joined "
            "to the captured predictions by request id (docs/monitoring.md).</p>"
        )
        if errors:
            out.append(f"<p>{error_text(errors[-1])}</p>")
        return "".join(out)
    out.append("<div class='charts' id='quality-charts'>")
    for i, m in enumerate(metric_names):
        series = [
            Series(
                f"{m} on labelled rows", [_dict(q.get("metrics")).get(m) for q in quality], PALETTE[2 + i % 3]
            ),
            Series(
                f"{m} held out at training",
                [_dict(q.get("heldout")).get(m) for q in quality],
                PALETTE[5],
                dashed=True,
            ),
        ]
        out.append(
            f"<div class='card'>{line_chart(Chart(m, series, labels, links, m, width=420, height=170))}"
            f"{legend(series)}</div>"
        )
    out.append("</div>")
    rows = (
        f"<tr><td>{e(label)}</td><td class='num'>{num(q.get('labelled'))}</td>"
        + "".join(f"<td class='num'>{num(_dict(q.get('metrics')).get(m))}</td>" for m in metric_names)
        + "</tr>"
        for label, q in zip(labels, quality, strict=True)
        if q
    )
    out.append(_table(["window", "labelled rows", *(e(m) for m in metric_names)], rows, " id='quality'"))
    return "".join(out)
