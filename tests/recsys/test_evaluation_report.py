"""Slices, the HTML report, model comparison and the blessing, on small fixed predictions (no model needed)."""
import json
import math
import re

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from recsys.evaluation import slices
from recsys.evaluation.compare import comparison_table, compare
from recsys.evaluation.evaluate import evaluated_outputs, output_metrics, summary_text
from recsys.evaluation.html_report import render_html
from recsys.evaluation.validation import BLESSED, NOT_BLESSED, decide, write_blessing


def _funnel_data(rows=600, seed=0, noise=0.0):
    """Columns and ESMM-like outputs with known structure; `noise` makes a worse model."""
    rng = np.random.default_rng(seed)
    true_ctr, true_cvr = rng.uniform(0.05, 0.4, rows), rng.uniform(0.05, 0.5, rows)
    click = (rng.random(rows) < true_ctr).astype(np.float32)
    conversion = click * (rng.random(rows) < true_cvr)
    columns = {"click": click, "conversion": conversion.astype(np.float32),
               "dwell_time": (click * rng.gamma(2.0, 10.0, rows)).astype(np.float32),
               "true_ctr": true_ctr, "true_cvr": true_cvr, "true_ctcvr": true_ctr * true_cvr,
               "user_id": rng.integers(1, 60, rows), "device": rng.integers(1, 4, rows)}
    noisy = np.random.default_rng(seed + 1)

    def predicted(truth):
        return np.clip(truth + noisy.normal(0, noise, rows), 0.01, 0.99) if noise else truth

    outputs = {"ctr": predicted(true_ctr), "cvr": predicted(true_cvr), "dwell": np.full(rows, 20.0)}
    outputs["ctcvr"] = outputs["ctr"] * outputs["cvr"]
    return outputs, columns


def test_sliced_metrics_use_each_outputs_sample_space_and_keep_empty_slices(config):
    outputs, columns = _funnel_data()
    columns["click"][columns["device"] == 3] = 0  # device 3: nobody clicks, so CVR has no rows there
    columns["conversion"][columns["device"] == 3] = 0
    found = slices.sliced_metrics(columns["device"].astype(str), evaluated_outputs(config, outputs, columns))
    assert set(found) == {"1", "2", "3"}
    on_one = columns["device"] == 1
    assert found["1"]["ctr"]["auc"] == pytest.approx(roc_auc_score(columns["click"][on_one], outputs["ctr"][on_one]))
    clicked_one = on_one & (columns["click"] > 0)
    assert found["1"]["cvr"]["rows"] == clicked_one.sum()
    assert found["3"]["cvr"]["rows"] == 0 and math.isnan(found["3"]["cvr"]["auc"])
    assert math.isnan(found["3"]["ctr"]["auc"])  # a single class: undefined, not an error
    assert found["1"]["ctr"]["truth_bias"] == pytest.approx(0.0)  # these outputs are the truth


def test_slice_labels_decode_vocabularies_pool_rare_values_and_bucket_numbers(config):
    from features.config import SliceConfig

    values = np.array([1, 1, 2, 3, 3, 3, 9])  # 9 is out of a 3-word vocabulary
    labels = slices.feature_labels(config, SliceConfig(feature="user_city", top_values=2), values,
                                   ["paris", "oslo", "rome"])
    assert list(labels) == ["paris", "paris", "other", "rome", "rome", "rome", "other"]
    hashed = slices.feature_labels(config, SliceConfig(feature="device"), np.array([1, 4]), None)
    assert list(hashed) == ["hash bucket 0", "hash bucket 3"]
    numeric = slices.feature_labels(config, SliceConfig(feature="position", buckets=2),
                                    np.array([-1.0, -0.5, 0.5, 1.0]), None)
    assert list(numeric) == ["q01", "q01", "q02", "q02"]
    assert list(slices.history_labels(np.array([0, 3]))) == ["new", "returning"]
    popularity = slices.popularity_labels(np.array([0] + list(range(1, 21))))
    assert popularity[0] == "unseen in train" and popularity[1] == "d01" and popularity[-1] == "d10"


def _report(config, outputs, columns):
    evaluated = evaluated_outputs(config, outputs, columns)
    return {"rows": len(columns["click"]),
            "tasks": {o["name"]: output_metrics(config, o, columns["user_id"]) for o in evaluated},
            "baselines": {"item_popularity": {"ctr_auc": 0.6}},
            "truth": {"ctr": {"mae": 0.01, "rmse": 0.02, "bias": 0.0}},
            "slices": {"device": slices.sliced_metrics(columns["device"].astype(str), evaluated)},
            "expert_utilisation": {"level1/ctr": {"expert0": 0.7, "expert1": 0.3}}}


def test_html_report_is_self_contained_and_shows_every_metric_and_plot(config):
    outputs, columns = _funnel_data()
    report = _report(config, outputs, columns)
    page = render_html(report, "funnel")
    for text in ("AUC", "GAUC", "log loss", "normalised entropy", "calibration (pred/actual)", "ECE",
                 "RMSE", "MAE", "Precision and recall at thresholds", "single-class groups skipped",
                 "bootstrap interval", "item_popularity", "true probabilities", "By device", "Expert utilisation"):
        assert text in page, text
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert len(images) == 4  # ROC, reliability, metric by device, expert utilisation
    assert "http://" not in page and "https://" not in page and "<script" not in page
    auc = report["tasks"]["ctr"]["auc"]
    low, high = report["tasks"]["ctr"]["intervals"]["auc"]
    assert f"{auc:.4f} [{low:.4f}, {high:.4f}]" in page
    assert "ctr" in summary_text(report) and json.dumps(report)  # the JSON report serialises


def test_report_metrics_follow_the_sample_spaces(config):
    outputs, columns = _funnel_data()
    tasks = _report(config, outputs, columns)["tasks"]
    clicked = columns["click"] > 0
    assert tasks["cvr"]["rows"] == clicked.sum() and tasks["ctr"]["rows"] == len(clicked)
    assert tasks["cvr"]["auc"] == pytest.approx(roc_auc_score(columns["conversion"][clicked],
                                                              outputs["cvr"][clicked]))
    assert tasks["ctcvr"]["auc"] == pytest.approx(roc_auc_score(columns["conversion"], outputs["ctcvr"]))
    assert tasks["dwell"]["rmse"] == pytest.approx(
        np.sqrt(np.mean((columns["dwell_time"][clicked] - 20.0) ** 2)), rel=1e-5)
    assert set(tasks["ctr"]["intervals"]) == {"confidence", "auc", "logloss", "calibration"}


def test_a_worse_candidate_is_refused_and_a_better_one_blessed(config, tmp_path):
    good, columns = _funnel_data(rows=3000)
    worse, _ = _funnel_data(rows=3000, noise=0.25)
    refused = decide(config, compare(config, {"published": good, "candidate": worse}, columns),
                     "candidate", "published")
    assert refused["status"] == NOT_BLESSED
    assert any(r.startswith("ctr auc: drop") for r in refused["reasons"])
    failed = {(c["output"], c["metric"]) for c in refused["checks"] if not c["passed"]}
    assert ("ctr", "auc") in failed and ("dwell", "rmse") not in failed  # dwell scores did not change
    blessed = decide(config, compare(config, {"published": worse, "candidate": good}, columns),
                     "candidate", "published")
    assert blessed["status"] == BLESSED and all(c["passed"] for c in blessed["checks"])
    path = write_blessing(refused, tmp_path)
    assert json.loads(path.read_text())["status"] == NOT_BLESSED


def test_per_task_thresholds_override_the_global_ones(raw_config):
    from features.config import parse_config

    raw_config["evaluation"]["validation"] = {"max_auc_drop": 0.0, "max_logloss_increase": 0.0,
                                              "tasks": {"cvr": {"max_auc_drop": 1.0, "max_logloss_increase": 9.0}}}
    config = parse_config(raw_config)
    good, columns = _funnel_data(rows=2000)
    cvr_only_worse = dict(good, cvr=_funnel_data(rows=2000, noise=0.3)[0]["cvr"])
    cvr_only_worse["ctcvr"] = good["ctcvr"]
    decision = decide(config, compare(config, {"old": good, "new": cvr_only_worse}, columns), "new", "old")
    assert decision["status"] == BLESSED, decision["reasons"]


def test_comparison_table_marks_real_deltas(config):
    good, columns = _funnel_data(rows=3000)
    worse, _ = _funnel_data(rows=3000, noise=0.25)
    result = compare(config, {"v1": good, "v2": worse, "v1-again": good}, columns)
    ctr = result["outputs"]["ctr"]
    assert ctr["deltas"]["v2"]["auc"]["significant"] and ctr["deltas"]["v2"]["auc"]["delta"] < 0
    assert not ctr["deltas"]["v1-again"]["auc"]["significant"]
    table = comparison_table(result)
    assert "baseline: v1" in table and "*" in table and table.count("\n") >= 12


def test_per_task_entries_keep_the_global_values_they_do_not_set(raw_config):
    from features.config import parse_config
    from recsys.evaluation.validation import _thresholds

    raw_config["evaluation"]["validation"] = {"max_auc_drop": 0.002, "max_logloss_increase": 0.05,
                                              "tasks": {"cvr": {"max_auc_drop": 0.01}}}
    config = parse_config(raw_config)
    assert _thresholds(config, "cvr").max_auc_drop == 0.01
    assert _thresholds(config, "cvr").max_logloss_increase == 0.05
    assert _thresholds(config, "ctr").max_auc_drop == 0.002


def test_comparing_a_model_without_a_configured_output_is_a_clear_error(config):
    from features.errors import RecsysError

    good, columns = _funnel_data(rows=200)
    partial = {name: good[name] for name in ("ctr", "cvr")}
    with pytest.raises(RecsysError, match="model 'old' has no output dwell"):
        compare(config, {"old": partial, "new": good}, columns)


def test_the_summary_keeps_long_task_names_apart_from_their_sample_space():
    """Census-Income's 'never_married' ran into 'all' in a fixed 10-character column."""
    task = {"sample_space": "all", "rows": 10, "auc": 0.9, "logloss": 0.1}
    text = summary_text({"rows": 10, "split": "test", "tasks": {"never_married": task}})
    assert "evaluated 10 test rows" in text and "never_married  all" in text
