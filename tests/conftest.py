"""Shared fixtures: the sample config, as a mapping tests can edit and as a validated Config."""
import copy
import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "data_samples" / "synthetic.yaml"


@pytest.fixture(scope="session")
def _sample_raw():
    return yaml.safe_load(SAMPLE_CONFIG.read_text())


@pytest.fixture
def raw_config(_sample_raw):
    """A fresh, editable copy of the sample config mapping."""
    return copy.deepcopy(_sample_raw)


@pytest.fixture
def config(raw_config):
    from features.config import parse_config

    return parse_config(raw_config)


@pytest.fixture(scope="session")
def small_artifacts(tmp_path_factory):
    """A small generated log run through the real Beam job once: (workdir with logs.csv, artifacts dir)."""
    from features.config import parse_config
    from pipelines import synthetic
    from pipelines.preprocess import run_preprocess

    workdir = tmp_path_factory.mktemp("small_artifacts")
    synthetic.write(synthetic.SyntheticSpec(rows=1200, seed=5, num_users=100, num_items=80), str(workdir / "logs.csv"))
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["input"]["path"] = str(workdir / "logs.csv")
    raw["artifacts_dir"] = str(workdir / "artifacts")
    config = parse_config(raw)
    run_preprocess(config, config.artifacts)
    return workdir, config.artifacts
