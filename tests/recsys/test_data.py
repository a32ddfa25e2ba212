import zlib

import numpy as np
import tensorflow as tf

from recsys.data import find_corrupt_shards, in_memory_epochs, make_dataset

SPEC = {"row": tf.io.FixedLenFeature([], tf.int64), "ids": tf.io.FixedLenFeature([2], tf.int64)}


def _write_shards(tmp_path, rows: int = 50, shards: int = 2) -> list[str]:
    paths = []
    for shard in range(shards):
        path = str(tmp_path / f"part-{shard}.tfrecord.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for row in range(shard, rows, shards):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "row": tf.train.Feature(int64_list=tf.train.Int64List(value=[row])),
                    "ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[row, row + 1]))}))
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


def _epoch(dataset) -> list[int]:
    batches = list(dataset)
    for batch in batches:
        np.testing.assert_array_equal(batch["ids"][:, 0], batch["row"])  # columns stay aligned
    return [int(r) for batch in batches for r in batch["row"]]


def test_in_memory_data_serves_every_row_once_per_epoch_in_a_new_order(tmp_path):
    files = _write_shards(tmp_path)
    rows = _epoch(in_memory_epochs(files, SPEC, batch_size=8, seed=1, first_epoch=0, epochs=2))
    first, second = rows[:50], rows[50:]
    assert sorted(first) == sorted(second) == list(range(50))
    assert first != second
    resumed = _epoch(in_memory_epochs(files, SPEC, batch_size=8, seed=1, first_epoch=1, epochs=2))
    assert resumed == second  # an epoch's order depends on (seed, epoch) alone


def test_dropping_the_remainder_keeps_every_batch_full(tmp_path):
    files = _write_shards(tmp_path)
    for dataset in (in_memory_epochs(files, SPEC, 8, seed=0, first_epoch=0, epochs=1, drop_remainder=True),
                    make_dataset(files, SPEC, 8, shuffle=True, drop_remainder=True)):
        assert [len(b["row"]) for b in dataset] == [8] * 6


def test_a_shard_cut_where_a_record_ends_is_found_although_tensorflow_reads_it_without_error(tmp_path):
    raw = str(tmp_path / "raw.tfrecord")
    with tf.io.TFRecordWriter(raw) as writer:
        for row in range(20):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "row": tf.train.Feature(int64_list=tf.train.Int64List(value=[row]))})).SerializeToString())
    records = open(raw, "rb").read()
    record_size = len(records) // 20
    compressor = zlib.compressobj(wbits=31)  # gzip framing
    head = compressor.compress(records[: 10 * record_size]) + compressor.flush(zlib.Z_FULL_FLUSH)
    cut = tmp_path / "cut.tfrecord.gz"
    cut.write_bytes(head)  # ten whole records and no gzip trailer
    whole = tmp_path / "whole.tfrecord.gz"
    whole.write_bytes(head + compressor.compress(records[10 * record_size:]) + compressor.flush())

    assert sum(1 for _ in tf.data.TFRecordDataset(str(cut), compression_type="GZIP")) == 10  # no error from TF
    assert find_corrupt_shards([str(whole)]) == []
    (problem,) = find_corrupt_shards([str(whole), str(cut)])
    assert problem.startswith(f"{cut} (unreadable after about 10 records: Compressed file ended")
