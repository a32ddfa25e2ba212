"""Training that survives: resume after a kill, two workers on loopback, a clear stop on NaN.

One small preprocessed dataset is shared; every run trains the same tiny model
for three epochs from the same seed, so an uninterrupted single-process run is
the reference the killed-and-resumed run and the two-worker run must match.
"""
import gzip
import json
import os
import socket
import subprocess
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from features.config import load_config
from tests.conftest import SAMPLE_CONFIG

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 3

# Runs `train` in a fresh process and SIGKILLs it right after epoch 1's backup is written.
KILL_AFTER_FIRST_EPOCH = """
import os, signal, sys
import tensorflow as tf
from features.config import load_config
from recsys import training

class KillAfterFirstEpoch(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGKILL)

callbacks = training._callbacks
training._callbacks = lambda *args: callbacks(*args) + [KillAfterFirstEpoch()]
training.train(load_config(sys.argv[1]), verbose=False)
"""


@pytest.fixture(scope="module")
def workdir(small_artifacts):
    return small_artifacts[0]


def _write_config(workdir: Path, name: str, **training) -> Path:
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["input"]["path"] = str(workdir / "logs.csv")
    raw["artifacts_dir"] = str(workdir / "artifacts")
    raw["model"].update(tower_units=[16], dropout=0.0)
    raw["training"].update(dict(model_dir=str(workdir / name), epochs=EPOCHS, batch_size=64,
                                early_stopping_patience=EPOCHS, shuffle_buffer=256), **training)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _subprocess_env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)


def _trained_weights(config_path: Path) -> list[np.ndarray]:
    from recsys.training import load_trained_ranker

    return [w.numpy() for w in load_trained_ranker(load_config(config_path)).trainable_weights]


def _assert_same_weights(got: list, expected: list, **tolerance):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, **tolerance)


@pytest.fixture(scope="module")
def reference(workdir):
    """Weights and training summary of an uninterrupted single-process run."""
    from recsys.training import train

    path = _write_config(workdir, "reference")
    summary = train(load_config(path), verbose=False)
    assert summary["epochs_run"] == EPOCHS and summary["replicas"] == 1
    return _trained_weights(path), summary


def test_a_killed_run_resumes_from_its_backup_and_ends_where_an_uninterrupted_run_does(workdir, reference):
    from recsys.training import resumed_epoch, train

    path = _write_config(workdir, "killed")
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_EPOCH, str(path)], cwd=ROOT,
                            env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    model_dir = workdir / "killed"
    assert resumed_epoch(model_dir / "backup") == 1 and not (model_dir / "training.json").exists()

    summary = train(load_config(path), verbose=False)
    assert summary["resumed_at_epoch"] == 2 and summary["epochs_run"] == EPOCHS - 1
    assert resumed_epoch(model_dir / "backup") == 0  # the backup is removed once training finished
    _assert_same_weights(_trained_weights(path), reference[0], rtol=1e-5, atol=1e-6)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_loopback_match_single_process_training(workdir, reference):
    path = _write_config(workdir, "two_workers", distribution="multi_worker")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = [subprocess.Popen(
        [sys.executable, "-m", "recsys.cli", "train", "--config", str(path), "--quiet"], cwd=ROOT,
        env=_subprocess_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [worker.communicate(timeout=400)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    summary = json.loads((workdir / "two_workers" / "training.json").read_text())
    assert summary["distribution"] == "multi_worker" and summary["replicas"] == 2
    # Same global batches, gradients summed in another order: the first epoch agrees to float
    # rounding; over three epochs on 1k rows the rounding grows a little. AUC counts pairs,
    # so rounding that swaps two close scores moves it by a step; it is compared absolutely.
    for key in ("total_loss", "ctr_loss", "val_total_loss"):
        got, expected = summary["history"][key], reference[1]["history"][key]
        np.testing.assert_allclose(got[0], expected[0], rtol=3e-3, err_msg=key)
        np.testing.assert_allclose(got, expected, rtol=1e-2, err_msg=key)
    np.testing.assert_allclose(summary["history"]["val_ctr_auc"], reference[1]["history"]["val_ctr_auc"],
                               atol=1e-2, err_msg="val_ctr_auc")
    # Adam divides by the root of tiny second moments for rarely seen embedding rows, which
    # magnifies that rounding in a few weights, so weights are compared more loosely.
    _assert_same_weights(_trained_weights(path), reference[0], rtol=0.1, atol=1e-2)


def test_a_parameter_server_cluster_on_loopback_trains_and_saves_a_model_that_loads(workdir, reference):
    path = _write_config(workdir, "parameter_server", distribution="parameter_server")
    chief, worker, ps = (f"127.0.0.1:{port}" for port in _free_ports(3))
    cluster = {"chief": [chief], "worker": [worker], "ps": [ps]}

    def task(kind: str, **options):
        env = _subprocess_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": kind, "index": 0}}))
        return subprocess.Popen([sys.executable, "-m", "recsys.cli", "train", "--config", str(path), "--quiet"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                **options)

    servers = [task("ps"), task("worker")]  # they serve until killed, as on a real cluster
    try:
        coordinator = task("chief")
        output = coordinator.communicate(timeout=400)[0]
    finally:
        for server in servers:
            server.kill()
            server.wait()
    assert coordinator.returncode == 0, output[-3000:]
    summary = json.loads((workdir / "parameter_server" / "training.json").read_text())
    assert summary["distribution"] == "parameter_server" and summary["epochs_run"] == EPOCHS
    # Updates are asynchronous, so the numbers are not a single process's; it must still learn.
    losses = summary["history"]["val_total_loss"]
    assert losses[-1] < losses[0]
    assert abs(summary["history"]["val_ctr_auc"][-1] - reference[1]["history"]["val_ctr_auc"][-1]) < 0.05
    assert [w.shape for w in _trained_weights(path)] == [w.shape for w in reference[0]]


def test_a_non_finite_loss_stops_training_naming_the_epoch_batch_and_task(workdir):
    from recsys.numerics import NonFiniteLossError
    from recsys.training import train

    path = _write_config(workdir, "diverging", learning_rate=1e30)
    with pytest.raises(NonFiniteLossError, match=r"training stopped at epoch \d+, batch \d+: task loss not finite: \w+ \((nan|inf)"):
        train(load_config(path), verbose=False)


def _cut_at_a_record_boundary(data: bytes) -> bytes:
    """The shard's first half of records, gzip-compressed without the trailer, as a stopped copy leaves it.

    TensorFlow reads such a file without error; only the missing trailer shows it is cut.
    """
    records, offset = gzip.decompress(data), 0
    while offset < len(records) // 2:
        offset += 16 + struct.unpack("<Q", records[offset:offset + 8])[0]  # length, its CRC, data, data CRC
    compressor = zlib.compressobj(wbits=31)
    return compressor.compress(records[:offset]) + compressor.flush(zlib.Z_FULL_FLUSH)


@pytest.mark.parametrize("cut", ["mid_record", "record_boundary"])
def test_a_corrupt_shard_fails_training_with_a_message_naming_it(workdir, tmp_path, cut):
    import shutil

    from recsys.data import CorruptShardError
    from recsys.training import train

    copy = tmp_path / "artifacts"
    shutil.copytree(workdir / "artifacts", copy)
    shard = sorted((copy / "train").glob("*.tfrecord.gz"))[-1]
    data = shard.read_bytes()
    # A shard cut short, as by a full disk or a killed copy.
    shard.write_bytes(data[: len(data) // 3] if cut == "mid_record" else _cut_at_a_record_boundary(data))
    config = load_config(_write_config(workdir, f"corrupt_{cut}")).model_copy(update={"artifacts_dir": str(copy)})
    with pytest.raises(CorruptShardError, match=f"corrupt TFRecord shard: {shard}.*unreadable after about"):
        train(config, verbose=False)
