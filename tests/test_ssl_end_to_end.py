"""SSL through the command line on a tiny generated log: the pipeline writes the item corpus and the
mutual information, CFM training draws catalogue items, and the export is the plain ranker."""
import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

from features.artifacts import Artifacts
from features.config import load_config
from recsys.cli import main
from tests.conftest import SAMPLE_CONFIG

pytestmark = pytest.mark.slow

ROWS = 800


@pytest.fixture(scope="module")
def ssl_config_path(tmp_path_factory):
    from pipelines import synthetic

    workdir = tmp_path_factory.mktemp("ssl")
    synthetic.write(synthetic.SyntheticSpec(rows=ROWS, seed=3), str(workdir / "logs.csv"))
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["input"]["path"] = str(workdir / "logs.csv")
    raw["artifacts_dir"] = str(workdir / "artifacts")
    raw["pipeline"]["num_shards"] = 1
    raw["training"].update(epochs=1, batch_size=64)
    raw["export"]["base_path"] = str(workdir / "serving")
    raw["ssl"] = {"enabled": True, "strategy": "cfm", "item_sampling": "catalogue", "batch_size": 32}
    path = workdir / "ssl.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["preprocess", "--config", str(path)]) == 0
    return path


def _records(files, spec):
    dataset = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP").batch(10_000)
    return {name: np.concatenate([tf.io.parse_example(b, spec)[name].numpy() for b in dataset]) for name in spec}


def test_pipeline_writes_one_corpus_row_per_training_item_and_the_mi_matrix(ssl_config_path):
    from recsys.data import transformed_feature_spec

    config = load_config(ssl_config_path)
    artifacts = Artifacts.of(config)
    manifest = artifacts.manifest()
    spec = transformed_feature_spec(artifacts.root)
    corpus = _records(sorted(artifacts.item_corpus_dir.glob("*.tfrecord.gz")), {"item_id": spec["item_id"]})
    train = _records(sorted(artifacts.split_dir("train").glob("*.tfrecord.gz")), {"item_id": spec["item_id"]})
    assert sorted(corpus["item_id"]) == sorted(set(train["item_id"]))
    assert manifest["ssl"]["items"] == len(corpus["item_id"])
    document = json.loads(artifacts.item_feature_mi_path.read_text())
    assert artifacts.item_feature_mi_plot_path.stat().st_size > 0
    assert document["features"] == config.ssl_item_features == manifest["ssl"]["item_features"]
    assert document["rows"] == manifest["rows"]["train"]
    matrix = np.array(document["mutual_information"])
    np.testing.assert_allclose(matrix, matrix.T)
    # the item id determines its category, brand and price: MI(id, x) = H(x), the diagonal
    # (not its tags: a tag drawn from an item's several tags stays uncertain given the item)
    single_valued = [config.ssl_item_features.index(n) for n in ("item_category", "item_brand", "item_price")]
    np.testing.assert_allclose(matrix[0, single_valued], np.diag(matrix)[single_valued], rtol=1e-4)
    tags = config.ssl_item_features.index("item_tags")
    assert matrix[0, tags] < matrix[tags, tags]


def test_cfm_training_logs_the_ssl_loss_and_exports_the_plain_ranker(ssl_config_path):
    from recsys.models.ranker import build_ranker
    from recsys.training import load_trained_ranker, ssl_task_from_artifacts
    from serving.scoring import latest_version

    config = load_config(ssl_config_path)
    assert main(["train", "--config", str(ssl_config_path), "--quiet"]) == 0
    history = json.loads((config.model_dir / "training.json").read_text())["history"]
    # validation measures the contrastive loss on the eval impressions' items, outside the total loss
    assert history["ssl_loss"][0] > 0 and history["val_ssl_loss"][0] > 0
    assert main(["export", "--config", str(ssl_config_path)]) == 0
    version_dir = latest_version(config.served_model_dir)
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    assert set(signature.structured_outputs) == {"ctr", "cvr", "dwell", "ctcvr"}
    assert list(signature.structured_input_signature[1]) == ["examples"]
    saved = [name for name, _ in tf.train.list_variables(str(version_dir / "variables" / "variables"))
             if name.startswith("ranker/variables/")]
    plain = load_trained_ranker(config)
    with_ssl = build_ranker(config, Artifacts.of(config).manifest()["model_inputs"],
                            ssl_task_from_artifacts(config, Artifacts.of(config), Artifacts.of(config).manifest()))
    assert plain.self_supervised is None
    assert len(saved) == len(plain.variables) < len(with_ssl.variables)
