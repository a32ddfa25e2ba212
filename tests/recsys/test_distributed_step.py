"""Steps under a two-replica strategy equal steps on the whole batch (fixed task weights).

Runs in a fresh process because the CPU must be split into two logical devices
before TensorFlow starts. Plain SGD, unlike Adam, is not invariant to the
scale of the gradient, so a loss not divided by the number of replicas (or
regularisation added once per replica) would show here.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TWO_REPLICAS_VS_ONE = """
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from recsys.models.ranker import MultiTaskRanker, dummy_features
from tests.recsys.test_layers import MODEL_INPUTS
from tests.recsys.test_ranker import TASKS

rng = np.random.default_rng(0)
click = rng.integers(0, 2, 16).astype("float32")
batch = {"item_id": rng.integers(1, 10, 16), "hist_click": rng.integers(0, 10, (16, 3)),
         "price": rng.normal(size=16).astype("float32"), "click": click,
         "conversion": click * rng.integers(0, 2, 16), "dwell_time": click * rng.uniform(0, 60, 16).astype("float32")}


def trained_weights(strategy, balancing):
    tf.keras.utils.set_random_seed(3)
    with strategy.scope():
        ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, bottom_units=[8], tower_units=[4], l2=0.05,
                                 embedding_l2=0.05, loss_balancing=balancing)
        ranker(dummy_features(MODEL_INPUTS))  # weights exist before the step, as build_ranker makes them
        ranker.compile(optimizer=tf.keras.optimizers.SGD(0.5))
    ranker.fit(tf.data.Dataset.from_tensors(batch).repeat(3), epochs=1, verbose=0)
    return [w.numpy() for w in ranker.trainable_weights]


for balancing in ("fixed",):  # the trainer refuses the other balancings on several replicas
    one = trained_weights(tf.distribute.get_strategy(), balancing)
    two = trained_weights(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), balancing)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=balancing)
print("same weights")
"""


@pytest.mark.slow
def test_two_replicas_take_the_step_one_replica_takes_on_the_whole_batch():
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS_VS_ONE], cwd=ROOT, capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                                 "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0 and "same weights" in result.stdout, result.stderr[-3000:]
