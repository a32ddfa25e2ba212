"""The sharded writer gives exactly N readable, balanced shards holding every record once."""
from pathlib import Path

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.sharded_tfrecords import WriteShardedTFRecords, _WriteParts, _assemble_shards

NUM_SHARDS = 4


def _read(path: Path) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]


def _shards(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.tfrecord.gz"))


def _records(count: int, tag: str = "r") -> list[bytes]:
    return [f"{tag}-{i}".encode() * (1 + i % 7) for i in range(count)]


def test_pipeline_writes_every_record_once_into_exactly_the_configured_shards(tmp_path):
    records = _records(500)
    options = PipelineOptions(["--runner=FnApiRunner"])
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline | beam.Create(records)
             | WriteShardedTFRecords(str(tmp_path / "out" / "part"), NUM_SHARDS, str(tmp_path / "parts")))
    shards = _shards(tmp_path / "out")
    assert [p.name for p in shards] == [f"part-{i:05d}-of-00004.tfrecord.gz" for i in range(NUM_SHARDS)]
    sizes = [len(_read(shard)) for shard in shards]
    assert max(sizes) - min(sizes) <= 1, f"one bundle is dealt round-robin: {sizes}"
    assert sorted(r for shard in shards for r in _read(shard)) == sorted(records)
    assert not list((tmp_path / "parts").glob("*")), "part files are consumed"


def _write_bundle(writer: _WriteParts, records: list[bytes]) -> list[tuple[int, str]]:
    writer.start_bundle()
    for record in records:
        writer.process(record)
    return [value.value for value in writer.finish_bundle()]


def test_parts_from_several_bundles_are_joined_into_one_readable_shard_and_missing_shards_are_empty(tmp_path):
    writer = _WriteParts(str(tmp_path / "parts"), NUM_SHARDS)
    first, second = _records(40, "a"), _records(40, "b")
    parts = _write_bundle(writer, first) + _write_bundle(writer, second)
    assert len(parts) > NUM_SHARDS, "both bundles wrote parts"
    only_shard_zero = [(shard, path) for shard, path in parts if shard == 0]
    assert len(only_shard_zero) == 2

    finals = list(_assemble_shards(only_shard_zero, str(tmp_path / "out" / "part"), ".tfrecord.gz", NUM_SHARDS))

    assert len(finals) == NUM_SHARDS
    joined = _read(Path(finals[0]))
    assert len(joined) == 2 * 40 // NUM_SHARDS
    assert {r[:1] for r in joined} == {b"a", b"b"}, "records of both bundles"
    assert set(joined) <= set(first + second)
    assert all(_read(Path(path)) == [] for path in finals[1:])
