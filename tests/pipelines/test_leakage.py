"""Label leakage: a feature that determines a binary label is refused, an honest id is not."""
import numpy as np
import pytest

from features.config import parse_config
from features.errors import RecsysError
from pipelines.leakage import LeakageError, check_label_leakage, single_feature_auc

ROWS = 2000


def _config(features: list[dict]):
    return parse_config({
        "name": "leak",
        "input": {"path": "rows.csv"},
        "columns": [{"name": "user_id", "type": "string"}, {"name": "amount", "type": "float"},
                    {"name": "segment", "type": "string"}, {"name": "derived", "type": "string"},
                    {"name": "derived_number", "type": "float"},
                    {"name": "click", "type": "int"}, {"name": "conversion", "type": "int"}],
        "features": [{"group": "user", **f} for f in features],
        "tasks": [{"name": "ctr", "label": "click"},
                  {"name": "cvr", "label": "conversion", "sample_space": "ctr"}],
        "export": {"model_name": "leak"},
    })


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(3)
    click = rng.random(ROWS) < 0.3
    conversion = click & (rng.random(ROWS) < 0.4)
    return [{"user_id": f"u{i}", "amount": float(rng.normal()), "segment": f"s{rng.integers(5)}",
             "derived": "", "derived_number": 0.0, "click": int(c), "conversion": int(v)}
            for i, (c, v) in enumerate(zip(click, conversion))]


HONEST = [{"name": "user_id", "transform": "vocabulary"}, {"name": "amount", "transform": "zscore"},
          {"name": "segment", "transform": "vocabulary"}]


def test_honest_features_and_a_one_row_per_value_id_pass(rows):
    check_label_leakage(_config(HONEST), rows)


def test_an_id_with_a_few_repeats_still_passes(rows):
    # ~1.3 rows per id: many ids are pure by chance, which says nothing about the label
    repeated = [dict(row, user_id=f"u{i % 1500}") for i, row in enumerate(rows)]
    check_label_leakage(_config(HONEST), repeated)


def test_a_copy_of_the_label_is_refused_naming_feature_and_label(rows):
    leaked = [dict(row, derived_number=float(row["click"])) for row in rows]
    config = _config(HONEST + [{"name": "clicked", "column": "derived_number", "transform": "zscore"}])
    with pytest.raises(LeakageError) as err:
        check_label_leakage(config, leaked)
    message = str(err.value)
    assert "feature 'clicked' (column 'derived_number')" in message and "label 'click'" in message
    assert "user_id" not in message and isinstance(err.value, RecsysError)


def test_a_monotone_function_of_the_label_with_noise_is_refused(rows):
    rng = np.random.default_rng(0)
    leaked = [dict(row, derived_number=row["click"] * 10 + float(rng.random())) for row in rows]
    config = _config(HONEST + [{"name": "score", "column": "derived_number", "transform": "log_zscore"}])
    with pytest.raises(LeakageError, match="single-feature AUC is 1.0000"):
        check_label_leakage(config, leaked)


def test_a_label_derived_bucket_column_is_refused(rows):
    # six bucket codes, three reachable from each class: not monotone, but every code is pure
    rng = np.random.default_rng(1)
    leaked = [dict(row, derived=f"b{row['click'] * 3 + int(rng.integers(3))}") for row in rows]
    config = _config(HONEST + [{"name": "bucket", "column": "derived", "transform": "vocabulary"}])
    with pytest.raises(LeakageError, match="feature 'bucket' .*label 'click'.*each of its 6 values"):
        check_label_leakage(config, leaked)


def test_the_cvr_label_is_judged_on_clicked_rows(rows):
    # 'derived' is the conversion on clicked rows and random elsewhere: over all rows each value
    # holds both conversion classes, within CVR's sample space it determines the label
    rng = np.random.default_rng(5)
    leaked = [dict(row, derived=f"c{row['conversion'] if row['click'] else rng.integers(2)}") for row in rows]
    config = _config(HONEST + [{"name": "outcome", "column": "derived", "transform": "vocabulary"}])
    with pytest.raises(LeakageError) as err:
        check_label_leakage(config, leaked)
    assert "label 'conversion' of task 'cvr'" in str(err.value)


def test_a_useful_but_imperfect_feature_passes(rows):
    rng = np.random.default_rng(2)
    informative = [dict(row, derived_number=row["click"] + float(rng.normal(0, 0.5))) for row in rows]
    config = _config(HONEST + [{"name": "signal", "column": "derived_number", "transform": "zscore"}])
    check_label_leakage(config, informative)


def test_single_feature_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(4)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg))
    assert single_feature_auc(scores, labels) == pytest.approx(pairwise)
