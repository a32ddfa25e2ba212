"""An exporter killed while staging leaves no visible version, and the next export cleans up after it."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from serving import export
from serving.export import _versions, remove_abandoned_staging
from serving.scoring import latest_version

ROOT = Path(__file__).resolve().parents[2]

# Exports a (stand-in) model whose save writes half a SavedModel and then the process is SIGKILLed.
KILLED_DURING_STAGING = """
import os, signal, sys
from pathlib import Path
import tensorflow as tf
from features.config import parse_config
from serving import export
import yaml

def save_half_and_die(module, path, signatures=None):
    Path(path, "variables").mkdir(parents=True)
    Path(path, "saved_model.pb").write_bytes(b"half a model")
    os.kill(os.getpid(), signal.SIGKILL)

raw = yaml.safe_load(open(sys.argv[1]))
raw["export"]["base_path"] = sys.argv[2]
export.ServingModule = lambda *args: type("Module", (), {"serve_examples": None})()
export.tft.TFTransformOutput = lambda path: None
export.signatures.build_signatures = lambda module, config: {}
tf.saved_model.save = save_half_and_die
export.export_model(None, parse_config(raw), "unused")
"""


@pytest.mark.slow
def test_a_killed_export_leaves_no_version_and_the_next_export_removes_its_staging(config, tmp_path, monkeypatch):
    from tests.conftest import SAMPLE_CONFIG

    base = tmp_path / "serving"
    model_dir = base / config.export.model_name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "saved_model.pb").write_bytes(b"the served model")
    killed = subprocess.run([sys.executable, "-c", KILLED_DURING_STAGING, str(SAMPLE_CONFIG), str(base)],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    [staging] = model_dir.glob(".staging-*")
    assert (staging / "saved_model.pb").read_bytes() == b"half a model"
    assert _versions(model_dir) == [1] and latest_version(model_dir) == model_dir / "1"  # what TF Serving sees

    monkeypatch.setattr(export, "ServingModule", lambda *args: type("Module", (), {"serve_examples": None})())
    monkeypatch.setattr(export.tft, "TFTransformOutput", lambda path: None)
    monkeypatch.setattr(export.signatures, "build_signatures", lambda module, config: {})
    monkeypatch.setattr(export.signatures, "write_method_names", lambda staging, methods: None)
    monkeypatch.setattr(export.tf.saved_model, "save",
                        lambda module, path, signatures=None: Path(path).mkdir() or Path(path, "saved_model.pb")
                        .write_bytes(b"a whole model"))
    config = config.model_copy(update={"export": config.export.model_copy(update={"base_path": str(base)})})
    assert export.export_model(None, config, "unused") == model_dir / "2"
    assert not staging.exists() and sorted(p.name for p in model_dir.iterdir()) == ["1", "2"]


def test_only_staging_of_dead_exporters_on_this_host_is_removed(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    host = socket.gethostname()
    names = {"dead": f".staging-{host}-{finished.pid}-a1", "alive": f".staging-{host}-{os.getpid()}-b2",
             "elsewhere": f".staging-another-host-{finished.pid}-c3", "version": "3"}
    for name in names.values():
        (tmp_path / name).mkdir()
    remove_abandoned_staging(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["alive"], names["elsewhere"], names["version"]])
