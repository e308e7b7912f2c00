"""One window's captured traffic, decoded in blocks and folded into per-(model, version) partials.

Memory is bounded by the block size, the rows waiting to be folded (``FOLD_BYTES``), the partials (a
few KB per feature) and the joined labels (at most ``storage.captures.MAX_LABELS``), whatever the size
of the window. A piece of clean lines (``PIECE_BYTES``) is decoded in one call, column-wise
(:func:`~modelops.domain.capture.read_block`, :meth:`WindowScan._feed_piece`); any other piece line by
line. Lines are checked by the capture format's own :func:`~modelops.domain.capture.read_header` and
:func:`~modelops.domain.capture.read_arrays` (the checks of ``decode_line``); between the two the scan
drops lines outside the window or of other models and checks the feature count against the version's
schema, and it keeps each line's bytes to build one array per block and (model, version) rather than
one per line. Every line that is not used is counted under a reason (``BAD_REASONS``), or as outside
the window / another model.

A tensor model's lines (capture format 2) reach the scan as ``read_header``'s :class:`TensorLine`
(an exception path: a v1 line pays nothing for it). They are decoded in full
(``tensor_record_from_doc``), checked against the version's signature (``wrong_signature``
otherwise, as is a v2 line of a tabular version or a v1 line of a tensor one) and folded per block
into the channels' and outputs' partials (``drift.judge_tensors``). Their labels are not joined yet.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelops.domain import drift
from modelops.domain.baseline import channel_values, output_column
from modelops.domain.capture import (
    CaptureFormatError,
    TensorLine,
    read_arrays,
    read_block,
    read_header,
    split_request_id,
    tensor_record_from_doc,
)
from modelops.domain.drift import VersionContext
from modelops.storage.captures import Labels, Readable

BLOCK_BYTES = 4 * 1024 * 1024
"""Bytes read from a capture object at a time."""
PIECE_BYTES = 256 * 1024
"""Lines decoded together by :func:`~modelops.domain.capture.read_block` (cut at a line's end): one bad
line sends only its piece down the line-by-line path."""
FOLD_BYTES = 8 * 1024 * 1024
"""Decoded feature bytes (all groups together) that wait before they are folded into the partials:
fewer, larger folds (one ``drift.partial`` per feature searches the baseline's grid, whatever the rows)
with memory still bounded. A capture object's rows are folded at its end too, so an object folds the
same way whether one function reads the window or a fan-out child reads that object (the merged
statistics are then identical to the last bit). Rows still waiting are folded before anyone reads
:attr:`WindowScan.groups`."""
MAX_LINE_BYTES = 8 * 1024 * 1024
BAD_REASONS = (
    "not_json",
    "missing_field",
    "non_numeric",
    "bad_array",
    "wrong_feature_count",
    "not_compared",
    "wrong_output_count",
    "unknown_version",
    "unsupported_format",
    "unknown_dtype",
    "wrong_signature",
)
"""Why a line was not used, in the summary's order: the format's (``capture.FORMAT_REASONS``) and the
monitor's own."""


@dataclass
class GroupState:
    """Everything accumulated for one (model, version) over the window."""

    ctx: VersionContext
    lines: int = 0
    rows: int = 0
    k: int | None = None
    bad: Counter[str] = field(default_factory=Counter)
    parts: list[drift.FeaturePartial] | None = None
    pred: drift.FeaturePartial | None = None
    first_ts: float = math.inf
    last_ts: float = -math.inf
    nf: int = 0
    """The version's feature count (0: its schema is unknown, lines are only counted; -1: a tensor
    version, whose lines are format 2)."""
    # the block being decoded
    xb: list[bytes] = field(default_factory=list)
    yb: list[bytes] = field(default_factory=list)
    block_rows: int = 0
    labelled_lines: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(request_id, first row in the block, rows, the line's first row within its request)"""
    # joined labels
    label_y: list[np.ndarray] = field(default_factory=list)
    label_x: list[np.ndarray] = field(default_factory=list)
    label_v: list[Any] = field(default_factory=list)
    # a tensor version's block: each line's inputs and outputs by name
    tensors: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nf = self.ctx.n_features
        if self.ctx.refs is not None and self.ctx.pred_ref is not None:
            refs = list(self.ctx.refs)
            if self.ctx.tensor is not None:  # the channels' partials, then the outputs' (judge_tensors)
                refs.extend(self.ctx.tensor.out_refs)
            self.parts = [drift.FeaturePartial.empty(r) for r in refs]
            self.pred = drift.FeaturePartial.empty(self.ctx.pred_ref)
        if self.ctx.tensor is not None:
            self.nf = -1


class WindowScan:
    """Decodes capture blocks and folds them into per-(model, version) partials.

    ``resolve(model, version)`` gives the version's context (or None: unknown). ``labels`` maps a
    model to ``{(request_id, row): label}`` for the quality join.
    """

    def __init__(
        self,
        start: float,
        end: float,
        resolve: Callable[[str, int], VersionContext | None],
        *,
        model: str | None = None,
        labels: Labels | None = None,
        block_bytes: int = BLOCK_BYTES,
    ):
        self.start, self.end = start, end
        self.resolve = resolve
        self.model = model
        self.labels = labels or {}
        self._label_ids = {m: {rid for rid, _ in lab} for m, lab in self.labels.items()}
        self.block_bytes = block_bytes
        self._groups: dict[tuple[str, int], GroupState] = {}
        self._pending = 0
        """Decoded feature bytes not folded yet (``FOLD_BYTES``)."""
        self.unknown: dict[tuple[str, int], int] = {}
        self.bad: Counter[str] = Counter()
        self.lines = 0
        self.outside_window = 0
        self.other_models = 0
        self.objects = 0
        self.bytes = 0

    @property
    def groups(self) -> dict[tuple[str, int], GroupState]:
        """Every (model, version) seen, its decoded rows all folded into its partials."""
        self._fold(everything=True)
        return self._groups

    # ------------------------------------------------------------------ input
    def feed_stream(self, body: Readable) -> None:
        """One capture object, read in blocks of ``block_bytes`` (a trailing partial line is bad)."""
        self.objects += 1
        carry = b""
        while True:
            chunk = body.read(self.block_bytes)
            if not chunk:
                break
            self.bytes += len(chunk)
            first = chunk.find(b"\n")
            if first < 0:
                carry += chunk
                if len(carry) > MAX_LINE_BYTES:  # a line that never ends: count it, drop it
                    self.lines += 1
                    self.bad["not_json"] += 1
                    carry = b""
                continue
            if carry:  # the line the previous block began (no copy of the whole block for it)
                self.feed_block(carry + chunk[:first])
            else:
                self.feed_block(chunk, 0, first)
            cut = chunk.rfind(b"\n")
            carry = chunk[cut + 1 :]
            self.feed_block(chunk, first + 1, cut)
        if carry.strip():
            self._feed_each([carry])
        self._fold(everything=True)  # an object's rows fold the same whoever reads it (the fan-out)

    def feed_block(self, block: bytes, start: int = 0, stop: int | None = None) -> None:
        """Lines joined by newlines (``block[start:stop]``), decoded ``PIECE_BYTES`` at a time: a piece
        whose every line is a well-formed v1 record that fits its version (the common case)
        column-wise (:meth:`_feed_piece`), any other piece line by line (:meth:`feed_lines`). Both
        count every line the same way and give the same rows (tests/unit/test_monitor_block.py)."""
        pos, size = start, len(block) if stop is None else stop
        view = memoryview(block)  # pieces are views: the block is not copied again
        while pos < size:
            end = block.find(b"\n", pos + PIECE_BYTES, size)
            if end < 0:
                end = size
            piece = view[pos:end]
            pos = end + 1
            if not self._feed_piece(piece):
                self._feed_each(bytes(piece).split(b"\n"))
        self._fold_if_full()

    def _feed_piece(self, piece: bytes | memoryview) -> bool:
        """One piece column-wise; False, with nothing counted, when :func:`read_block` refuses it or a
        line does not fit its version (the line-by-line path then says how)."""
        b = read_block(piece)
        if b is None:
            return False
        total = len(b.models)
        inside = (b.ts >= self.start) & (b.ts < self.end)
        first = (b.models[0], b.versions[0])
        if b.models.count(first[0]) == total and b.versions.count(first[1]) == total:  # the common case
            by_key: dict[tuple[str, int], np.ndarray] = {first: np.flatnonzero(inside)}
        else:
            rows: dict[tuple[str, int], list[int]] = {}
            for i in np.flatnonzero(inside).tolist():
                rows.setdefault((b.models[i], b.versions[i]), []).append(i)
            by_key = {key: np.asarray(idx, dtype=np.int64) for key, idx in rows.items()}
        plan: list[tuple[tuple[str, int], GroupState | None, np.ndarray]] = []
        for key, idx in by_key.items():
            if not idx.size or (self.model is not None and key[0] != self.model):
                plan.append((key, None, idx))
                continue
            g = self._groups.get(key) or self._group(key)
            if g is not None and g.nf > 0:
                k0 = g.k if g.k is not None else int(b.k[idx[0]])
                if np.any(b.f[idx] != g.nf) or np.any(b.k[idx] != k0):
                    return False  # the line-by-line path counts these lines' faults
            plan.append((key, g, idx))
        # from here on the piece counts
        inside_count = int(np.count_nonzero(inside))
        self.lines += total
        self.outside_window += total - inside_count
        for key, g, idx in plan:
            m = int(idx.size)
            if not m:
                continue
            if g is None:
                if self.model is not None and key[0] != self.model:
                    self.other_models += m
                else:
                    self.bad["unknown_version"] += m
                    self.unknown[key] = self.unknown.get(key, 0) + m
                continue
            g.lines += m
            if not g.nf:  # the version's schema is unknown (ctx.problem says why): count only
                g.bad["not_compared"] += m
                continue
            if g.nf < 0:  # a tensor version: a v1 line never fits it
                g.bad["wrong_signature"] += m
                continue
            if g.k is None:
                g.k = int(b.k[idx[0]])
            ts = b.ts[idx]
            g.first_ts = min(g.first_ts, float(ts.min()))
            g.last_ts = max(g.last_ts, float(ts.max()))
            ids = self._label_ids.get(key[0]) if self._label_ids else None
            if ids:
                for i, n in zip(idx.tolist(), b.n[idx].tolist(), strict=True):
                    base, offset = split_request_id(b.request_id(i))
                    if base in ids:
                        g.labelled_lines.append((base, g.block_rows, n, offset))
                    g.block_rows += n
            if m == total:
                xb, yb = b"".join(b.x), b"".join(b.y)
            else:
                pick = idx.tolist()
                xb, yb = b"".join([b.x[i] for i in pick]), b"".join([b.y[i] for i in pick])
            g.xb.append(xb)
            g.yb.append(yb)
            self._pending += len(xb)
        return True

    def feed_lines(self, lines: Iterable[bytes]) -> None:
        """Decode lines one by one, then fold what is due into the partials."""
        self._feed_each(lines)
        self._fold_if_full()

    def _feed_each(self, lines: Iterable[bytes]) -> None:
        """Lines one by one: what each bad line is counted under is decided here."""
        header, arrays, format_error = read_header, read_arrays, CaptureFormatError
        bad, start, end, only = self.bad, self.start, self.end, self.model
        groups, label_ids = self._groups, self._label_ids
        last_model, last_version, g = None, None, None  # most lines belong to the previous line's group
        n_lines = 0
        for line in lines:
            if not line or line.isspace():
                continue
            n_lines += 1
            try:
                model, version, rid, ts, n, f, k, xs, ys = header(line)
            except format_error as exc:
                if isinstance(exc, TensorLine):
                    self._feed_tensor(exc.doc)
                else:
                    bad[exc.reason] += 1
                continue
            if not start <= ts < end:
                self.outside_window += 1
                continue
            if only is not None and model != only:
                self.other_models += 1
                continue
            if g is None or version != last_version or model != last_model:
                key = (model, version)
                g = groups.get(key) or self._group(key)
                if g is None:
                    bad["unknown_version"] += 1
                    self.unknown[key] = self.unknown.get(key, 0) + 1
                    continue
                last_model, last_version = model, version
            g.lines += 1
            if not g.nf:  # the version's schema is unknown (ctx.problem says why): count only
                g.bad["not_compared"] += 1
                continue
            if f != g.nf:  # a tensor version's nf is -1: a v1 line never fits it
                g.bad["wrong_signature" if g.nf < 0 else "wrong_feature_count"] += 1
                continue
            try:
                xb, yb = arrays(xs, ys, n, f, k)
            except format_error as exc:
                g.bad[exc.reason] += 1
                continue
            if g.k is None:
                g.k = k
            elif k != g.k:
                g.bad["wrong_output_count"] += 1
                continue
            if ts < g.first_ts:
                g.first_ts = ts
            if ts > g.last_ts:
                g.last_ts = ts
            if label_ids and model in label_ids:
                # A request over Firehose's record limit was captured as several lines whose id is
                # "{request_id}#{first row}" (capture_sink.encode_lines): labels name the request's rows.
                base, offset = split_request_id(rid)
                if base in label_ids[model]:
                    g.labelled_lines.append((base, g.block_rows, n, offset))
                g.block_rows += n  # only the join reads it
            g.xb.append(xb)
            g.yb.append(yb)
            self._pending += len(xb)
        self.lines += n_lines

    def _fold_if_full(self) -> None:
        self._fold(everything=self._pending >= FOLD_BYTES)

    def _feed_tensor(self, doc: dict[str, Any]) -> None:
        """One format-2 line (see the module docstring); its arrays wait in the group's block."""
        try:
            rec = tensor_record_from_doc(doc)
        except CaptureFormatError as exc:
            self.bad[exc.reason] += 1
            return
        if not self.start <= rec.ts < self.end:
            self.outside_window += 1
            return
        if self.model is not None and rec.model != self.model:
            self.other_models += 1
            return
        key = (rec.model, rec.version)
        g = self._groups.get(key) or self._group(key)
        if g is None:
            self.bad["unknown_version"] += 1
            self.unknown[key] = self.unknown.get(key, 0) + 1
            return
        g.lines += 1
        if not g.nf or (g.ctx.tensor is None and g.ctx.problem is not None):
            g.bad["not_compared"] += 1  # no usable baseline (ctx.problem says why): count only
            return
        if g.ctx.tensor is None or not g.ctx.tensor.matches(rec.inputs, rec.outputs):
            g.bad["wrong_signature"] += 1
            return
        g.first_ts = min(g.first_ts, rec.ts)
        g.last_ts = max(g.last_ts, rec.ts)
        ids = self._label_ids.get(rec.model) if self._label_ids else None
        if ids:  # the labels name rows of the request (see _feed_each); joined to the first output
            base, offset = split_request_id(rec.request_id)
            if base in ids:
                g.labelled_lines.append((base, g.block_rows, rec.n, offset))
            g.block_rows += rec.n
        g.tensors.append((rec.inputs, rec.outputs))

    def _group(self, key: tuple[str, int]) -> GroupState | None:
        if key in self.unknown:
            return None
        ctx = self.resolve(*key)
        if ctx is None:
            return None
        g = self._groups[key] = GroupState(ctx)
        return g

    def _fold(self, everything: bool = False) -> None:
        """Fold the groups' tensor lines, and with ``everything`` their decoded rows, into their
        partials."""
        if everything:
            self._pending = 0
        for g in self._groups.values():
            if g.tensors:
                first = _fold_tensors(g)
                g.block_rows = 0
                if g.labelled_lines:
                    self._join_labels(g, None, first)
            if not g.xb or not everything:
                continue
            x = np.frombuffer(b"".join(g.xb), dtype="<f4").reshape(-1, g.nf)
            y = np.frombuffer(b"".join(g.yb), dtype="<f4").reshape(-1, g.k or 1)
            g.xb, g.yb = [], []
            g.rows += x.shape[0]
            g.block_rows = 0
            if (
                g.parts is not None
                and g.pred is not None
                and g.ctx.refs is not None
                and g.ctx.pred_ref is not None
            ):
                columns = np.ascontiguousarray(x.T)  # one copy, not one per feature
                for j, ref in enumerate(g.ctx.refs):
                    g.parts[j].merge(drift.partial(ref, columns[j]))
                g.pred.merge(drift.partial(g.ctx.pred_ref, drift.prediction_column(y, g.ctx.task)))
            if g.labelled_lines:
                self._join_labels(g, x, y)

    def _join_labels(self, g: GroupState, x: np.ndarray | None, y: np.ndarray) -> None:
        """The labelled rows of the block: their outputs (``y``) and labels, and their features
        (``x``; None for a tensor model, whose inputs are not a table: no retrain dataset)."""
        labels = self.labels.get(g.ctx.model, {})
        rows: list[int] = []
        for rid, first, n, offset in g.labelled_lines:
            for i in range(n):
                lab = labels.get((rid, offset + i))
                if lab is not None:
                    rows.append(first + i)
                    g.label_v.append(lab)
        g.labelled_lines = []
        if rows:
            idx = np.asarray(rows)
            if x is not None:
                g.label_x.append(x[idx].copy())
            g.label_y.append(y[idx].copy())

    # ------------------------------------------------------------------ output
    def summary(self) -> dict[str, Any]:
        bad = Counter(self.bad)
        for g in self._groups.values():
            bad.update(g.bad)
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "lines": self.lines,
            "bad_lines": int(sum(bad.values())),
            "bad": {r: int(bad[r]) for r in BAD_REASONS if bad[r]},
            "outside_window": self.outside_window,
            "other_models": self.other_models,
            "unknown_versions": [
                {"model": m[:60], "version": v, "lines": c} for (m, v), c in sorted(self.unknown.items())
            ],
        }


def _fold_tensors(g: GroupState) -> np.ndarray:
    """A tensor group's block into its channels' and outputs' partials (``drift.judge_tensors``);
    returns the block's first output, a row each (rows x its values, float32: what labels are judged
    against, as a tabular model's outputs are)."""
    lines, g.tensors = g.tensors, []
    layout, refs = g.ctx.tensor, g.ctx.refs
    g.rows += sum(next(iter(ins.values())).shape[0] for ins, _ in lines)
    first = np.zeros((0, 1), np.float32)
    if layout is not None:
        name = layout.outputs[0][0]
        first = np.concatenate([outs[name] for _, outs in lines]).astype(np.float32, copy=False)
        first = first.reshape(first.shape[0], -1)
    if layout is None or refs is None or g.parts is None or g.pred is None or g.ctx.pred_ref is None:
        return first
    j = 0
    for name, _, _, _ in layout.inputs:
        x = np.concatenate([ins[name] for ins, _ in lines])
        for values in channel_values(x):
            g.parts[j].merge(drift.partial(refs[j], values))
            j += 1
    for i, (name, _, _, reduce) in enumerate(layout.outputs):
        y = output_column(np.concatenate([outs[name] for _, outs in lines]), reduce)
        g.parts[j + i].merge(drift.partial(layout.out_refs[i], y))
        if i == 0:
            g.pred.merge(drift.partial(g.ctx.pred_ref, y))
    return first


def evaluate(g: GroupState, min_samples: int) -> dict[str, Any]:
    """The verdict and numbers of one (model, version) group (:func:`modelops.domain.drift.judge`),
    with its counts and the quality of its labelled rows."""
    ctx = g.ctx
    y = np.concatenate(g.label_y) if g.label_y else np.zeros((0, 1), np.float32)
    return {
        "model": ctx.model,
        "version": ctx.version,
        "samples": g.rows,
        "lines": g.lines,
        "bad": dict(g.bad),
        "psi_threshold": ctx.psi_threshold,
        **({"settings": ctx.settings} if ctx.settings else {}),
        "first_ts": g.first_ts if math.isfinite(g.first_ts) else None,
        "last_ts": g.last_ts if math.isfinite(g.last_ts) else None,
        "quality": drift.labelled_quality(ctx, y, g.label_v),
        **(drift.judge_tensors if ctx.tensor is not None else drift.judge)(
            ctx, g.parts, g.pred, g.rows, min_samples
        ),
    }
