"""Writing a fixed number of gzip TFRecord shards without shuffling the records.

`beam.io.WriteToTFRecord(num_shards=N)` assigns records to shards with a
GroupByKey over every record. On a distributed runner that is a shuffle to
disk; on the local FnApiRunner it holds the whole split in memory, which is
what made the job's memory grow with its input. This sink never groups
records:

1. each bundle deals its records round-robin into one part file per shard,
   from a random first shard (as `WriteToTFRecord` deals them), so shards
   come out within a record per bundle of the same size;
2. only the part files' names are gathered (a few per bundle);
3. each shard is the byte concatenation of its parts. A gzip file may hold
   several members one after another (RFC 1952, 2.2), and TensorFlow's and
   Python's readers read them as one stream, so no record is decompressed or
   re-encoded.

Shards no record went to are still written, empty, so a split always has
exactly N files named as Beam names them (`part-00000-of-00004.tfrecord.gz`).
Part files of a bundle that a runner retries are never listed, and the parts
directory is deleted with the job's temp directory.

Records are written with Beam's `_TFRecordUtil`, the framing
`WriteToTFRecord` itself uses, through `FileSystems`, so every filesystem
Beam knows (local, GCS, S3, HDFS) works. It is private to Beam; the public
sink offers no way to write a shard without the grouping.
"""
from __future__ import annotations

import random
import shutil
import uuid

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

_COPY_CHUNK_BYTES = 8 << 20


def shard_path(prefix: str, shard: int, num_shards: int, suffix: str) -> str:
    """Beam's shard name, `<prefix>-00001-of-00004<suffix>`: both engines name their shards so."""
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}{suffix}"


class _WriteParts(beam.DoFn):
    """Writes a bundle's records into one gzip part file per shard; emits (shard, part path)."""

    def __init__(self, parts_dir: str, num_shards: int):
        self._parts_dir, self._num_shards = parts_dir, num_shards

    def start_bundle(self):
        self._bundle = uuid.uuid4().hex
        self._handles: dict[int, tuple[str, object]] = {}
        self._next_shard = random.randrange(self._num_shards)

    def process(self, record: bytes):
        shard, self._next_shard = self._next_shard, (self._next_shard + 1) % self._num_shards
        if shard not in self._handles:
            path = FileSystems.join(self._parts_dir, f"{self._bundle}-{shard:05d}.tfrecord.gz")
            self._handles[shard] = (path, FileSystems.create(path, compression_type=CompressionTypes.GZIP))
        _TFRecordUtil.write_record(self._handles[shard][1], record)

    def finish_bundle(self):
        for shard, (path, handle) in sorted(self._handles.items()):
            handle.close()
            yield WindowedValue((shard, path), GlobalWindow().max_timestamp(), [GlobalWindow()])
        self._handles = {}


def _empty_gzip(path: str):
    with FileSystems.create(path, compression_type=CompressionTypes.GZIP):
        pass


def _concatenate(parts: list[str], path: str):
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
        for part in parts:
            with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as source:
                shutil.copyfileobj(source, out, _COPY_CHUNK_BYTES)


def _assemble_shards(parts: list[tuple[int, str]], prefix: str, suffix: str, num_shards: int):
    """Turns every shard's parts into its final file; yields the final paths."""
    directory = FileSystems.split(prefix)[0]
    if not FileSystems.exists(directory):
        FileSystems.mkdirs(directory)
    by_shard: dict[int, list[str]] = {shard: [] for shard in range(num_shards)}
    for shard, part in parts:
        by_shard[shard].append(part)
    for shard, shard_parts in by_shard.items():
        final = shard_path(prefix, shard, num_shards, suffix)
        if not shard_parts:
            _empty_gzip(final)
        elif len(shard_parts) == 1:
            FileSystems.rename(shard_parts, [final])
        else:
            _concatenate(sorted(shard_parts), final)
            FileSystems.delete(shard_parts)
        yield final


class WriteShardedTFRecords(beam.PTransform):
    """Serialized records → exactly `num_shards` gzip TFRecord files `<prefix>-SSSSS-of-NNNNN<suffix>`.

    `parts_dir` holds the part files while the job runs; use a directory
    inside the job's temp location (it must not be read by anything else).
    """

    def __init__(self, prefix: str, num_shards: int, parts_dir: str,
                 suffix: str = ".tfrecord.gz"):
        super().__init__()
        self._prefix, self._num_shards, self._suffix = prefix, num_shards, suffix
        self._parts_dir = parts_dir

    def expand(self, records):
        return (records
                | "WriteParts" >> beam.ParDo(_WriteParts(self._parts_dir, self._num_shards))
                | "GatherParts" >> beam.combiners.ToList()
                | "AssembleShards" >> beam.FlatMap(_assemble_shards, self._prefix, self._suffix,
                                                   self._num_shards))
