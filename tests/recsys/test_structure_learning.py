"""Both head structures learn a click → conversion funnel whose true probabilities are known.

Impressions x ~ N(0, I); a click happens with p_ctr(x) and, independently, the
user would convert if clicked with p_cvr(x) (both logistic in x, along
directions with cosine -0.6: what draws clicks converts less); the logged
conversion is click × that. The ranker (the real one, on numeric inputs, with
no pipeline) is trained as a config would train it:

- independent: CTR on every impression, CVR on clicked impressions only;
- ESMM (Ma et al., SIGIR 2018): CTR and CTCVR = CTR × CVR on every impression
  and no CVR loss, so CVR is learnt over the entire impression space.

A constant score has AUC 0.5 and the true probability has the oracle's AUC;
each output must recover at least 85% of the oracle's lift over the constant,
measured where the structure claims it: independent CVR on held-out clicked
impressions, ESMM's CVR on every held-out impression (against whether the
user would have converted had they clicked, which only synthetic data knows).

What this does not show: that ESMM beats a clicked-only CVR model over all
impressions. Here conversion depends on x alone, which the model sees, so
clicked rows are a biased sample of x but not of the conversion given x; a
review found an independent head's CVR scores over every impression as well
(lift 0.986/0.973 against ESMM's 0.955/0.908 on seeds 0/1). Showing the
selection-bias correction needs a hidden factor that drives both click and
conversion, and several seeds: a benchmark's job (the last one found the gap
within seed noise on 40k rows), not this test's.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf

from recsys.models.ranker import MultiTaskRanker

SEEDS = (0, 1)
INPUT_DIM, TRAIN_ROWS, TEST_ROWS = 8, 8192, 4096
MODEL_INPUTS = [{"name": f"x{i}", "kind": "numeric", "group": "user", "table": None, "vocabulary_size": None,
                 "embedding_dim": None, "length": None, "behavior": None} for i in range(INPUT_DIM)]
TASKS = [{"name": "ctr", "label": "click", "type": "binary", "sample_space": None, "weight": 1.0},
         {"name": "cvr", "label": "conversion", "type": "binary", "sample_space": "ctr", "weight": 1.0}]
ESMM = {"ctr_task": "ctr", "cvr_task": "cvr", "ctcvr_name": "ctcvr"}
LIFT = 0.85


def funnel(seed: int, rows: int) -> tuple[dict, dict]:
    """Model features with their logged labels, and the truth: p_ctr, p_cvr, would-convert."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, INPUT_DIM)).astype("float32")
    u1, u2 = np.linalg.qr(rng.normal(size=(INPUT_DIM, 2)))[0].T  # orthonormal
    w_ctr, w_cvr = 2 * u1, 2 * (-0.6 * u1 + 0.8 * u2)  # what draws clicks converts less: cosine -0.6
    p_ctr, p_cvr = 1 / (1 + np.exp(1.0 - x @ w_ctr)), 1 / (1 + np.exp(0.5 - x @ w_cvr))
    click = (rng.random(rows) < p_ctr).astype("float32")
    would_convert = (rng.random(rows) < p_cvr).astype("float32")
    features = {spec["name"]: x[:, i] for i, spec in enumerate(MODEL_INPUTS)}
    features.update(click=click, conversion=click * would_convert)
    return features, {"p_ctr": p_ctr, "p_cvr": p_cvr, "would_convert": would_convert}


def auc(labels, scores) -> float:
    metric = tf.keras.metrics.AUC(num_thresholds=2000)
    metric.update_state(labels, scores)
    return float(metric.result())


def lift(labels, scores, oracle_scores) -> float:
    """The share of the oracle's AUC gain over a constant score that `scores` recovers."""
    return (auc(labels, scores) - 0.5) / (auc(labels, oracle_scores) - 0.5)


@functools.cache
def trained(structure: str, seed: int) -> tuple[dict, dict, dict]:
    """Held-out (outputs, logged labels, truth) of a ranker trained for four epochs."""
    features, truth = funnel(seed, TRAIN_ROWS + TEST_ROWS)
    train = {name: column[:TRAIN_ROWS] for name, column in features.items()}
    test = {name: column[TRAIN_ROWS:] for name, column in features.items()}
    tf.keras.utils.set_random_seed(seed)
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, structure=structure, esmm=ESMM, bottom_units=[16],
                             tower_units=[8])
    ranker.compile(optimizer=tf.keras.optimizers.Adam(0.01), steps_per_execution=16)
    ranker.fit(tf.data.Dataset.from_tensor_slices(train).shuffle(TRAIN_ROWS, seed=seed).batch(256),
               epochs=4, verbose=0)
    outputs = {name: scores.numpy() for name, scores in ranker(test).items()}
    return outputs, test, {name: column[TRAIN_ROWS:] for name, column in truth.items()}


@pytest.mark.parametrize("seed", SEEDS)
def test_independent_heads_learn_ctr_and_cvr_on_its_clicked_space(seed):
    outputs, logged, truth = trained("independent", seed)
    assert lift(logged["click"], outputs["ctr"], truth["p_ctr"]) >= LIFT
    clicked = logged["click"] == 1
    assert lift(logged["conversion"][clicked], outputs["cvr"][clicked], truth["p_cvr"][clicked]) >= LIFT


@pytest.mark.parametrize("seed", SEEDS)
def test_esmm_learns_cvr_over_every_impression_without_a_cvr_loss(seed):
    outputs, logged, truth = trained("esmm", seed)
    assert lift(logged["click"], outputs["ctr"], truth["p_ctr"]) >= LIFT
    assert lift(truth["would_convert"], outputs["cvr"], truth["p_cvr"]) >= LIFT
    assert lift(logged["conversion"], outputs["ctcvr"], truth["p_ctr"] * truth["p_cvr"]) >= LIFT
