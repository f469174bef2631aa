"""Write a query result (an Arrow table) as a terminal table, CSV, JSON or Parquet."""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING

import duckdb
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import polars as pl

CHUNK_ROWS = 65_536  # rows per Parquet row group and per CSV write when streaming


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def write(result: pa.Table, fmt: Format, out: Path | None) -> None:
    """Write to `out`, or to stdout when it is None (Parquet needs a file)."""
    if fmt is Format.parquet:
        if out is None:
            raise ValueError("--format parquet needs --out FILE")
        pq.write_table(result, out, compression="zstd")
        return
    if out is None:
        _write_text(result, fmt, sys.stdout)
        return
    with out.open("w", encoding="utf-8", newline="") as f:
        _write_text(result, fmt, f)


def write_batches(reader: pa.RecordBatchReader, fmt: Format, out: Path) -> int:
    """Stream a result to `out` chunk by chunk (memory stays bounded); the rows written.

    CSV and Parquet stream; JSON and the table are written whole.
    """
    rows = 0
    if fmt is Format.parquet:
        with pq.ParquetWriter(out, reader.schema, compression="zstd") as parquet:
            for chunk in _chunks(reader):
                parquet.write_table(chunk)
                rows += chunk.num_rows
        return rows
    if fmt is Format.csv:
        schema = _nested_as_json(reader.schema.empty_table()).schema
        with pacsv.CSVWriter(out, schema) as csv_writer:
            for chunk in _chunks(reader):
                csv_writer.write_table(_nested_as_json(chunk))
                rows += chunk.num_rows
        return rows
    result = reader.read_all()
    write(result, fmt, out)
    return int(result.num_rows)


def _chunks(reader: pa.RecordBatchReader) -> Iterator[pa.Table]:
    """The reader's batches gathered into tables of about CHUNK_ROWS rows."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        if size >= CHUNK_ROWS:
            yield pa.Table.from_batches(pending, schema=reader.schema)
            pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending, schema=reader.schema)


def _write_text(result: pa.Table, fmt: Format, stream: IO[str]) -> None:
    if fmt is Format.json:
        stream.write(orjson.dumps(result.to_pylist(), default=str, option=orjson.OPT_INDENT_2).decode())
        stream.write("\n")
        return
    if fmt is Format.csv:
        stream.write(_frame(_nested_as_json(result)).write_csv())
        return
    # DuckDB's box renderer, as analysts know it from the duckdb CLI: on a terminal it
    # elides middle columns to fit; into a file it keeps every column.
    width = shutil.get_terminal_size((160, 40)).columns if stream.isatty() else 100_000
    rendered = io.StringIO()
    with duckdb.connect() as conn, contextlib.redirect_stdout(rendered):
        conn.from_arrow(result).show(max_width=width, max_rows=max(result.num_rows, 1), max_col_width=60)
    stream.write(rendered.getvalue())


def _frame(result: pa.Table) -> pl.DataFrame:
    import polars as pl  # only the table format needs it: half a second off every command's start

    frame = pl.from_arrow(result)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _nested_as_json(result: pa.Table) -> pa.Table:
    """CSV has no lists or structs: such columns are written as JSON text."""
    for index, field in enumerate(result.schema):
        if pa.types.is_nested(field.type):
            values = [
                None if v is None else orjson.dumps(v).decode() for v in result.column(index).to_pylist()
            ]
            result = result.set_column(index, field.name, pa.array(values, pa.string()))
    return result
