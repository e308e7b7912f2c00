"""Sampled capture of predict traffic to the CaptureStream Firehose (docs/contracts.md "Captures").

One record per sampled invocation (``modelops.domain.capture.encode_record``). The request path
samples and appends the invocation to an in-memory queue (a small one as its arrays, encoded later:
``ENCODE_LATER_MAX_BYTES``); a background thread sends the queue with ``PutRecordBatch`` (up to
500 records / 4 MiB per call), so a slow or failing Firehose never delays or fails an answer.
Records that cannot be sent (one that cannot be encoded, a call that raises, entries reported in
``FailedPutCount`` after one retry, a full queue) are counted; the API publishes the count as the
``CaptureFailures`` metric (``take_failures``).

Lines are packed: consecutive lines (each ends with a newline) share one Firehose record up to
1,000 KiB, because Firehose bills ingestion per record rounded up to 5 KB, and a 300-byte line sent
alone would be billed as 5 KB (about 17 times its size; docs/scale.md). The object Firehose writes is
the same concatenation of lines either way. Sent and lost counts are in lines.

A line larger than Firehose's 1,000 KiB limit (a batch of thousands of rows) is split by rows into
several lines whose ``request_id`` is ``{request_id}#{first row}``; row ``r`` of such a line is row
``first row + r`` of the request.

A tensor model's invocation (``submit_tensors``) is queued as its arrays, whatever their size, and
encoded by the sender as format-2 line(s) (``encode_tensor_record``; split by rows as above).

On Lambda the thread only runs while the container is thawed: a record queued by the last request
before the container is frozen is sent during the next invocation (or lost with the container).
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from modelops.domain.capture import encode_record, encode_tensor_record

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1_000 * 1024  # Firehose: 1,000 KiB per record
MAX_BATCH_RECORDS = 500  # Firehose: 500 records per PutRecordBatch
MAX_BATCH_BYTES = 4 * 1024 * 1024  # Firehose: 4 MiB per PutRecordBatch
_RECORD_OVERHEAD = 400  # the JSON around the base64 arrays, generously
_yield: Callable[[], Any] = getattr(os, "sched_yield", lambda: time.sleep(0))


def encode_lines(
    model: str, version: int, request_id: str, ts: float, x: np.ndarray, y: np.ndarray
) -> list[bytes]:
    """Capture line(s) for one invocation: one line, or several when one would exceed a Firehose record."""
    n = int(x.shape[0])
    y = y.reshape(n, -1)
    per_row = (int(x.shape[1]) + int(y.shape[1])) * 4 * 4 // 3 + 8
    if n * per_row + _RECORD_OVERHEAD + len(model) + len(request_id) <= MAX_RECORD_BYTES:
        return [encode_record(model, version, request_id, ts, x, y)]
    rows = max(1, (MAX_RECORD_BYTES - _RECORD_OVERHEAD - len(model) - len(request_id) - 16) // per_row)
    return [
        encode_record(
            model, version, f"{request_id}#{start}", ts, x[start : start + rows], y[start : start + rows]
        )
        for start in range(0, n, rows)
    ]


def encode_tensor_lines(
    model: str,
    version: int,
    request_id: str,
    ts: float,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
) -> list[bytes]:
    """Format-2 line(s) for one tensor invocation: one line, or several (``{request_id}#{first row}``)
    when one would exceed a Firehose record."""
    arrays = [*inputs.values(), *outputs.values()]
    n = int(arrays[0].shape[0])
    per_row = sum(a.nbytes for a in arrays) // max(n, 1) * 4 // 3 + 8
    overhead = _RECORD_OVERHEAD + len(model) + len(request_id) + 200 * len(arrays)
    if n * per_row + overhead <= MAX_RECORD_BYTES:
        return [encode_tensor_record(model, version, request_id, ts, inputs, outputs)]
    rows = max(1, (MAX_RECORD_BYTES - overhead - 16) // per_row)
    return [
        encode_tensor_record(
            model,
            version,
            f"{request_id}#{start}",
            ts,
            {k: v[start : start + rows] for k, v in inputs.items()},
            {k: v[start : start + rows] for k, v in outputs.items()},
        )
        for start in range(0, n, rows)
    ]


ENCODE_LATER_MAX_BYTES = 4096
"""An invocation with at most this many bytes of inputs and outputs (~50 rows of 20 features) is
queued as its arrays and encoded by the sender: encoding costs more than everything else its answer
needs (~6 µs of a ~15 µs single-row answer). The sender yields the GIL after each such encoding, so
a request waiting for it is not held up for Python's 5 ms switch interval. A larger invocation is
encoded on the request path, where it costs a small share of its inference."""


class _Pending(NamedTuple):
    """A small sampled invocation in the queue, as it was answered (``encode_lines``' arguments)."""

    model: str
    version: int
    request_id: str
    ts: float
    x: np.ndarray
    y: np.ndarray


class _PendingTensors(NamedTuple):
    """A sampled tensor invocation in the queue (``encode_tensor_lines``' arguments)."""

    model: str
    version: int
    request_id: str
    ts: float
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


_Item = _Pending | _PendingTensors | list[bytes]


class CaptureSink:
    """Queues sampled invocations and encodes and sends them to Firehose from a background thread.

    ``firehose_factory`` builds the Firehose client, once, on the first captured request's thread.
    ``log`` is where failures are logged (the stage passes its Powertools logger; a stdlib logger
    otherwise).
    """

    def __init__(
        self,
        firehose_factory: Callable[[], Any],
        stream: str,
        *,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        max_queue_bytes: int = 64 * 1024 * 1024,
        linger_seconds: float = 0.05,
        record_bytes: int = MAX_RECORD_BYTES,
        log: logging.Logger | Any = log,
    ):
        self.log = log
        self.record_bytes = min(record_bytes, MAX_RECORD_BYTES)
        """Lines are packed into Firehose records up to this size (a record holds at least one line)."""
        self._factory = firehose_factory
        self._client: Any = None
        self.stream = stream
        self.rng = rng
        self.clock = clock
        self.max_queue_bytes = max_queue_bytes
        self.linger = linger_seconds
        self._queue: deque[tuple[_Item, int]] = deque()  # (invocation, bytes held)
        self._queued_bytes = 0
        self._in_flight = 0
        self._failures = 0
        self._sent = 0
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ request path
    def submit(
        self, model: str, version: int, request_id: str, x: np.ndarray, y: np.ndarray, sample_rate: float
    ) -> bool:
        """Sample and queue one invocation's capture; True when it was queued. Never raises.

        A small invocation's ``x`` and ``y`` are queued as they are (``ENCODE_LATER_MAX_BYTES``): the
        caller must not change them afterwards.
        """
        if sample_rate <= 0.0 or (sample_rate < 1.0 and self.rng() >= sample_rate):
            return False
        item: _Item
        try:
            size = x.nbytes + y.nbytes
            if size <= ENCODE_LATER_MAX_BYTES:
                item, records = _Pending(model, version, request_id, self.clock(), x, y), 1
            else:
                item = encode_lines(model, version, request_id, self.clock(), x, y)
                size, records = sum(len(line) for line in item), len(item)
        except Exception:  # a capture must never fail an answer
            self.log.exception("could not encode a capture record")
            with self._cv:
                self._failures += 1
            return False
        return self._enqueue(item, size, records)

    def submit_tensors(
        self,
        model: str,
        version: int,
        request_id: str,
        inputs: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        sample_rate: float,
    ) -> bool:
        """Sample and queue one tensor invocation's capture (its arrays, by name, rows first); True when
        it was queued. Never raises. Encoded by the sender thread (format 2): the caller must not change
        the arrays afterwards."""
        if sample_rate <= 0.0 or (sample_rate < 1.0 and self.rng() >= sample_rate):
            return False
        try:
            size = sum(int(a.nbytes) for a in (*inputs.values(), *outputs.values()))
            item = _PendingTensors(model, version, request_id, self.clock(), dict(inputs), dict(outputs))
        except Exception:  # a capture must never fail an answer
            self.log.exception("could not queue a tensor capture record")
            with self._cv:
                self._failures += 1
            return False
        return self._enqueue(item, size, 1)

    def _enqueue(self, item: _Item, size: int, records: int) -> bool:
        if self._client is None:
            # Built once, on the first captured request's thread: it resolves the invocation's
            # credentials, region and endpoint (the sender thread may see a different environment,
            # as on the local twin, where each invocation has its own).
            try:
                self._client = self._factory()
            except Exception:
                self.log.exception("could not build the Firehose client")
                with self._cv:
                    self._failures += records
                return False
        with self._cv:
            if self._closed or self._queued_bytes + size > self.max_queue_bytes:
                self._failures += records
                return False
            self._queue.append((item, size))
            self._queued_bytes += size
            if self._thread is None:
                self._start()
            self._cv.notify()
        return True

    def take_failures(self) -> int:
        """Records lost since the last call (and reset the count)."""
        if not self._failures:  # read without the lock: a count being added is taken next time
            return 0
        with self._cv:
            n, self._failures = self._failures, 0
            return n

    @property
    def sent(self) -> int:
        return self._sent

    # ------------------------------------------------------------------ control
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far has been sent (or failed). False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._cv.notify_all()
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture-sink", daemon=True)
        self._thread.start()
        atexit.register(self.flush, 2.0)

    # ------------------------------------------------------------------ sender thread
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue and self._closed:
                    return
            if self.linger > 0:
                time.sleep(self.linger)  # let a burst of requests share one call
            taken = self._take()
            try:
                for batch in self._batches(taken):
                    self._send(batch)
            finally:
                with self._cv:
                    self._in_flight = 0
                    self._cv.notify_all()

    def _take(self) -> list[_Item]:
        """Up to ``MAX_BATCH_RECORDS`` queued invocations (they stay in flight until sent)."""
        taken: list[_Item] = []
        with self._cv:
            while self._queue and len(taken) < MAX_BATCH_RECORDS:
                item, size = self._queue.popleft()
                taken.append(item)
                self._queued_bytes -= size
            self._in_flight = len(taken)
        return taken

    def _batches(self, taken: list[_Item]) -> Iterator[list[tuple[bytes, int]]]:
        """The taken invocations' lines packed into records (``(data, lines)``: consecutive lines up to
        ``record_bytes``), in PutRecordBatch-sized batches."""
        batch: list[tuple[bytes, int]] = []
        size = 0
        record: list[bytes] = []
        record_size = 0

        def seal() -> Iterator[list[tuple[bytes, int]]]:
            nonlocal batch, size, record, record_size
            data = b"".join(record)
            if batch and (len(batch) >= MAX_BATCH_RECORDS or size + len(data) > MAX_BATCH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append((data, len(record)))
            size += len(data)
            record, record_size = [], 0

        for item in taken:
            if isinstance(item, list):
                lines = item
            else:
                try:
                    if isinstance(item, _PendingTensors):
                        lines = encode_tensor_lines(*item)
                    else:
                        lines = encode_lines(*item)
                    _yield()  # a request waiting for the GIL takes it now, not after the 5 ms switch interval
                except Exception:
                    self.log.exception("could not encode a capture record")
                    self._count(failed=1, sent=0)
                    continue
            for line in lines:
                if record and record_size + len(line) > self.record_bytes:
                    yield from seal()
                record.append(line)
                record_size += len(line)
        if record:
            yield from seal()
        if batch:
            yield batch

    def _send(self, batch: list[tuple[bytes, int]]) -> None:
        pending = batch
        for attempt in range(2):
            lines = sum(n for _, n in pending)
            try:
                resp = self._client.put_record_batch(
                    DeliveryStreamName=self.stream, Records=[{"Data": data} for data, _ in pending]
                )
            except Exception as exc:  # network, throttling after botocore's retries, bad stream
                self.log.warning(
                    "capture: PutRecordBatch failed (%s); %d lines lost", type(exc).__name__, lines
                )
                self._count(failed=lines, sent=0)
                return
            failed = int(resp.get("FailedPutCount") or 0)
            if not failed:
                self._count(failed=0, sent=lines)
                return
            results = resp.get("RequestResponses") or []
            if len(results) == len(pending):
                retry = [rec for rec, r in zip(pending, results, strict=True) if r.get("ErrorCode")]
            else:  # a response we cannot map back to records: retry them all
                retry = pending
            retried = sum(n for _, n in retry)
            self._count(failed=0, sent=lines - retried)
            if attempt == 0:
                pending = retry
                continue
            self.log.warning("capture: %d lines failed after a retry", retried)
            self._count(failed=retried, sent=0)

    def _count(self, *, failed: int, sent: int) -> None:
        with self._cv:
            self._failures += failed
            self._sent += sent
