"""Capture to Firehose (modelops.storage.capture_sink): sampling, batching, FailedPutCount, failures counted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelops.domain.capture import decode_line, iter_lines
from modelops.storage.capture_sink import MAX_BATCH_RECORDS, MAX_RECORD_BYTES, CaptureSink, encode_lines


class FakeFirehose:
    """PutRecordBatch in memory; ``fail`` says which record indexes of each call fail (ErrorCode)."""

    def __init__(self, fail: list[set[int]] | None = None, raises: bool = False):
        self.calls: list[list[bytes]] = []
        self.delivered: list[bytes] = []
        self.fail = fail or []
        self.raises = raises

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        assert DeliveryStreamName == "captures"
        assert len(Records) <= MAX_BATCH_RECORDS
        data = [r["Data"] for r in Records]
        self.calls.append(data)
        if self.raises:
            raise ConnectionError("firehose unreachable")
        failing = self.fail.pop(0) if self.fail else set()
        responses = []
        for i, d in enumerate(data):
            if i in failing:
                responses.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"})
            else:
                self.delivered.append(d)
                responses.append({"RecordId": str(i)})
        return {"FailedPutCount": len(failing), "RequestResponses": responses}


X = np.arange(6, dtype=np.float32).reshape(2, 3)
Y = np.array([[0.25], [0.75]], dtype=np.float32)


def sink_for(fh: FakeFirehose, **kw: Any) -> CaptureSink:
    return CaptureSink(lambda: fh, "captures", linger_seconds=0.0, **kw)


def delivered_lines(fh: FakeFirehose) -> list[bytes]:
    """The lines of every delivered record (a record packs consecutive lines)."""
    return [line for data in fh.delivered for line in iter_lines(data)]


def test_one_record_per_invocation_round_trips() -> None:
    fh = FakeFirehose()
    sink = sink_for(fh)
    for i in range(3):
        assert sink.submit("demo", 4, f"req-{i}", X, Y, 1.0)
    assert sink.flush(5)
    recs = [decode_line(line) for line in delivered_lines(fh)]
    assert [r.request_id for r in recs] == ["req-0", "req-1", "req-2"]
    np.testing.assert_array_equal(recs[0].x, X)
    np.testing.assert_array_equal(recs[0].y, Y)
    assert (recs[0].model, recs[0].version) == ("demo", 4)
    assert sink.sent == 3 and sink.take_failures() == 0
    sink.close()


def test_sampling_uses_the_rate() -> None:
    fh = FakeFirehose()
    draws = iter([0.1, 0.6, 0.29, 0.3])
    sink = CaptureSink(lambda: fh, "captures", rng=lambda: next(draws), linger_seconds=0.0)
    assert [sink.submit("demo", 1, f"r{i}", X, Y, 0.3) for i in range(4)] == [True, False, True, False]
    assert not sink.submit("demo", 1, "never", X, Y, 0.0)
    assert sink.flush(5)
    assert [decode_line(d).request_id for d in delivered_lines(fh)] == ["r0", "r2"]
    sink.close()


def test_failed_put_count_is_retried_once_then_counted() -> None:
    # first call: records 0 and 2 fail; the retry of those two: the first fails again
    fh = FakeFirehose(fail=[{0, 2}, {0}])
    sink = sink_for(fh, record_bytes=1)  # one line per record: per-record failures to retry
    sink._start = lambda: None  # type: ignore[method-assign]  # queue all three first, send as one batch
    for i in range(3):
        sink.submit("demo", 1, f"r{i}", X, Y, 1.0)
    sink._thread = None
    CaptureSink._start(sink)
    assert sink.flush(5)
    assert [len(c) for c in fh.calls] == [3, 2]
    assert sorted(decode_line(d).request_id for d in fh.delivered) == ["r1", "r2"]
    assert sink.take_failures() == 1
    assert sink.take_failures() == 0  # taken once
    sink.close()


def test_an_unreachable_stream_counts_failures_and_never_raises() -> None:
    fh = FakeFirehose(raises=True)
    sink = sink_for(fh)
    assert sink.submit("demo", 1, "r", X, Y, 1.0)
    assert sink.flush(5)
    assert sink.take_failures() == 1


def test_a_full_queue_drops_and_counts() -> None:
    fh = FakeFirehose()
    held = X.nbytes + Y.nbytes  # the queue holds each invocation's arrays until the sender encodes them
    sink = sink_for(fh, max_queue_bytes=held * 2, clock=lambda: 0.0)
    sink._start = lambda: None  # type: ignore[method-assign]  # nothing drains the queue
    results = [sink.submit("demo", 1, "r", X, Y, 1.0) for _ in range(3)]
    assert results == [True, True, False]
    assert sink.take_failures() == 1


def test_large_batches_are_split_under_the_firehose_record_limit() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((10_000, 30), dtype=np.float32)
    y = rng.random((10_000, 1), dtype=np.float32)
    lines = encode_lines("demo", 2, "req", 1.0, x, y)
    assert len(lines) > 1
    assert all(len(line) <= MAX_RECORD_BYTES for line in lines)
    recs = [decode_line(line) for line in lines]
    starts = [int(r.request_id.split("#")[1]) for r in recs]
    assert starts[0] == 0 and all(r.request_id.startswith("req#") for r in recs)
    np.testing.assert_array_equal(np.concatenate([r.x for r in recs]), x)
    np.testing.assert_array_equal(np.concatenate([r.y for r in recs]), y)
    for start, rec in zip(starts, recs, strict=True):
        np.testing.assert_array_equal(rec.x[0], x[start])


@pytest.mark.parametrize("rows", [1, 5000])
def test_small_batches_stay_one_line(rows: int) -> None:
    x = np.zeros((rows, 4), dtype=np.float32)
    assert len(encode_lines("demo", 1, "req", 1.0, x, np.zeros((rows, 1), dtype=np.float32))) == 1


def test_many_records_are_sent_in_batches_of_at_most_500() -> None:
    fh = FakeFirehose()
    sink = sink_for(fh, record_bytes=1)
    sink._start = lambda: None  # type: ignore[method-assign]
    for i in range(1200):
        sink.submit("demo", 1, f"r{i}", X, Y, 1.0)
    sink._thread = None
    CaptureSink._start(sink)
    assert sink.flush(10)
    assert sum(len(c) for c in fh.calls) == 1200 and max(len(c) for c in fh.calls) <= 500
    sink.close()


def test_small_lines_are_packed_into_records_of_at_most_1000_kib() -> None:
    # Given 5,000 small invocations queued together (Firehose bills each record as at least 5 KB)
    fh = FakeFirehose()
    sink = sink_for(fh)
    sink._start = lambda: None  # type: ignore[method-assign]
    for i in range(5000):
        sink.submit("demo", 1, f"r{i}", X, Y, 1.0)
    sink._thread = None
    CaptureSink._start(sink)
    assert sink.flush(10)
    # Then they travel in a few records, none over the limit, each a whole number of lines, in order
    records = [d for call in fh.calls for d in call]
    assert len(records) < 5000 // 100 and all(len(d) <= MAX_RECORD_BYTES for d in records)
    assert all(d.endswith(b"\n") for d in records)
    assert [decode_line(line).request_id for line in delivered_lines(fh)] == [f"r{i}" for i in range(5000)]
    assert sink.sent == 5000 and sink.take_failures() == 0
    sink.close()


def test_a_lost_packed_record_counts_every_line_it_held() -> None:
    fh = FakeFirehose(fail=[{0}, {0}])  # the only record fails, and again on the retry
    sink = sink_for(fh)
    sink._start = lambda: None  # type: ignore[method-assign]
    for i in range(3):
        sink.submit("demo", 1, f"r{i}", X, Y, 1.0)
    sink._thread = None
    CaptureSink._start(sink)
    assert sink.flush(5)
    assert [len(c) for c in fh.calls] == [1, 1] and fh.delivered == []
    assert sink.take_failures() == 3
    sink.close()
