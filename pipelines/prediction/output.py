"""Where predictions go: shards in input order, dead letters, a summary, all published by one rename.

Layout of `--output DIR`:

    part-<file>-<chunk>.<ext>       input file <file>'s valid rows <chunk>*shard_rows onwards, in input order:
                                    the kept columns as read, then every output's score (float32)
    dead_letter/dead_letters.jsonl  {"reason", "field", "message", "row", "file"} per rejected row
    summary.json                    rows in, scored, dead letters (by reason), seconds, rows/s, model, engine

Everything is written into a hidden staging directory beside DIR
(`.DIR.staging-<host>-<pid>-<uuid>`) and renamed to DIR at the end, so a job
killed at any point leaves no DIR, or a complete one; a later run removes the
staging that dead jobs on this host left behind. The in-process engine
streams each shard one batch at a time, so its memory never holds a shard;
the Beam engine sorts each shard's rows in a worker's memory
(`beam_job.WriteShard`), so its memory holds up to `shard_rows` rows.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.errors import RecsysError
from features.examples import table_to_examples

EXTENSIONS = {"parquet": ".parquet", "csv": ".csv", "tfrecord": ".tfrecord.gz"}
DEAD_LETTER_FILE = "dead_letter/dead_letters.jsonl"
SUMMARY_FILE = "summary.json"
_LOG = logging.getLogger(__name__)


class OutputExists(RecsysError, FileExistsError):
    """The output directory is already there and --overwrite was not given."""


def shard_name(file_index: int, chunk: int, output_format: str) -> str:
    return f"part-{file_index:05d}-{chunk:05d}{EXTENSIONS[output_format]}"


def prediction_table(kept: dict[str, pa.Array], scores: dict[str, np.ndarray], outputs: tuple[str, ...]) -> pa.Table:
    """The kept columns as read, then each output's score as float32 (as the SavedModel returns it)."""
    columns = dict(kept)
    columns.update({name: pa.array(np.asarray(scores[name], np.float32).reshape(-1)) for name in outputs})
    return pa.table(columns)


class ShardWriter:
    """One output shard, written batch by batch in the requested format."""

    def __init__(self, path: Path, output_format: str):
        self._path, self._format, self._writer = path, output_format, None

    def write(self, table: pa.Table):
        if self._writer is None:
            self._writer = self._open(table.schema)
        if self._format == "tfrecord":
            for record in table_to_examples(table):
                self._writer.write(record)
        else:
            self._writer.write_table(table.cast(self._schema))

    def _open(self, schema: pa.Schema):
        self._schema = schema
        if self._format == "parquet":
            return pq.ParquetWriter(str(self._path), schema)
        if self._format == "csv":
            return pacsv.CSVWriter(str(self._path), schema)
        import tensorflow as tf

        return tf.io.TFRecordWriter(str(self._path), tf.io.TFRecordOptions(compression_type="GZIP"))

    def close(self):
        if self._writer is not None:
            self._writer.close()


class FileShards:
    """One input file's predictions cut into shards of `shard_rows` rows, opened as rows arrive."""

    def __init__(self, directory: Path, file_index: int, output_format: str, shard_rows: int):
        self.file_index = file_index
        self._directory, self._format, self._shard_rows = directory, output_format, shard_rows
        self._written, self._writer = 0, None

    def write(self, table: pa.Table):
        while table.num_rows:
            chunk, offset = divmod(self._written, self._shard_rows)
            if offset == 0:
                self.close()
                path = self._directory / shard_name(self.file_index, chunk, self._format)
                self._writer = ShardWriter(path, self._format)
            part = table.slice(0, self._shard_rows - offset)
            self._writer.write(part)
            self._written += part.num_rows
            table = table.slice(part.num_rows)

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def summary(scored: int, dead_by_reason: dict[str, int], seconds: float, **about) -> dict:
    dead = sum(dead_by_reason.values())
    return {"rows_in": scored + dead, "scored": scored, "dead_letters": dead,
            "dead_letters_by_reason": dict(sorted(dead_by_reason.items())), "seconds": round(seconds, 2),
            "rows_per_second": round((scored + dead) / seconds) if seconds > 0 else None, **about}


def _staging_prefix(output: Path) -> str:
    return f".{output.name}.staging-"


def staging_dir(output: Path) -> Path:
    """Hidden, beside the output (same filesystem, so the rename is atomic), named after its job's host and pid."""
    return output.parent / f"{_staging_prefix(output)}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_staging(output: Path):
    """Deletes staging left by killed jobs of this host; a live job's, or another host's, is left alone."""
    host = socket.gethostname()
    for path in output.parent.glob(f"{_staging_prefix(output)}*"):
        job = path.name[len(_staging_prefix(output)):].rsplit("-", 2)
        if len(job) == 3 and job[0] == host and job[1].isdigit() and not _is_running(int(job[1])):
            _LOG.info("removing %s, left by a killed job", path)
            shutil.rmtree(path, ignore_errors=True)


def check_output(output: Path, overwrite: bool):
    if output.exists() and not overwrite:
        raise OutputExists(f"--output {output} already exists; pass --overwrite to replace it")


def write_summary(staging: Path, found: dict):
    (staging / SUMMARY_FILE).write_text(json.dumps(found, indent=2) + "\n")
