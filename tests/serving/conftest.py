"""One small exported model per test session, and the stand-in server serving it on loopback.

The transform is analysed with tf.Transform on a few hundred generated rows
(no full preprocessing run) and the ranker is untrained: serving must give
the same scores whatever the weights, so training would only cost time. The
sample config keeps one feature of each kind (vocabulary, hash, numeric,
multi-valued, behaviour sequence) and all its tasks: every tf.Transform
analyzer is a Beam stage, and the end-to-end test already exports the full set.
"""
import copy

import pytest

from tests.conftest import SAMPLE_CONFIG

MODEL_NAME = "served"
ROWS = 300


@pytest.fixture(scope="session")
def served_config(tmp_path_factory, _sample_raw):
    from features.config import parse_config
    from pipelines import synthetic

    workdir = tmp_path_factory.mktemp("serving")
    raw = copy.deepcopy(_sample_raw)
    synthetic.write(synthetic.SyntheticSpec(rows=ROWS, seed=5), str(workdir / "logs.csv"))
    raw["input"]["path"] = str(workdir / "logs.csv")
    raw["artifacts_dir"] = str(workdir / "artifacts")
    raw["export"].update(model_name=MODEL_NAME, base_path=str(workdir / "models"))
    kept = {"user_id", "user_gender", "item_id", "item_price", "item_tags", "device", "hour"}
    raw["features"] = [feature for feature in raw["features"] if feature["name"] in kept]
    raw["sequences"] = raw["sequences"][:1]
    raw["evaluation"]["slices"] = [s for s in raw["evaluation"].get("slices", []) if s.get("feature", "") in kept]
    raw["serving"] = {"max_batch_size": 64, "warmup_rows": 4}
    return parse_config(raw, source=str(SAMPLE_CONFIG))


@pytest.fixture(scope="session")
def sample_rows(served_config):
    """Validated raw rows of the generated log (typed values, labels included)."""
    from pipelines.sources import read_sample_rows
    from pipelines.validation import RowValidator

    validate = RowValidator(served_config)
    return [validate(row) for row in read_sample_rows(served_config, ROWS)]


@pytest.fixture(scope="session")
def exported_version(served_config, sample_rows):
    """The directory of version 1: transform analysed on the rows, untrained ranker, warm-up from 4 rows."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata

    from features.examples import to_example
    from features.schema import raw_feature_spec
    from features.transform import make_preprocessing_fn, model_inputs
    from recsys.models.ranker import build_ranker
    from serving.export import export_model

    transform_dir = served_config.artifacts
    metadata = dataset_metadata.DatasetMetadata.from_feature_spec(raw_feature_spec(served_config))
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=str(transform_dir / "tmp")):
        transform_fn = ((pipeline | beam.Create(sample_rows), metadata)
                        | tft_beam.AnalyzeDataset(make_preprocessing_fn(served_config)))
        _ = transform_fn | tft_beam.WriteTransformFn(str(transform_dir))
    transform_output = tft.TFTransformOutput(str(transform_dir))
    sizes = {f.name: transform_output.vocabulary_size_by_name(f.name)
             for f in served_config.features if f.transform == "vocabulary"}
    ranker = build_ranker(served_config, [vars(spec) for spec in model_inputs(served_config, sizes)])
    warmup = [to_example(served_config, row) for row in sample_rows[:served_config.serving.warmup_rows]]
    return export_model(ranker, served_config, transform_dir, warmup_examples=warmup)


@pytest.fixture(scope="session")
def in_process(exported_version):
    from serving.scoring import ExportedModel

    return ExportedModel(exported_version)


@pytest.fixture(scope="session")
def server(served_config, exported_version):
    from serving.standin.registry import single_model_config
    from serving.standin.server import StandInServer

    stand_in = StandInServer(single_model_config(MODEL_NAME, exported_version.parent), host="127.0.0.1",
                             rest_port=0, grpc_port=0, max_batch_size=served_config.serving.max_batch_size,
                             poll_seconds=0.3, workers=4)
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def rest(server, served_config):
    from serving.clients import RestClient, column_types

    with RestClient(f"http://127.0.0.1:{server.rest_port}", MODEL_NAME, timeout=60,
                    column_types=column_types(served_config)) as client:
        yield client


@pytest.fixture
def grpc_client(server, served_config):
    from serving.clients import GrpcClient, column_types

    with GrpcClient(f"127.0.0.1:{server.grpc_port}", MODEL_NAME, timeout=60,
                    column_types=column_types(served_config)) as client:
        yield client


TINY_MODEL = "half"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A SavedModel of a few tiny signatures (TF Serving's half_plus_two, grown a little), written in seconds:
    `serving_default` (x → y = x/2 + 2), `multi` (three inputs of three dtypes), `classify_x` and `regress_x`
    (serialized tf.Examples with a float feature "x")."""
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def predict(self, x):
            return {"y": x * 0.5 + 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None], tf.string),
                                      tf.TensorSpec([None], tf.int64)])
        def multi(self, a, b, c):
            return {"total": tf.reduce_sum(a, axis=1), "echo_bytes": b, "doubled": c * 2}

        def _x(self, inputs):
            return tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def classify(self, inputs):
            p = tf.sigmoid(self._x(inputs))
            return {"scores": tf.stack([1.0 - p, p], axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def regress(self, inputs):
            return {"outputs": self._x(inputs) * 0.5 + 2.0}

    module = HalfPlusTwo()
    base = tmp_path_factory.mktemp("tiny") / TINY_MODEL
    tf.saved_model.save(module, str(base / "1"), signatures={
        "serving_default": module.predict, "multi": module.multi,
        "classify_x": module.classify, "regress_x": module.regress})
    return base


def tiny_stand_in(model_dir, limits=None):
    """A stand-in (not started; use it as a context manager) for the tiny model on free loopback ports, with the
    label `stable` → version 1 and the given connection limits (the defaults when None)."""
    from serving.standin.connections import ConnectionLimits
    from serving.standin.registry import single_model_config
    from serving.standin.server import StandInServer

    config = single_model_config(TINY_MODEL, model_dir)
    config.model_config_list.config[0].version_labels["stable"] = 1
    return StandInServer(config, host="127.0.0.1", rest_port=0, grpc_port=0, max_batch_size=64, poll_seconds=30,
                         workers=2, limits=limits or ConnectionLimits())


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir):
    """The stand-in serving the tiny model on loopback, with the label `stable` → version 1."""
    with tiny_stand_in(tiny_model_dir) as stand_in:
        yield stand_in
