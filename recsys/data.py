"""tf.data input over the pipeline's transformed, gzip-compressed TFRecord shards."""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_transform as tft

from features.artifacts import Artifacts


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


def in_memory_dataset(files: list[str], feature_spec: dict, batch_size: int, seed: int = 0,
                      drop_remainder: bool = False) -> tf.data.Dataset:
    """The split parsed once into columns held in memory, served in a fresh random order every epoch.

    For data that fits in RAM this takes parsing and decompression out of every
    epoch after loading, and shuffles over all rows rather than a buffer. Each
    batch is one gather per column from the in-memory tensors.
    """
    batches = list(make_dataset(files, feature_spec, batch_size=8192))
    columns = {name: tf.concat([batch[name] for batch in batches], axis=0) for name in batches[0]}
    rows = int(next(iter(columns.values())).shape[0])
    order = (tf.data.Dataset.range(rows).shuffle(rows, seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size, drop_remainder=drop_remainder))
    stored = tf.data.Dataset.from_tensors(columns).repeat()
    dataset = tf.data.Dataset.zip((order, stored)).map(
        lambda indices, data: {name: tf.gather(values, indices) for name, values in data.items()},
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return with_known_steps(dataset.prefetch(tf.data.AUTOTUNE), rows, batch_size, drop_remainder)


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


def with_item_batches(dataset: tf.data.Dataset, items: tf.data.Dataset, key: str) -> tf.data.Dataset:
    """Each batch of `dataset` carries one batch of `items` under `key`; ends when `dataset` does."""
    merged = tf.data.Dataset.zip((dataset, items)).map(lambda batch, item_batch: {**batch, key: item_batch})
    return merged.prefetch(tf.data.AUTOTUNE)
