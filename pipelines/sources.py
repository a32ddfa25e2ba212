"""Reading the raw records of the input's sources: as a Beam transform, or in this process.

The sources and their checks are `pipelines.input_files`'s; this module reads them.
"""
from __future__ import annotations

from typing import Iterator

import apache_beam as beam
import pyarrow.parquet as pq

from features.config import Config
from pipelines.input_files import InputSource, input_sources, open_input
from pipelines.row_formats import RawRowParser
from pipelines.split import TRAIN, split_of
from pipelines.validation import RowError, RowValidator, row_split_key


class ReadRawRecords(beam.PTransform):
    """A source's records as (file, record): text lines (CSV, slots), serialized tf.Examples or Parquet dicts."""

    def __init__(self, config: Config, source: InputSource):
        super().__init__()
        self._config, self._source = config, source

    def expand(self, pbegin):
        files = pbegin | "Files" >> beam.Create(list(self._source.files))
        fmt = self._config.input_format
        if fmt == "parquet":
            return files | "ReadParquet" >> beam.io.ReadAllFromParquet(with_filename=True)
        if fmt == "tfrecord":
            return files | "ReadTFRecord" >> beam.io.ReadAllFromTFRecord(with_filename=True)
        skip = 1 if fmt == "csv" and self._config.input.header else 0
        return files | "ReadLines" >> beam.io.ReadAllFromText(with_filename=True, skip_header_lines=skip)


def iter_records(config: Config, path: str) -> Iterator:
    """One file's raw records in order, in this process (the Beam transform's records, without the file)."""
    fmt = config.input_format
    if fmt == "parquet":
        with open_input(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=8192):
                yield from batch.to_pylist()
        return
    if fmt == "tfrecord":
        import tensorflow as tf

        compression = "GZIP" if path.endswith(".gz") else ""
        yield from tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator()
        return
    with open_input(path) as handle:
        if fmt == "csv" and config.input.header:
            handle.readline()
        while line := handle.readline():
            yield line.decode("utf-8").rstrip("\r\n")


def iter_split_rows(config: Config, split: str, limit: int | None = None,
                    checked: tuple[list[InputSource], list[str] | None] | None = None) -> Iterator[dict]:
    """The validated rows `recsys preprocess` puts in `split`, in file order; invalid rows are skipped.

    Rows whose downstream label was repaired are yielded repaired; dropped rows are skipped.
    `checked`: `input_sources(config)`'s result when the caller has it already.
    """
    sources, header = checked or input_sources(config)
    parse, validate, key_of = RawRowParser(config, header), RowValidator(config), row_split_key(config)
    split_test = config.split.test_fraction
    found = 0
    for source in sources:
        if source.split not in (split, None):
            continue
        for path in source.files:
            for record in iter_records(config, path):
                try:
                    row = validate(parse(record))
                except RowError:
                    continue
                if source.split is None and split_of(key_of(row), config.split.eval_fraction, split_test) != split:
                    continue
                yield row
                found += 1
                if limit is not None and found >= limit:
                    return



def read_sample_rows(config: Config, count: int) -> list[dict]:
    """The first `count` valid training rows, validated (warm-up records, previews, benchmarks)."""
    return list(iter_split_rows(config, TRAIN, count))
