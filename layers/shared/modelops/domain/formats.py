"""The file formats a dataset may arrive in, read as a stream of rows of text cells.

- ``.csv``: RFC 4180 CSV in the spec's dialect (``csv``: delimiter, decimal mark, text encoding);
- ``.csv.gz``: the same, gzip-compressed: decompressed on the fly through ``zlib`` with a bound on the
  decompressed bytes (a gzip bomb stops at the limit, never in memory); several gzip members are read
  one after the other (``cat a.gz b.gz``), a stream that ends before its trailer is ``bad_gzip``;
- ``.parquet``: read one record batch at a time with pyarrow (imported only here and only for Parquet;
  the trainer never needs it: the platform hands every job plain CSV). Flat columns only: a list, struct
  or map column is ``unsupported_column``; a null is a missing cell.

Every reader yields the header first, then each row with the number of its line (CSV: the physical line
where the row starts; Parquet: the row's position counting the header as line 1). The SHA-256 of a
dataset is over the object's stored bytes (what S3 holds), computed by the caller while streaming.

Kept Python 3.10 compatible (the AWS TensorFlow training image runs 3.10).
"""

from __future__ import annotations

import codecs
import csv
import math
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")
"""Dataset keys end in one of these (``datasets/{model}/NAME.csv``, ``.csv.gz``, ``.parquet``)."""
PARQUET_BATCH_ROWS = 16_384
"""Rows per Parquet record batch read (memory: one batch of cells at a time)."""
_GZIP_PIECE = 1024 * 1024
"""The most decompressed bytes one ``zlib`` call may produce (the bomb check runs between calls)."""


class FormatError(ValueError):
    """The bytes cannot be read in the format their name says; ``code`` is the validator's code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Dialect:
    """How a CSV is written: the spec's ``csv`` (defaults: ``,``, ``.``, UTF-8)."""

    delimiter: str = ","
    decimal: str = "."
    encoding: str = "utf-8"

    @classmethod
    def of(cls, csv_spec: Any) -> Dialect:
        """The dialect of a spec's ``csv`` (None: the default one)."""
        if csv_spec is None:
            return cls()
        return cls(csv_spec.delimiter, csv_spec.decimal, csv_spec.encoding)

    @property
    def plain(self) -> bool:
        return self == Dialect()


PLAIN = Dialect()


def format_of(key: str) -> str | None:
    """``csv``, ``csv.gz`` or ``parquet`` for a key ending in a dataset suffix, else None."""
    lower = key.lower()
    if lower.endswith(".csv.gz"):
        return "csv.gz"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".parquet"):
        return "parquet"
    return None


# ---------------------------------------------------------------------------- gzip
def gunzip(chunks: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream given as chunks, never more than ``max_bytes`` in all
    (``too_large``, naming the ratio when it looks like a bomb), ``bad_gzip`` for a damaged or
    truncated stream. Memory: one compressed chunk and one decompressed piece at a time."""
    d = zlib.decompressobj(wbits=31)
    total = stored = 0
    started = False
    for chunk in chunks:
        data = chunk
        stored += len(chunk)
        while data:
            started = True
            try:
                out = d.decompress(data, _GZIP_PIECE)
            except zlib.error as exc:
                raise FormatError("bad_gzip", f"not a valid gzip stream: {exc}") from None
            total += len(out)
            if total > max_bytes:
                raise FormatError(
                    "too_large",
                    f"the file decompresses to more than the limit of {max_bytes} bytes "
                    f"({stored} compressed bytes read so far: a ratio over {total // max(stored, 1)}x)",
                )
            if out:
                yield out
            if d.eof:
                data = d.unused_data  # the next gzip member (or trailing garbage)
                d = zlib.decompressobj(wbits=31)
                if data and not b"\x1f\x8b".startswith(data[:2]):
                    raise FormatError("bad_gzip", "bytes after the end of the gzip stream are not gzip")
                started = bool(data)
            else:
                data = d.unconsumed_tail
    if not started and total == 0 and stored == 0:
        return
    if started and not d.eof:
        raise FormatError("bad_gzip", "the gzip stream is truncated (it ends before its trailer)")


# ---------------------------------------------------------------------------- CSV
PlainBatch = Callable[[int, str], bool]
"""``plain(first, text)``: offered a batch of plain lines (see :func:`csv_rows`); True when it took them."""


def csv_rows(
    data: Iterable[bytes],
    dialect: Dialect,
    *,
    max_line_bytes: int,
    plain: PlainBatch | None = None,
    batch_bytes: int = 0,
) -> Iterator[tuple[list[str], int]]:
    """Rows of a CSV given as byte chunks (already decompressed): lines are cut here with a bound on
    their length, decoded in ``dialect.encoding`` (a UTF-8 BOM dropped) and parsed with
    ``dialect.delimiter``. Raises ``FormatError`` (``line_too_long``, ``not_utf8``/``bad_encoding``,
    ``bad_csv``).

    ``plain`` (a UTF-8 dialect only): each chunk's lines, in batches of about ``batch_bytes`` bytes, are
    first offered to ``plain(first, text)`` when the reader stands between two rows and the batch is
    *plain*: UTF-8 text without a quote character, a NUL or a CR (but for CRLF line ends, dropped), no
    line over ``max_line_bytes`` or the ``csv`` module's field size limit. ``first`` is the number of
    the batch's first line; ``text`` holds its lines joined by ``\\n``, each line's cells being exactly
    ``line.split(dialect.delimiter)`` as the ``csv`` module reads them (an empty line: no row). When
    ``plain`` returns True it took those rows, and they are not yielded; otherwise they are read here as
    any other line. Either way, the rows and the errors (with their line numbers) are those of the
    plain reading, in the same order."""
    decode = _decoder(dialect.encoding)
    if plain is not None and (
        batch_bytes <= 0
        or codecs.lookup(dialect.encoding).name != "utf-8"
        or dialect.delimiter in '"\r\n\x00'
    ):
        plain = None
    limit = min(max_line_bytes, csv.field_size_limit())  # no plain batch is longer: nor any of its lines
    batches = _line_batches(data, max_line_bytes, min(batch_bytes, limit) if plain is not None else 0)
    queue: deque[bytes] = deque()
    line = 0  # lines handed on so far (the csv module's line_num: the line where a row ends)
    terminated = True  # whether the queue's last line ended with a newline (only the file's last may not)

    def source() -> Iterator[str]:
        """The reader's lines: the queue's, then (a row running on past them) the next batches'."""
        nonlocal line, terminated
        while True:
            if not queue:
                batch = next(batches, None)
                if batch is None:
                    return
                queue.extend(batch[0].split(b"\n"))
                terminated = batch[1]
                continue
            raw = queue.popleft()
            line += 1
            if len(raw) > max_line_bytes:
                raise FormatError("line_too_long", f"line {line} is longer than {max_line_bytes} bytes")
            yield decode(raw, line) + ("\n" if queue or terminated else "")

    reader = csv.reader(source(), delimiter=dialect.delimiter)
    try:
        for lines, ended in batches:  # source() takes the batches a row runs on into
            if plain is not None and ended:
                text = _plain_text(lines, limit, line + 1)
                if text is not None and plain(line + 1, text):
                    line += text.count("\n") + 1
                    continue
            queue.extend(lines.split(b"\n"))
            terminated = ended
            while queue:
                cells = next(reader, None)
                if cells is None:
                    break
                yield cells, line
    except csv.Error as exc:
        raise FormatError("bad_csv", f"not a valid CSV near line {line}: {exc}") from None


def _line_batches(
    data: Iterable[bytes], max_line_bytes: int, batch_bytes: int
) -> Iterator[tuple[bytes, bool]]:
    """Each chunk's complete lines, joined by ``\\n`` without the last one's (cut into batches of at most
    ``batch_bytes`` bytes, or one longer line, when it is positive), then the last line when the data
    does not end with one: ``(lines, ended)``, ``ended`` false for that last line alone. A line still
    growing past ``max_line_bytes`` is refused as soon as its chunk arrives (before that chunk's
    lines)."""
    pending = b""
    lineno = 0
    for chunk in data:
        if not chunk:
            continue
        cut = chunk.rfind(b"\n")
        if cut < 0:
            pending += chunk
            if len(pending) > max_line_bytes:
                raise FormatError("line_too_long", f"line {lineno + 1} is longer than {max_line_bytes} bytes")
            continue
        body = pending + chunk[:cut] if pending else chunk[:cut]
        pending = chunk[cut + 1 :]
        lines = body.count(b"\n") + 1
        if len(pending) > max_line_bytes:
            raise FormatError(
                "line_too_long", f"line {lineno + lines + 1} is longer than {max_line_bytes} bytes"
            )
        lineno += lines
        if batch_bytes <= 0 or len(body) <= batch_bytes:
            yield body, True
            continue
        start = 0
        while start <= len(body):
            end = body.rfind(b"\n", start, start + batch_bytes + 1)
            if start + batch_bytes >= len(body):
                end = len(body)
            elif end < 0:  # a line longer than a batch: alone
                end = body.find(b"\n", start)
                end = len(body) if end < 0 else end
            yield body[start:end], True
            start = end + 1
    if pending:
        yield pending, False


def _plain_text(lines: bytes, limit: int, first: int) -> str | None:
    """The batch's text when it is plain (see :func:`csv_rows`), else None."""
    if len(lines) > limit or b'"' in lines or b"\x00" in lines:
        return None
    if b"\r" in lines:
        ended = lines + b"\n"
        if ended.count(b"\r") != ended.count(b"\r\n"):
            return None
        lines = ended.replace(b"\r\n", b"\n")[:-1]
    try:
        text = lines.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if first == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text


def _decoder(encoding: str) -> Any:
    name = codecs.lookup(encoding).name

    def decode(raw: bytes, lineno: int) -> str:
        try:
            text = raw.decode(name)
        except UnicodeDecodeError as exc:
            if name == "utf-8":
                raise FormatError("not_utf8", f"line {lineno} is not UTF-8 text (byte {exc.start})") from None
            raise FormatError(
                "bad_encoding", f"line {lineno} is not {encoding} text (byte {exc.start})"
            ) from None
        if lineno == 1 and text.startswith("\ufeff"):
            text = text[1:]
        return text

    return decode


# ---------------------------------------------------------------------------- Parquet
def parquet_rows(path: str | Path, *, max_columns: int) -> Iterator[tuple[list[str], int]]:
    """Rows of a Parquet file as text cells (a null: ``""``; a float: its ``repr``; a boolean: ``1``/``0``),
    read one record batch at a time. Raises ``FormatError``: ``bad_parquet`` (not Parquet, damaged),
    ``unsupported_column`` (a nested column: list, struct, map), ``bad_header``."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the image that reads Parquet carries pyarrow
        raise FormatError("unsupported_format", "this reader has no Parquet support (pyarrow)") from None
    try:
        pf = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise FormatError("bad_parquet", f"not a readable Parquet file: {str(exc)[:200]}") from None
    schema = pf.schema_arrow
    if len(schema) > max_columns:
        raise FormatError("bad_header", f"the file has {len(schema)} columns (limit {max_columns})")
    nested = [f.name for f in schema if pa.types.is_nested(f.type)]
    if nested:
        kinds = ", ".join(f"{f.name!r} ({f.type})" for f in schema if f.name in nested)
        raise FormatError(
            "unsupported_column",
            f"nested columns (list, struct, map) cannot be features or a target: {kinds[:400]} "
            "(flatten them, or leave them out of the file)",
        )
    yield [f.name for f in schema], 1
    line = 1
    try:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            columns = [_cells(col) for col in batch.columns]
            for r in range(batch.num_rows):
                line += 1
                yield [c[r] for c in columns], line
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(
            "bad_parquet", f"the Parquet file is damaged near row {line}: {str(exc)[:200]}"
        ) from None


def _cells(column: Any) -> list[str]:
    return [_text(v) for v in column.to_pylist()]


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if hasattr(v, "isoformat"):
        return str(v.isoformat())
    return str(v)
