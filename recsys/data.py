"""tf.data input over the pipeline's transformed, gzip-compressed TFRecord shards."""
from __future__ import annotations

import functools
import gzip
import re
import zlib
from pathlib import Path
from typing import Callable

import tensorflow as tf
import tensorflow_transform as tft

from features.artifacts import Artifacts
from features.errors import RecsysError


def transformed_feature_spec(artifacts: Path) -> dict:
    return tft.TFTransformOutput(str(artifacts)).transformed_feature_spec()


def split_files(artifacts: Path, split: str) -> list[str]:
    directory = Artifacts(Path(artifacts)).split_dir(split)
    files = sorted(str(p) for p in directory.glob("*.tfrecord.gz"))
    if not files:
        raise FileNotFoundError(f"no TFRecord shards in {directory}; run `recsys preprocess` first")
    return files


def with_known_steps(dataset: tf.data.Dataset, rows: int, batch_size: int,
                     drop_remainder: bool = False) -> tf.data.Dataset:
    """Declares the number of batches, which Keras needs to run several steps per call."""
    steps = rows // batch_size if drop_remainder else -(-rows // batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(steps))


def make_dataset(files: list[str], feature_spec: dict, batch_size: int, shuffle: bool = False,
                 seed: int = 0, shuffle_buffer: int = 10_000, repeat: bool = False,
                 drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of parsed examples: shards read in parallel, whole batches parsed at once, prefetched.

    Parsing after batching turns one `parse_example` call per row into one per
    batch, which is most of the input cost on CPU. `drop_remainder` gives every
    batch the same shape, so an XLA-compiled step is compiled once.
    """
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=min(len(files), 4), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    dataset = dataset.map(lambda records: tf.io.parse_example(records, feature_spec),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def in_memory_epochs(files: list[str], feature_spec: dict, batch_size: int, seed: int, first_epoch: int,
                     epochs: int, drop_remainder: bool = False) -> tf.data.Dataset:
    """`training_epochs` from columns parsed once and held in memory, each epoch in a fresh random order.

    For data that fits in RAM this takes parsing and decompression out of every
    epoch, and shuffles over all rows rather than a buffer. Each batch is one
    gather per column from the in-memory tensors; as with streamed shards, an
    epoch's order depends on (seed, epoch) alone.
    """
    batches = list(make_dataset(files, feature_spec, batch_size=8192))
    columns = {name: tf.concat([batch[name] for batch in batches], axis=0) for name in batches[0]}
    rows = int(next(iter(columns.values())).shape[0])
    orders = one_per_epoch(lambda shuffle_seed: tf.data.Dataset.range(rows).shuffle(rows, seed=shuffle_seed).batch(
        batch_size, drop_remainder=drop_remainder), seed, first_epoch, epochs)
    stored = tf.data.Dataset.from_tensors(columns).repeat()
    dataset = tf.data.Dataset.zip((orders, stored)).map(
        lambda indices, data: {name: tf.gather(values, indices) for name, values in data.items()},
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_item_dataset(files: list[str], feature_spec: dict, batch_size: int, seed: int = 0,
                      shuffle_buffer: int = 10_000) -> tf.data.Dataset:
    """Endless batches of items drawn uniformly from the item corpus (shuffled, repeated).

    The corpus has one row per item, so each item is equally likely whatever
    its traffic; a buffer at least as large as the corpus makes the draw exact.
    """
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.map(lambda records: tf.io.parse_example(records, feature_spec),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def item_epochs(files: list[str], feature_spec: dict, batch_size: int, seed: int, shuffle_buffer: int,
                first_epoch: int, epochs: int, steps_per_epoch: int) -> tf.data.Dataset:
    """`make_item_dataset` draws for epochs `first_epoch` .. `epochs - 1`, `steps_per_epoch` batches each.

    As with `training_epochs`, each epoch's draws depend on (seed, epoch) alone,
    so a run resumed at epoch k contrasts the items an uninterrupted run does.
    """
    return one_per_epoch(lambda shuffle_seed: make_item_dataset(
        files, feature_spec, batch_size, seed=shuffle_seed, shuffle_buffer=shuffle_buffer).take(steps_per_epoch),
        seed, first_epoch, epochs)


def with_item_batches(dataset: tf.data.Dataset, items: tf.data.Dataset, key: str) -> tf.data.Dataset:
    """Each batch of `dataset` carries one batch of `items` under `key`; ends when `dataset` does."""
    merged = tf.data.Dataset.zip((dataset, items)).map(lambda batch, item_batch: {**batch, key: item_batch})
    return merged.prefetch(tf.data.AUTOTUNE)


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a function of the config's seed and the epoch number only."""
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def one_per_epoch(make: Callable[[int], tf.data.Dataset], seed: int, first_epoch: int, epochs: int) -> tf.data.Dataset:
    """`make(epoch's seed)` for epochs `first_epoch` .. `epochs - 1`, one after another.

    Each epoch depends on (seed, epoch) alone, not on how many epochs this
    process has already iterated, so a run resumed at epoch k reads what an
    uninterrupted run reads at epoch k.
    """
    return functools.reduce(tf.data.Dataset.concatenate,
                            [make(epoch_seed(seed, epoch)) for epoch in range(first_epoch, epochs)])


def training_epochs(files: list[str], feature_spec: dict, batch_size: int, seed: int, shuffle_buffer: int,
                    first_epoch: int, epochs: int, drop_remainder: bool = False) -> tf.data.Dataset:
    """Shuffled training batches for epochs `first_epoch` .. `epochs - 1`, one after another.

    Each epoch's order depends on (seed, epoch) alone, not on how many epochs
    this process has already iterated, so a run resumed at epoch k sees the
    batches an uninterrupted run sees at epoch k. Feed it to `fit` with
    `steps_per_epoch` = ceil(rows / batch_size) (rows // batch_size with `drop_remainder`).
    """
    return one_per_epoch(lambda shuffle_seed: make_dataset(
        files, feature_spec, batch_size, shuffle=True, seed=shuffle_seed, shuffle_buffer=shuffle_buffer,
        drop_remainder=drop_remainder), seed, first_epoch, epochs)


def shard_by_element(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Under multi-worker training, splits each global batch across workers instead of splitting files.

    File sharding would give each worker different shards (and, with fewer
    shards than workers, none); element sharding keeps every global batch what
    a single process would train on, so results match one-worker training.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


class CorruptShardError(RecsysError, IOError):
    """A TFRecord shard cannot be read; the message names the shard and where it breaks."""


def _short(message: str) -> str:
    """TensorFlow's error text without the op and function-node decorations."""
    return re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*$", "", message).strip().rstrip("'").strip()


def _gzip_stream_error(path: str) -> str | None:
    """Why a gzip file is incomplete or damaged, or None when its stream ends properly.

    TensorFlow's GZIP reader stops quietly when a file is cut exactly where a
    record ends, so a truncated shard can look like a short one. The gzip
    trailer (CRC and length) is what proves a stream is whole.
    """
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as err:
        return str(err)
    return None


def find_corrupt_shards(files: list[str]) -> list[str]:
    """Each unreadable shard with about how many records it yields first; only run after a read failed.

    TensorFlow's DataLossError does not say which file of an interleaved
    dataset broke, so the failure path re-reads the shards one at a time,
    through TensorFlow and then through gzip for truncations TensorFlow misses.
    """
    problems = []
    for path in files:
        records = 0
        try:
            for batch in tf.data.TFRecordDataset(path, compression_type="GZIP").batch(1024):
                records += int(tf.size(batch))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            problems.append(f"{path} (unreadable after about {records} records: {_short(err.message)})")
            continue
        if (reason := _gzip_stream_error(path)) is not None:
            problems.append(f"{path} (unreadable after about {records} records: {reason})")
    return problems


def corrupt_shard_error(files: list[str], error: tf.errors.OpError | str) -> CorruptShardError:
    """The error to raise when reading `files` failed with `error`, naming the broken shard(s)."""
    broken = find_corrupt_shards(files)
    detail = _short(error.message) if isinstance(error, tf.errors.OpError) else error
    where = "; ".join(broken) if broken else f"one of {len(files)} shards ({detail})"
    return CorruptShardError(f"corrupt TFRecord shard: {where}. Re-run `recsys preprocess` to rewrite the shards")
