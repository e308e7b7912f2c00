"""The monitor's outputs: window reports and ``latest.json`` (registry bucket), retrain datasets (data bucket).

Registry bucket::

    monitoring/{model}/{stamp}/report.json|report.html   one window's report
    monitoring/{model}/latest.json                      the last window's summary (read by alert, status)

Data bucket::

    datasets/{model}/retrain-v{version}-{YYYYMMDD}.csv   labelled recent rows, written once per version
                                                         and day; the dataset trigger starts training
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.config import Config

from modelops.aws import AwsError
from modelops.domain import report as reports
from modelops.domain.errors import CorruptDocumentError
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore

SIGNING_CONFIG = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 5})
"""The config of the client that presigns report links: SigV4 (its 7-day limit, the region in the URL)."""
REPORT_LINK_SECONDS = 12 * 3600
"""Default lifetime asked of a presigned report link (see :class:`ReportLinks`)."""
MAX_REPORT_LINK_SECONDS = 7 * 24 * 3600
"""SigV4's longest presigned lifetime."""
_REPORT_HTML = re.compile(r"^monitoring/(?P<model>[^/]+)/(?P<stamp>\d{8}T\d{6}Z)/report\.html$")


class ReportLinkError(ValueError):
    """A link asked for a key that is not a monitor report (only ``monitoring/`` keys are linked)."""


class ReportLinks:
    """HTTPS links that open a report. With ``base_url`` (``REPORT_BASE_URL``: the fleet page, served by
    ``modelops ui`` or published from ``modelops ui build``) the page's route
    ``{base_url}/models/{model}/reports/{stamp}/report.html``; without it an S3 presigned GET of
    ``lifetime`` seconds (at most 7 days), signed with the caller's credentials: a Lambda role's are
    temporary, and a presigned URL stops working when the credentials that signed it expire, so the
    link may die before ``lifetime`` (docs/monitoring.md "Report links"). Only keys under
    ``monitoring/`` are linked; any other key raises :class:`ReportLinkError`."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        *,
        base_url: str | None = None,
        lifetime: int = REPORT_LINK_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= lifetime <= MAX_REPORT_LINK_SECONDS:
            raise ValueError(f"a report link's lifetime must be 1 to {MAX_REPORT_LINK_SECONDS} seconds")
        if base_url and not re.match(r"^https?://[^\s]+$", base_url):
            raise ValueError("REPORT_BASE_URL must be an http(s) URL")
        self.s3, self.bucket = s3, bucket
        self.base_url = base_url.rstrip("/") if base_url else None
        self.lifetime, self.clock = lifetime, clock

    def link(self, key: str) -> tuple[str, str | None]:
        """``(url, expires_at)`` of a report key; ``expires_at`` (ISO) for a presigned link, None for
        the fleet page's."""
        if not key.startswith(keys.MONITORING) or ".." in key.split("/") or "//" in key:
            raise ReportLinkError(f"only monitor reports (monitoring/...) get a link, not {key[:80]!r}")
        if self.base_url is not None:
            m = _REPORT_HTML.match(key)
            if m is None:
                raise ReportLinkError(f"the fleet page links report.html pages only, not {key[:80]!r}")
            return f"{self.base_url}/models/{m['model']}/reports/{m['stamp']}/report.html", None
        url = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.lifetime
        )
        return str(url), reports.iso_of(self.clock() + self.lifetime)


class ReportStore:
    """Monitor reports in the registry bucket."""

    def __init__(self, objects: ObjectStore, links: ReportLinks | None = None) -> None:
        self.objects = objects
        self.links = links

    def uri(self, key: str) -> str:
        return f"s3://{self.objects.bucket}/{key}"

    # ------------------------------------------------------------------ writes
    def write(self, report: dict[str, Any], stamp: str) -> dict[str, str]:
        """``report.json``, ``report.html`` and ``latest.json`` of one model's window (``report`` as
        :func:`modelops.domain.report.model_report` builds it); returns ``{"report": uri, "report_html":
        uri}`` (with links: ``report_url`` and, presigned, ``report_url_expires_at``), which both
        documents also carry."""
        base = keys.monitoring_window(report["model"], stamp)
        uris = {"report": self.uri(base + "report.json"), "report_html": self.uri(base + "report.html")}
        if self.links is not None:
            url, expires = self.links.link(base + "report.html")
            uris["report_url"] = url
            if expires is not None:
                uris["report_url_expires_at"] = expires
        full = {**report, **uris}
        self.objects.put(base + "report.json", reports.to_json(full), "application/json")
        self.objects.put(base + "report.html", reports.render_html(full).encode(), "text/html")
        self.objects.put(
            keys.monitoring_latest(report["model"]),
            reports.to_json(reports.latest_summary(full)),
            "application/json",
        )
        return uris

    # ------------------------------------------------------------------ reads
    def latest(self, model: str) -> dict[str, Any] | None:
        """``monitoring/{model}/latest.json``; None when the model has none yet. A document that is not
        a JSON object raises :class:`CorruptDocumentError` (S3 failures: see :class:`ObjectStore`)."""
        got = self.objects.get_json(keys.monitoring_latest(model))
        if got is None:
            return None
        doc = got[0]
        if not isinstance(doc, dict):
            raise CorruptDocumentError("latest.json is not an object")
        return doc

    def previous(self, model: str, before: str, n: int) -> list[dict[str, Any]]:
        """Up to ``n`` earlier ``report.json`` documents of ``model`` (windows stamped before
        ``before``), newest first; unreadable ones are skipped. One LIST of the model's folders (they
        sort by time) and ``n`` GETs, whatever the model's history."""
        prefix = keys.monitoring_prefix(model)
        stamps = sorted(
            (
                e["Prefix"][len(prefix) :].rstrip("/")
                for e in self.objects.iter_keys(prefix, delimiter="/")
                if "Prefix" in e
            ),
            reverse=True,
        )
        out: list[dict[str, Any]] = []
        for stamp in (s for s in stamps if s < before):
            if len(out) >= n:
                break
            try:
                got = self.objects.get_json(keys.monitoring_window(model, stamp) + "report.json")
            except CorruptDocumentError:
                continue
            except AwsError:  # not transient (ObjectStore raised those): this window is left out
                continue
            if got is not None and isinstance(got[0], dict):
                out.append(got[0])
        return out

    def models(self) -> list[str]:
        """The models that have a ``monitoring/{model}/`` folder, sorted."""
        prefix = keys.monitoring_prefix()
        found = (
            e["Prefix"][len(prefix) :].rstrip("/")
            for e in self.objects.iter_keys(prefix, delimiter="/")
            if "Prefix" in e
        )
        return sorted(m for m in found if m)

    def iter_latest(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(model, latest.json)`` of every model with a readable latest report, in model order.

        A model whose ``latest.json`` is missing, not a JSON object, or refused (a non-transient AWS
        error, e.g. access denied) is skipped; a transient failure raises the store's ``unavailable``
        (what was yielded before stays valid)."""
        for model in self.models():
            try:
                doc = self.latest(model)
            except CorruptDocumentError:
                continue
            except AwsError:  # what reaches here is not transient (ObjectStore raised those)
                continue
            if doc is not None:
                yield model, doc


def _cell(value: float, vocabulary: tuple[str, ...] | None) -> str:
    if not math.isfinite(value):
        return ""
    if vocabulary is None:
        return repr(float(value))
    k = int(value)
    return vocabulary[k] if k == value and 0 <= k < len(vocabulary) else ""


class RetrainDatasets:
    """The datasets the monitor writes to retrain a drifted version (data bucket)."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def create(
        self,
        model: str,
        version: int,
        ts: float,
        columns: list[str],
        x: np.ndarray,
        labels: list[Any],
        vocabularies: list[tuple[str, ...] | None] | None = None,
    ) -> tuple[bool, str]:
        """Write ``x`` (rows of the feature ``columns[:-1]``) and ``labels`` (the last column) as
        ``datasets/{model}/retrain-v{version}-{YYYYMMDD}.csv``, create-only. Returns ``(created, uri)``:
        False when that day's dataset of the version already exists. Non-finite values are written
        empty (the dataset validation decides what they mean). ``vocabularies`` (one per feature, None
        for a numeric one) turns a categorical column's indices back into its values; the OOV index,
        and anything that is not an index, is written empty (missing): captures keep no raw value."""
        vocabs = vocabularies or [None] * (len(columns) - 1)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for row, lab in zip(x.tolist(), labels, strict=True):
            w.writerow([*(_cell(v, vocab) for v, vocab in zip(row, vocabs, strict=True)), lab])
        key = keys.retrain_dataset(model, version, datetime.fromtimestamp(ts, UTC))
        created = self.objects.create(key, buf.getvalue().encode(), "text/csv")
        return created, f"s3://{self.objects.bucket}/{key}"


class MonitorRuns:
    """A fanned-out monitor run's working files (``monitor-runs/{run}/``, registry bucket): the plan,
    the map's items, each chunk's partials or failure, the outcome (docs/monitoring.md "Fan-out")."""

    KINDS = ("partials", "failures")

    def __init__(self, objects: ObjectStore):
        self.objects = objects

    def items_location(self, run: str) -> tuple[str, str]:
        """``(bucket, key)`` of the run's items file, which the Distributed Map's ItemReader reads."""
        return self.objects.bucket, keys.monitor_run(run, "items.json")

    def chunk_key(self, run: str, kind: str, chunk: int) -> str:
        """The key of a chunk's ``partials`` or ``failures`` document (the state machine writes a
        failure itself, at the key the plan gave the chunk)."""
        return keys.monitor_run_chunk(run, kind, chunk)

    def write(self, run: str, name: str, doc: Any) -> None:
        self.objects.put_json(keys.monitor_run(run, name), doc)

    def read(self, run: str, name: str) -> Any | None:
        got = self.objects.get_json(keys.monitor_run(run, name))
        return None if got is None else got[0]

    def write_chunk(self, run: str, kind: str, chunk: int, doc: dict[str, Any]) -> None:
        """A chunk's partials or failure (overwritten by a retry: the same input gives the same doc)."""
        self.objects.put_json(keys.monitor_run_chunk(run, kind, chunk), doc)

    def chunks(self, run: str, kind: str) -> list[int]:
        """The chunks that wrote a ``kind`` document, in order."""
        prefix = keys.monitor_run_chunks(run, kind)
        found = []
        for obj in self.objects.iter_keys(prefix):
            name = obj.get("Key", "")[len(prefix) :]
            if re.fullmatch(r"[0-9]{6}\.json", name):
                found.append(int(name[:6]))
        return sorted(found)

    def read_chunk(self, run: str, kind: str, chunk: int) -> dict[str, Any] | None:
        got = self.objects.get_json(keys.monitor_run_chunk(run, kind, chunk))
        if got is None:
            return None
        if not isinstance(got[0], dict):
            raise CorruptDocumentError(f"{kind} of chunk {chunk} of run {run} is not a JSON object")
        return got[0]
