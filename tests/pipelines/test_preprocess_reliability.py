"""The Beam job is deterministic and safe to re-run: two worker processes give what one gives.

Run 1 is single-process. Run 2 re-runs the same input into the same directory
on two SDK worker processes (`--direct_running_mode=multi_processing`), after
a model directory, a user's note and a stale shard have appeared there. It must
replace the stale shard, keep what is not the job's, and produce the same
vocabularies, counts, dead letters and transformed examples. Shards may be
cut differently between runs, so examples are compared as sorted sets of
serialized records.
"""
import json
import os
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import yaml

from features.artifacts import Artifacts
from features.config import load_config
from pipelines.preprocess import run_preprocess
from tests.conftest import SAMPLE_CONFIG

pytestmark = pytest.mark.slow

ROWS = 800
MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
BAD_LINES = ['bad_quote,"1700000000,u1', "bad_short,1700000000,u1"]


def _records(directory: Path) -> list[tuple]:
    """Each example as (ids and labels that must match exactly, floats), sorted.

    Float statistics (means, variances) are sums whose order depends on how
    the workers split the data, so their transformed values may differ in the
    last bits; everything discrete must be identical.
    """
    files = sorted(str(p) for p in directory.glob("*.tfrecord.gz"))
    records = []
    for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        features = tf.train.Example.FromString(serialized.numpy()).features.feature
        exact = tuple((name, tuple(features[name].int64_list.value)) for name in sorted(features))
        floats = tuple((name, tuple(features[name].float_list.value)) for name in sorted(features))
        records.append((exact, floats))
    return sorted(records)


def _assert_same_examples(got: list[tuple], expected: list[tuple]):
    assert len(got) == len(expected)
    assert [exact for exact, _ in got] == [exact for exact, _ in expected]
    for (_, got_floats), (_, expected_floats) in zip(got, expected):
        for (name, values), (_, expected_values) in zip(got_floats, expected_floats):
            np.testing.assert_allclose(values, expected_values, rtol=1e-5, atol=1e-6, err_msg=name)


def _snapshot(root: Path) -> dict:
    """Everything the job decides: counts, vocabularies, the model contract, dead letters, examples."""
    manifest = json.loads((root / "manifest.json").read_text())
    volatile = ("seconds", "rows_per_second")
    assets = root / "transform_fn" / "assets"
    return {
        "manifest": {k: v for k, v in manifest.items() if k not in volatile},
        "vocabularies": {p.name: p.read_bytes() for p in sorted(assets.iterdir())},
        "dead_letters": sorted(line for p in (root / "dead_letter").glob("*.jsonl")
                               for line in p.read_text().splitlines()),
        "train": _records(root / "train"),
        "eval": _records(root / "eval"),
    }


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    from pipelines import synthetic

    workdir = tmp_path_factory.mktemp("rerun")
    logs = workdir / "logs.csv"
    synthetic.write(synthetic.SyntheticSpec(rows=ROWS, seed=9, num_users=60, num_items=50), str(logs))
    with logs.open("a") as handle:
        handle.write("\n".join(BAD_LINES) + "\n")
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["input"]["path"] = str(logs)
    raw["artifacts_dir"] = str(workdir / "artifacts")
    raw["pipeline"].update(engine="beam", num_shards=3, max_bad_fraction=0.05)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_rerun_on_two_worker_processes_gives_identical_artifacts_and_keeps_what_is_not_its_own(config):
    root = config.artifacts
    first = run_preprocess(config, root)
    assert first["rows"]["read"] == ROWS + len(BAD_LINES)
    assert first["dead_letters_by_reason"] == {"unparseable_line": 1, "wrong_column_count": 1}
    single = _snapshot(root)

    (root / "model").mkdir()
    (root / "model" / "weights.index").write_text("a trained model")
    (root / "NOTES.md").write_text("a user's note")
    (root / "train" / "part-99999-of-99999.tfrecord.gz").write_bytes(b"stale shard from an older run")
    run_preprocess(config, root, MULTI_PROCESS)

    rerun = _snapshot(root)
    for split in ("train", "eval"):
        _assert_same_examples(rerun.pop(split), single.pop(split))
    assert rerun == single
    assert (root / "model" / "weights.index").read_text() == "a trained model"
    assert (root / "NOTES.md").read_text() == "a user's note"
    assert not (root / "train" / "part-99999-of-99999.tfrecord.gz").exists()
    assert len(list(Artifacts(root).split_dir("train").glob("*.tfrecord.gz"))) == 3


def test_sdk_worker_processes_inherit_the_legacy_keras_switch(tmp_path):
    def worker_view(_):  # nested, so it is pickled by value: workers cannot import this test module
        import tensorflow as tf

        return f"{os.getpid()} {os.environ.get('TF_USE_LEGACY_KERAS')} {tf.keras.__name__.split('.')[0]}"

    options = beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner", *MULTI_PROCESS])
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline | beam.Create(range(4)) | beam.Map(worker_view)
             | beam.io.WriteToText(str(tmp_path / "views"), shard_name_template=""))
    views = (tmp_path / "views").read_text().split("\n")
    views = [v.split() for v in views if v]
    assert {pid for pid, _, _ in views} != {str(os.getpid())}  # ran in the worker processes
    assert {(switch, keras) for _, switch, keras in views} == {("1", "tf_keras")}
