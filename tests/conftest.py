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
