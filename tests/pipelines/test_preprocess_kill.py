"""A killed preprocessing job leaves nothing that training would take for finished, and a re-run is exact.

The job (both engines; the columnar one at every stage) re-runs into a
directory that holds a finished run, in a child process killed with SIGKILL at
several stages, each recognised from the files the job has written (polled every
few milliseconds): just after it has withdrawn the old manifest, while it writes
the dead letters, once the transform graph is saved, while shards are written,
and once the new manifest is published. Wherever the kill lands: either the
manifest is absent and `recsys train` refuses the directory, or the manifest and
everything it describes are complete. Then a re-run into the same directory
gives records, vocabularies and counts equal to an uninterrupted run's.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

from features.artifacts import Artifacts
from features.config import load_config
from pipelines import synthetic
from pipelines.preprocess import run_preprocess
from tests.conftest import SAMPLE_CONFIG

pytestmark = pytest.mark.slow


def _split_floats(record: bytes) -> tuple[bytes, tuple]:
    """(the tf.Example without its floats, in key order; its floats): the encoder's map order is not
    fixed, and tf.Transform sums moments in float32 in an order that varies from run to run."""
    example, floats = tf.train.Example.FromString(record), []
    for name in sorted(example.features.feature):
        feature = example.features.feature[name]
        if feature.HasField("float_list"):
            floats.extend(feature.float_list.value)
            del feature.float_list.value[:]
    return example.SerializeToString(deterministic=True), tuple(floats)


def _assert_same_run(found: dict, expected: dict):
    assert found["manifest"] == expected["manifest"] and found["vocabularies"] == expected["vocabularies"]
    for split, records in expected["records"].items():
        assert [discrete for discrete, _ in found["records"][split]] == [discrete for discrete, _ in records]
        np.testing.assert_allclose([f for _, floats in found["records"][split] for f in floats],
                                   [f for _, floats in records for f in floats], rtol=1e-5, atol=1e-6)


def _snapshot(root) -> dict:
    """Everything a run publishes, in a form two runs can be compared by (timings left out)."""
    artifacts = Artifacts(root)
    manifest = json.loads(artifacts.manifest_path.read_text())
    for volatile in ("seconds", "rows_per_second"):
        manifest.pop(volatile)
    records = {split: sorted(_split_floats(record) for record in tf.data.TFRecordDataset(
        sorted(map(str, artifacts.split_dir(split).glob("*.gz"))), compression_type="GZIP").as_numpy_iterator())
               for split in ("train", "eval")}
    vocabularies = {path.name: path.read_bytes() for path in sorted((root / "transform_fn" / "assets").iterdir())}
    return {"manifest": manifest, "records": records, "vocabularies": vocabularies}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """For an engine: (config path, config, a finished run's directory, its snapshot), made once."""
    root = tmp_path_factory.mktemp("kill")
    synthetic.write(synthetic.SyntheticSpec(rows=3000, seed=9, num_users=200, num_items=150), str(root / "logs.csv"))
    finished = {}

    def for_engine(engine: str):
        if engine not in finished:
            raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
            raw["input"] = {"path": str(root / "logs.csv")}
            raw["artifacts_dir"] = str(root / f"artifacts-{engine}")
            raw["pipeline"] = {"engine": engine, "num_shards": 2}
            path = root / f"{engine}.yaml"
            path.write_text(yaml.safe_dump(raw))
            config = load_config(path)
            run_preprocess(config, root / f"reference-{engine}")
            finished[engine] = (path, config, root / f"reference-{engine}", _snapshot(root / f"reference-{engine}"))
        return finished[engine]
    return for_engine


STAGES = {  # stage: how the job's files show it has been reached
    "old manifest withdrawn": lambda root: not (root / "manifest.json").exists(),
    "dead letters being written": lambda root: any((root / "dead_letter").glob("*.jsonl")),
    "transform graph saved": lambda root: (root / "transform_fn" / "saved_model.pb").exists(),
    "shards being written": lambda root: any((root / "eval").glob("*.gz")),
    "new manifest published": lambda root: (root / "manifest.json").exists() and (root / "stats").exists(),
}


def _kill_at(stage: str, path, root, timeout: float = 120.0):
    child = subprocess.Popen([sys.executable, "-m", "recsys.cli", "preprocess", "--config", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    reached, deadline = STAGES[stage], time.monotonic() + timeout

    def wait_for(condition):
        while not condition() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)

    wait_for(lambda: not (root / "manifest.json").exists())  # the old run is being withdrawn
    if stage != "old manifest withdrawn":
        wait_for(lambda: not (root / "train").exists())  # ... and its outputs are gone: what follows is new
    wait_for(lambda: reached(root))
    assert child.poll() is None, f"the job ended before '{stage}'"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)


# every stage with the columnar engine; with Beam, whose outputs appear at the end of its run, one mid-job stage
@pytest.mark.parametrize("engine, stage", [("columnar", stage) for stage in STAGES] + [("beam", "transform graph saved")])
def test_a_killed_job_is_unfinished_or_complete_and_a_rerun_is_exact(job, engine, stage):
    path, config, finished_run, reference = job(engine)
    shutil.rmtree(config.artifacts, ignore_errors=True)
    shutil.copytree(finished_run, config.artifacts)  # a finished run is there, as when a daily job re-runs
    _kill_at(stage, path, config.artifacts)
    artifacts = Artifacts(config.artifacts)
    if artifacts.manifest_path.exists():  # published: everything it describes must be there
        assert stage == "new manifest published"
        _assert_same_run(_snapshot(config.artifacts), reference)
    else:
        from recsys.cli import main

        assert main(["train", "--config", str(path), "--quiet"]) == 2  # refused, never half-trained
    run_preprocess(config, config.artifacts)
    _assert_same_run(_snapshot(config.artifacts), reference)
