"""Random number streams whose state lives in a variable, so checkpoints carry it.

Stateful random ops (`tf.random.uniform`, `tf.random.shuffle`, Keras's default
`Dropout`) keep their position in op kernels that no checkpoint holds: a run
resumed from a backup would draw different dropout masks and augmentations
from an uninterrupted one, and publish different weights. A
`tf.random.Generator` assigned to a layer is tracked like a weight (though not
listed in `weights`), so the backup restores its stream exactly where it was.
"""
from __future__ import annotations

import random

import tensorflow as tf


def checkpointed_generator() -> tf.random.Generator:
    """A generator seeded from Python's `random`, which `tf.keras.utils.set_random_seed` seeds.

    Created in a layer's `__init__`, so the same config seed and the same
    construction order give every generator the same seed in every run.
    Under a distribution strategy each replica draws its own stream.
    """
    return tf.random.Generator.from_seed(random.getrandbits(31))
