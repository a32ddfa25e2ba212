from pathlib import Path

import pytest

from features.config import ConfigError, load_config, parse_config
from tests.conftest import SAMPLE_CONFIG


def _error(raw) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return str(caught.value)


def test_sample_config_loads_and_resolves_input_relative_to_the_file():
    config = load_config(SAMPLE_CONFIG)
    assert config.input.path == (SAMPLE_CONFIG.parent / "synthetic_sample.csv.gz").as_posix()
    assert config.output_names == ["ctr", "cvr", "dwell", "ctcvr"]
    assert "click" not in config.feature_columns and "true_ctr" not in config.feature_columns


def test_unknown_key_is_named_with_a_suggestion(raw_config):
    raw_config["features"][5]["trasform"] = raw_config["features"][5].pop("transform")
    message = _error(raw_config)
    assert "features[5] (item_id).trasform: unknown key; did you mean 'transform'?" in message


def test_missing_section_and_bad_values_are_named(raw_config):
    del raw_config["export"]
    raw_config["training"]["batch_size"] = 0
    raw_config["model"]["structure"] = "esmn"
    message = _error(raw_config)
    assert "export: required key is missing" in message
    assert "training.batch_size" in message and "greater than 0" in message
    assert "model.structure" in message and "esmn" in message


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["tasks"][0].update(label="clicks"), "tasks[0] (ctr).label: no column named 'clicks'"),
    (lambda r: r["tasks"][1].update(sample_space="cta"), "tasks[1] (cvr).sample_space: no task named 'cta'"),
    (lambda r: r["features"].append({"name": "leak", "column": "click", "group": "user",
                                     "transform": "zscore"}), "would leak"),
    (lambda r: r["features"].append({"name": "t", "column": "true_ctr", "group": "item",
                                     "transform": "zscore"}), "truth would leak"),
    (lambda r: r["features"][0].update(transform="zscore"), "'zscore' needs a column of type int or float"),
    (lambda r: r["features"][10].pop("hash_buckets"), "features[10] (device).hash_buckets: required"),
    (lambda r: r["features"][9].pop("max_length"), "features[9] (item_tags).max_length: required"),
    (lambda r: r["sequences"][0].update(item_feature="item_tags"), "single-valued vocabulary"),
    (lambda r: r["model"]["esmm"].update(cvr_task="dwell"), "model.esmm.cvr_task: 'dwell' must be a binary"),
    (lambda r: r["split"].update(key="session"), "split.key: no column named 'session'"),
    (lambda r: r["evaluation"]["truth"].update(like="true_ctr"), "evaluation.truth.like"),
])
def test_cross_references_are_checked(raw_config, edit, expected):
    edit(raw_config)
    assert expected in _error(raw_config)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_a_config_can_start_from_a_base_and_override_parts(tmp_path):
    (tmp_path / "base.yaml").write_text(SAMPLE_CONFIG.read_text().replace(
        "synthetic_sample.csv.gz", str(SAMPLE_CONFIG.parent / "synthetic_sample.csv.gz")))
    (tmp_path / "child.yaml").write_text(
        "base: base.yaml\nmodel: {backbone: mmoe, experts: {num_experts: 6}}\ntasks: [{name: ctr, label: click}]\n"
        "model_esmm_off: 1\n")
    with pytest.raises(ConfigError, match="model_esmm_off: unknown key"):
        load_config(tmp_path / "child.yaml")
    (tmp_path / "child.yaml").write_text(
        "base: base.yaml\nmodel: {backbone: mmoe, experts: {num_experts: 6}}\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.model.backbone == "mmoe" and config.model.experts.num_experts == 6
    assert config.model.experts.units == [64] and config.model.tower_units == [128, 64]  # kept from the base
    assert config.name == "synthetic_funnel"


def test_every_bundled_config_loads():
    for path in SAMPLE_CONFIG.parent.glob("*.yaml"):
        assert load_config(path).input.path.endswith("synthetic_sample.csv.gz")


@pytest.mark.parametrize("ssl, expected", [
    ({"enabled": True, "item_features": ["item_id", "item_colour"]}, "ssl.item_features[1]: no feature named 'item_colour'"),
    ({"enabled": True, "item_features": ["item_id"]}, "at least two item features"),
    ({"enabled": True, "item_features": ["item_price", "item_id"]}, "'item_price', keys the item corpus"),
    ({"enabled": True, "strategy": "random"}, "ssl.strategy"),
    ({"enabled": True, "mask_rate": 1.0}, "ssl.mask_rate"),
])
def test_ssl_section_errors_name_the_key(raw_config, ssl, expected):
    raw_config["ssl"] = ssl
    assert expected in _error(raw_config)


def test_ssl_item_features_default_to_the_item_group(config):
    assert config.ssl_item_features == ["item_id", "item_category", "item_brand", "item_price", "item_tags"]
    assert not config.ssl.enabled


def test_ssl_needs_the_beam_engine_that_writes_its_item_corpus():
    raw = load_config(SAMPLE_CONFIG.parent / "synthetic_ssl.yaml").model_dump()
    raw["pipeline"]["engine"] = "columnar"
    with pytest.raises(ConfigError, match="ssl.enabled: .*pipeline.engine 'beam'"):
        parse_config(raw)


def test_the_dense_update_limit_follows_the_optimiser_and_compilation_unless_set(raw_config):
    def limit(**training):
        raw_config["training"] = {**raw_config["training"], **training}
        return parse_config(raw_config).training.effective_dense_update_max_rows

    assert limit() == 200_000  # Adam: the dense update is the faster one up to this size
    assert limit(optimizer="lazy_adam", jit_compile=True) == 200_000  # XLA compiles the sparse path poorly
    assert limit(optimizer="lazy_adam", jit_compile=False) == 20_000
    assert limit(optimizer="lazy_adam", jit_compile=False, dense_update_max_rows=500) == 500


def test_a_trained_model_directory_carries_its_resolved_config(config, tmp_path, monkeypatch):
    from features.config import MODEL_CONFIG_FILE, load_config, write_model_config

    monkeypatch.chdir(tmp_path)  # relative paths become absolute, so the directory works from anywhere
    relative = config.model_copy(update={"artifacts_dir": "artifacts/x"})
    write_model_config(relative, tmp_path / "model")
    reloaded = load_config(tmp_path / "model" / MODEL_CONFIG_FILE)
    assert reloaded.artifacts == tmp_path / "artifacts" / "x" and reloaded.model_dir == tmp_path / "model"
    assert reloaded.features == config.features and reloaded.model == config.model
    assert Path(reloaded.input.path).is_absolute()


@pytest.mark.parametrize("model, units", [
    ({"backbone": "shared_bottom"}, [256, 128]),
    *[({"backbone": name}, []) for name in ("mmoe", "ple", "cgc", "adatt")],
    ({"backbone": "shared_bottom", "bottom": "dtrn"}, []),
    ({"backbone": "mmoe", "bottom_units": [32]}, [32]),
    ({"backbone": "shared_bottom", "bottom_units": []}, []),
])
def test_an_unset_bottom_is_the_paper_form_of_the_backbone(raw_config, model, units):
    """The mixtures' experts read the input itself, as in their papers; Shared-Bottom is its MLP."""
    raw_config["model"] = {key: value for key, value in raw_config["model"].items() if key != "bottom_units"}
    raw_config["model"].update(model)
    assert parse_config(raw_config).model.bottom_units == units
