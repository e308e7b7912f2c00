"""Sampled capture of predict traffic to the CaptureStream Firehose (docs/contracts.md "Captures").

One record per sampled invocation (``modelops.domain.capture.encode_record``). The request path only
encodes the record and appends it to an in-memory queue; a background thread sends the queue with
``PutRecordBatch`` (up to 500 records / 4 MiB per call), so a slow or failing Firehose never delays
or fails an answer. Records that cannot be sent (a call that raises, entries reported in
``FailedPutCount`` after one retry, a full queue) are counted; the API publishes the count as the
``CaptureFailures`` metric (``take_failures``).

A record larger than Firehose's 1,000 KiB limit (a batch of thousands of rows) is split by rows into
several lines whose ``request_id`` is ``{request_id}#{first row}``; row ``r`` of such a line is row
``first row + r`` of the request.

On Lambda the thread only runs while the container is thawed: a record queued by the last request
before the container is frozen is sent during the next invocation (or lost with the container).
"""

from __future__ import annotations

import atexit
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from modelops.domain.capture import encode_record

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1_000 * 1024  # Firehose: 1,000 KiB per record
MAX_BATCH_RECORDS = 500  # Firehose: 500 records per PutRecordBatch
MAX_BATCH_BYTES = 4 * 1024 * 1024  # Firehose: 4 MiB per PutRecordBatch
_RECORD_OVERHEAD = 400  # the JSON around the base64 arrays, generously


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


class CaptureSink:
    """Queues capture lines and sends them to Firehose from a background thread.

    ``firehose_factory`` builds the Firehose client, once, on the first captured request's thread.
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
    ):
        self._factory = firehose_factory
        self._client: Any = None
        self.stream = stream
        self.rng = rng
        self.clock = clock
        self.max_queue_bytes = max_queue_bytes
        self.linger = linger_seconds
        self._queue: deque[bytes] = deque()
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
        """Sample and queue one invocation's capture; True when it was queued. Never raises."""
        if sample_rate <= 0.0 or (sample_rate < 1.0 and self.rng() >= sample_rate):
            return False
        try:
            lines = encode_lines(model, version, request_id, self.clock(), x, y)
        except Exception:  # a capture must never fail an answer
            log.exception("could not encode a capture record")
            with self._cv:
                self._failures += 1
            return False
        size = sum(len(line) for line in lines)
        if self._client is None:
            # Built once, on the first captured request's thread: it resolves the invocation's
            # credentials, region and endpoint (the sender thread may see a different environment,
            # as on the local twin, where each invocation has its own).
            try:
                self._client = self._factory()
            except Exception:
                log.exception("could not build the Firehose client")
                with self._cv:
                    self._failures += len(lines)
                return False
        with self._cv:
            if self._closed or self._queued_bytes + size > self.max_queue_bytes:
                self._failures += len(lines)
                return False
            self._queue.extend(lines)
            self._queued_bytes += size
            if self._thread is None:
                self._start()
            self._cv.notify()
        return True

    def take_failures(self) -> int:
        """Records lost since the last call (and reset the count)."""
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
            batch = self._take_batch()
            try:
                self._send(batch)
            finally:
                with self._cv:
                    self._in_flight = 0
                    self._cv.notify_all()

    def _take_batch(self) -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        with self._cv:
            while self._queue and len(batch) < MAX_BATCH_RECORDS:
                nxt = len(self._queue[0])
                if batch and size + nxt > MAX_BATCH_BYTES:
                    break
                line = self._queue.popleft()
                batch.append(line)
                size += nxt
            self._queued_bytes -= size
            self._in_flight = len(batch)
        return batch

    def _send(self, batch: list[bytes]) -> None:
        pending = batch
        for attempt in range(2):
            try:
                resp = self._client.put_record_batch(
                    DeliveryStreamName=self.stream, Records=[{"Data": line} for line in pending]
                )
            except Exception as exc:  # network, throttling after botocore's retries, bad stream
                log.warning(
                    "capture: PutRecordBatch failed (%s); %d records lost", type(exc).__name__, len(pending)
                )
                self._count(failed=len(pending), sent=0)
                return
            failed = int(resp.get("FailedPutCount") or 0)
            if not failed:
                self._count(failed=0, sent=len(pending))
                return
            results = resp.get("RequestResponses") or []
            if len(results) == len(pending):
                retry = [line for line, r in zip(pending, results, strict=True) if r.get("ErrorCode")]
            else:  # a response we cannot map back to records: retry them all
                retry = pending
            self._count(failed=0, sent=len(pending) - len(retry))
            if attempt == 0:
                pending = retry
                continue
            log.warning("capture: %d records failed after a retry", len(retry))
            self._count(failed=len(retry), sent=0)

    def _count(self, *, failed: int, sent: int) -> None:
        with self._cv:
            self._failures += failed
            self._sent += sent
