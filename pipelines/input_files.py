"""The input's files, checked before any job starts: no Beam, TensorFlow or tf.Transform import here.

An input is one source split by hash (`input.path`), or the splits as given
(`input.train`, `input.eval`, `input.test`), each a file or glob. Everything
that can be known from the files' first lines is checked here, before a job
starts and before the heavy libraries load (a config or path mistake is
reported in about a second): a glob that matches nothing, a file whose header
differs from the first file's (or a header where `header: false` says there is
none), a missing required column, a split with no data rows. Each is one error
naming the config key and the file. Local files are read through pyarrow
(gzip, bz2, zstd by extension); other filesystems (gs://, s3://, hdfs://)
through Beam's `FileSystems`, imported only for them.
"""
from __future__ import annotations

import bz2
import dataclasses
import glob
import gzip
import os

import pyarrow as pa
import pyarrow.parquet as pq

from features.config import Config
from features.errors import RecsysError
from pipelines.row_formats import TextCleaner, split_csv_line
from pipelines.split import EVAL, TRAIN
from pipelines.validation import RowError


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def open_input(path: str, arrow: bool = False):
    """A binary stream of the file's contents, decompressed by its extension (.gz, .bz2, .zst).

    `arrow`: a local file as an Arrow stream (C++ decompression, for Arrow's readers).
    """
    if _is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.open(path)
    local = path.removeprefix("file://")
    if arrow:
        return pa.input_stream(local, compression="detect")
    suffix = os.path.splitext(local)[1].lower()
    if suffix in (".zst", ".zstd"):
        import zstandard

        return zstandard.open(local, "rb")
    return {".gz": gzip.open, ".bz2": bz2.open}.get(suffix, open)(local, "rb")


class InputError(RecsysError, ValueError):
    """The input as a whole cannot be read (no files, no header, missing required columns)."""


@dataclasses.dataclass(frozen=True)
class InputSource:
    """One configured file or glob: `split` is where all its rows go, or None when they are hashed."""

    key: str  # the config key that names it, for messages: 'input.train'
    split: str | None
    pattern: str
    files: tuple[str, ...]


def _matched_files(key: str, pattern: str) -> tuple[str, ...]:
    if _is_remote(pattern):
        from apache_beam.io.filesystems import FileSystems

        matches = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    else:
        matches = [path for path in glob.glob(pattern.removeprefix("file://"), recursive=True)
                   if not os.path.isdir(path)]
    if not matches:
        raise InputError(f"{key}: no file matches '{pattern}'")
    return tuple(sorted(matches))


def _first_lines(path: str, count: int) -> list[str]:
    """Up to `count` lines (without line ends), decompressed by the file's extension."""
    lines = []
    with open_input(path) as handle:
        for _ in range(count):
            line = handle.readline()
            if not line:
                break
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
    return lines


def parquet_columns(path: str) -> list[str]:
    """A Parquet file's column names, from its footer (local or remote, as `open_input` reads it)."""
    with open_input(path) as handle:
        return pq.ParquetFile(handle).schema_arrow.names


def _parquet_rows(path: str) -> int:
    with open_input(path) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _header_of(config: Config, path: str, key: str) -> list[str]:
    """The file's columns: its header line, or the configured names when `header: false`."""
    lines = _first_lines(path, 1)
    source = config.input
    if not lines or not lines[0].strip():
        raise InputError(f"{key}: '{path}' is empty" + (" (expected a CSV header line)" if source.header else ""))
    try:
        fields = split_csv_line(lines[0], source)
    except RowError as err:
        raise InputError(f"{key}: the first line of '{path}' is not valid CSV: {err.message}") from None
    clean = TextCleaner(source)
    if source.header:
        return [clean(name) for name in fields]
    names = config.raw_column_names
    if sum(clean(value) in names for value in fields) >= max(2, len(names) // 2):
        raise InputError(f"{key}: '{path}' starts with a header line ({lines[0][:80]!r}) but input.header is "
                         "false; set input.header: true, or remove the header from every file")
    if len(fields) != len(names):
        raise InputError(f"{key}: the first line of '{path}' has {len(fields)} values separated by "
                         f"{source.delimiter!r} but the config names {len(names)} columns "
                         f"({'input.column_names' if source.column_names else 'columns'}); "
                         "check input.delimiter and the column list")
    return names


def _has_rows(config: Config, path: str) -> bool:
    if config.input_format == "parquet":
        return _parquet_rows(path) > 0
    if config.input_format == "tfrecord":
        with open_input(path) as handle:
            return bool(handle.read(1))
    skip = 1 if config.input_format == "csv" and config.input.header else 0
    return any(line.strip() for line in _first_lines(path, skip + 1)[skip:])


def _sources(config: Config) -> list[InputSource]:
    patterns = config.input.patterns
    hashed_train = EVAL not in patterns  # one input, or train without a given eval: eval is hashed out
    sources = []
    for split, pattern in patterns.items():
        key = f"input.{split or 'path'}"
        assigned = None if split is None or (split == TRAIN and hashed_train) else split
        sources.append(InputSource(key, assigned, pattern, _matched_files(key, pattern)))
    return sources


def _check_columns(config: Config, sources: list[InputSource]) -> list[str] | None:
    """Every file's columns agree and hold the required ones; returns the CSV header (None otherwise)."""
    fmt = config.input_format
    if fmt in ("slots", "tfrecord"):
        return None
    first_key, first_file = sources[0].key, sources[0].files[0]
    reference = _header_of(config, first_file, first_key) if fmt == "csv" else parquet_columns(first_file)
    needed = [c.name for c in config.columns if c.required]
    missing = [name for name in needed if name not in reference]
    if missing:
        raise InputError(f"{first_key}: required column(s) {', '.join(missing)} are missing in '{first_file}' "
                         f"(found: {', '.join(reference)})")
    for source in sources:
        for path in source.files:
            found = _header_of(config, path, source.key) if fmt == "csv" else parquet_columns(path)
            if fmt == "csv" and found != reference:
                raise InputError(f"{source.key}: '{path}' has columns {found} but '{first_file}' has "
                                 f"{reference}; every input file must have the same header, in the same order")
            if fmt == "parquet" and [name for name in needed if name not in found]:
                raise InputError(f"{source.key}: '{path}' lacks required column(s) "
                                 f"{', '.join(n for n in needed if n not in found)}")
    return reference if fmt == "csv" else None


def input_sources(config: Config) -> tuple[list[InputSource], list[str] | None]:
    """(the checked sources, the CSV header or None): every problem above is raised here, before a job."""
    sources = _sources(config)
    header = _check_columns(config, sources)
    for source in sources:
        if not any(_has_rows(config, path) for path in source.files):  # stops at the first file with data
            raise InputError(f"{source.key}: {len(source.files)} file(s) matched '{source.pattern}' but none "
                             f"has a data row (first: '{source.files[0]}')")
    return sources, header


