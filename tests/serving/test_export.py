"""Version publishing: integer versions, atomic renames, retention (TF Serving's directory contract)."""
from serving import export
from serving.export import _publish, _retire_old_versions, _versions
from serving.scoring import latest_version


def _staged(model_dir, name):
    staging = model_dir / f".staging-{name}"
    staging.mkdir(parents=True)
    (staging / "saved_model.pb").write_text(name)
    return staging


def test_versions_count_up_and_the_newest_is_served(tmp_path):
    for name in ("a", "b", "c"):
        _publish(_staged(tmp_path, name), tmp_path)
    assert _versions(tmp_path) == [1, 2, 3]
    assert latest_version(tmp_path) == tmp_path / "3"
    assert (tmp_path / "3" / "saved_model.pb").read_text() == "c"
    assert not list(tmp_path.glob(".staging-*"))


def test_a_version_taken_by_another_exporter_is_never_overwritten(tmp_path, monkeypatch):
    _publish(_staged(tmp_path, "first"), tmp_path)
    staged = _staged(tmp_path, "second")
    # Another exporter publishes version 2 after this one looked at the versions.
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "saved_model.pb").write_text("someone else's")
    looks = iter([[1], [1, 2]])
    monkeypatch.setattr(export, "_versions", lambda model_dir: next(looks))
    assert _publish(staged, tmp_path) == tmp_path / "3"
    assert (tmp_path / "2" / "saved_model.pb").read_text() == "someone else's"
    assert (tmp_path / "3" / "saved_model.pb").read_text() == "second"


def test_old_versions_are_retired_and_hidden_directories_are_ignored(tmp_path):
    for name in "abcde":
        _publish(_staged(tmp_path, name), tmp_path)
    (tmp_path / ".staging-in-progress").mkdir()
    _retire_old_versions(tmp_path, keep=2)
    assert _versions(tmp_path) == [4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging-in-progress", "4", "5"]


def test_versions_a_label_or_a_specific_policy_serves_are_never_retired(tmp_path):
    for name in "abcde":
        _publish(_staged(tmp_path, name), tmp_path)
    _retire_old_versions(tmp_path, keep=2, pinned=frozenset({1}))
    assert _versions(tmp_path) == [1, 4, 5]
