"""`ExportedModel.score_features` (raw columns through `predict_features`) scores as `score` (tf.Examples) does."""
import numpy as np
import pytest
import tensorflow as tf

from serving.scoring import ExportedModel
from serving.signatures import FEATURES_SIGNATURE


def test_score_features_gives_the_scores_of_the_same_rows_as_examples(served_config, sample_rows, in_process):
    from features.examples import to_example
    from serving.warmup import warmup_logs

    examples = [to_example(served_config, row) for row in sample_rows[:8]]
    # The warm-up file's predict_features request holds these rows as raw columns, lists joined by separator.
    (request,) = [log.predict_log.request for log in warmup_logs(served_config, examples)
                  if log.predict_log.request.model_spec.signature_name == FEATURES_SIGNATURE]
    by_columns = in_process.score_features({name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()})
    by_examples = in_process.score(examples)
    assert sorted(by_columns) == sorted(by_examples) and by_examples
    for name, scores in by_examples.items():
        np.testing.assert_allclose(by_columns[name], scores, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_savedmodel_without_predict_features_is_named_when_asked_for_it(tiny_model_dir):
    model = ExportedModel(tiny_model_dir / "1")  # loads: serving_default is all `score` needs
    with pytest.raises(ValueError, match=f"{tiny_model_dir / '1'} has no '{FEATURES_SIGNATURE}' signature"):
        model.score_features({"x": np.array([1.0], np.float32)})
