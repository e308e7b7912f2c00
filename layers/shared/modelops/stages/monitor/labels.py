"""Late labels: ground truth uploaded days after the predictions, matched to captures of the label window.

Each run reads the label files written in the last ``label_window_days`` (the model's settings,
default 7) and streams the captures of those days (the hour prefixes of ``[now - days, window end)``,
in blocks, as :class:`~modelops.stages.monitor.scan.WindowScan` does), for the models that have such
labels only. Per line it parses the header (no base64 unless the request has a label), counts the
captured rows per (model, version, UTC day of ``ts``) and keeps the outputs of labelled rows; memory
is the block plus the labels (at most ``storage.captures.MAX_LABELS``). Quality is then computed per
day of prediction (:func:`modelops.domain.metrics.quality`), so a day's figure changes on the next
run after its labels land. Unmatched labels (an unknown request id, or a row the request did not
have), duplicates and labels of the wrong type are counted, never fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelops.domain import drift, metrics
from modelops.domain.capture import CaptureFormatError, read_arrays, read_header, split_request_id
from modelops.domain.drift import VersionContext
from modelops.stages.monitor.scan import BLOCK_BYTES, MAX_LINE_BYTES
from modelops.storage.captures import Labels, Readable

DAY = 86400


@dataclass
class DayState:
    captured: int = 0
    outputs: list[np.ndarray] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)


class LabelJoin:
    """Counts captured rows per (model, version, day) and joins labelled rows' outputs."""

    def __init__(
        self,
        start: float,
        end: float,
        labels: Labels,
        starts: dict[str, float] | None = None,
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self.start, self.end = start, end
        self.labels = labels
        self.starts = starts or {}
        """Per model, the start of its own label window (models' windows differ)."""
        self.ids = {m: {rid for rid, _ in lab} for m, lab in labels.items()}
        self.block_bytes = block_bytes
        self.days: dict[tuple[str, int, int], DayState] = {}
        self.matched: dict[str, set[tuple[str, int]]] = {m: set() for m in labels}
        self.bad = 0

    def feed_stream(self, body: Readable) -> None:
        carry = b""
        while True:
            chunk = body.read(self.block_bytes)
            if not chunk:
                break
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data if len(data) <= MAX_LINE_BYTES else b""
                continue
            carry = data[cut + 1 :]
            self.feed_lines(data[:cut].split(b"\n"))
        if carry.strip():
            self.feed_lines([carry])

    def feed_lines(self, lines: list[bytes]) -> None:
        header, ids, start, end = read_header, self.ids, self.start, self.end
        for line in lines:
            if not line or line.isspace():
                continue
            try:
                model, version, rid, ts, n, f, k, xs, ys = header(line)
            except CaptureFormatError:
                self.bad += 1  # the window scan reports why
                continue
            wanted = ids.get(model)
            if wanted is None or not (self.starts.get(model, start) <= ts < end) or n < 1:
                continue
            day = int(ts // DAY)
            state = self.days.get((model, version, day))
            if state is None:
                state = self.days[(model, version, day)] = DayState()
            state.captured += n
            base, offset = split_request_id(rid)
            if base not in wanted:
                continue
            try:
                _, yb = read_arrays(xs, ys, n, f, k)
            except CaptureFormatError:
                self.bad += 1
                continue
            y = np.frombuffer(yb, dtype="<f4").reshape(n, k)
            labels, seen = self.labels[model], self.matched[model]
            for i in range(n):
                key = (base, offset + i)
                lab = labels.get(key)
                if lab is None or key in seen:
                    continue
                seen.add(key)
                state.outputs.append(y[i])
                state.labels.append(lab)

    def unmatched(self, model: str) -> int:
        """Labels of ``model`` that named no captured row of the window."""
        return len(self.labels.get(model, {})) - len(self.matched.get(model, ()))

    def quality(
        self, model: str, resolve: Callable[[str, int], VersionContext | None]
    ) -> list[dict[str, Any]]:
        """Per (UTC day of prediction, version), oldest first: captured rows, labelled rows, their share,
        the quality metrics of the labelled rows (``drift.QUALITY_METRICS`` of the version's task) and the
        labels that could not be used for it (``wrong_type``: a class the version does not have, a
        string for a regression target)."""
        out = []
        for (m, version, day), state in sorted(self.days.items()):
            if m != model:
                continue
            entry: dict[str, Any] = {
                "day": datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d"),
                "version": version,
                "captured": state.captured,
                "labelled": len(state.labels),
                "coverage": len(state.labels) / state.captured if state.captured else None,
                "metrics": None,
                "wrong_type": 0,
            }
            ctx = resolve(model, version)
            if state.labels and ctx is not None:
                y = np.vstack(state.outputs)
                try:
                    got = metrics.quality(ctx.task, y, state.labels, ctx.classes)
                except ValueError as exc:
                    entry["wrong_type"] = len(state.labels)
                    entry["error"] = str(exc)
                else:
                    entry["metrics"] = {q: got[q] for q in drift.QUALITY_METRICS if q in got}
                    entry["wrong_type"] = int(got["unusable"])
            out.append(entry)
        return out


def summarise(
    days: list[dict[str, Any]], counts: dict[str, int], unmatched: int, window_days: int, since: str
) -> dict[str, Any]:
    """The report's ``late_labels`` section of one model."""
    wrong = sum(int(d.get("wrong_type") or 0) for d in days)
    return {
        "label_window_days": window_days,
        "since": since,
        "labels": {
            "lines": int(counts.get("lines", 0)),
            "matched": sum(int(d["labelled"]) for d in days),
            "unknown": unmatched,
            "duplicates": int(counts.get("duplicates", 0)),
            "bad_lines": int(counts.get("bad_lines", 0)),
            "wrong_type": wrong,
            "over_limit": int(counts.get("over_limit", 0)),
        },
        "days": days,
    }
