"""`recsys run` publishes only a blessed model: the steps' order and the exit code, without running them."""
from recsys import cli
from recsys.evaluation.validation import ModelNotBlessed
from tests.conftest import SAMPLE_CONFIG


def _record_steps(monkeypatch, validate):
    called = []
    for name in ("preprocess", "train", "evaluate", "export", "score"):
        monkeypatch.setattr(cli, f"cmd_{name}", lambda args, config, name=name: called.append(name))

    def fake_validate(args, config):
        called.append("validate")
        validate()

    monkeypatch.setattr(cli, "cmd_validate", fake_validate)
    return called


def test_run_validates_before_export_and_stops_when_not_blessed(monkeypatch):
    def refuse():
        raise ModelNotBlessed("ctr auc: drop 0.02 exceeds 0.005")

    called = _record_steps(monkeypatch, refuse)
    assert cli.main(["run", "--config", str(SAMPLE_CONFIG)]) == 3
    assert called == ["preprocess", "train", "evaluate", "validate"]


def test_run_exports_a_blessed_model(monkeypatch):
    called = _record_steps(monkeypatch, lambda: None)
    assert cli.main(["run", "--config", str(SAMPLE_CONFIG)]) == 0
    assert called == ["preprocess", "train", "evaluate", "validate", "export", "score"]


def test_compare_names_a_path_that_is_no_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["compare", "--config", str(SAMPLE_CONFIG), "--models", str(tmp_path / "empty"),
                     str(tmp_path / "empty")]) == 2
    assert f"'{tmp_path / 'empty'}' is neither an exported version" in capsys.readouterr().err
