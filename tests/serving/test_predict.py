"""`recsys predict`: both engines score raw files as `serving_default` does, in input order, published atomically."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from recsys import cli

ROWS = 200
BAD_PRICE_ROW = 17  # item_price 'abc': invalid_float
SHORT_LINE_AFTER = 60  # a line with two fields: wrong_column_count
OUTPUTS = ("ctr", "cvr", "dwell", "ctcvr")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, served_config):
    """The generated log's first 200 rows as CSV with two bad lines, and as Parquet with one bad row."""
    workdir = tmp_path_factory.mktemp("predict_inputs")
    lines = Path(served_config.input.path).read_text().splitlines()
    header, body = lines[0], lines[1:ROWS + 1]
    names = header.split(",")
    fields = body[BAD_PRICE_ROW].split(",")
    fields[names.index("item_price")] = "abc"
    body[BAD_PRICE_ROW] = ",".join(fields)
    csv_path = workdir / "logs.csv"
    csv_path.write_text("\n".join([header, *body[:SHORT_LINE_AFTER], "imp_short,1", *body[SHORT_LINE_AFTER:]]) + "\n")
    table = pacsv.read_csv(workdir / "logs.csv", parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _: "skip"),
                           convert_options=pacsv.ConvertOptions(column_types={"item_price": pa.string()}))
    prices = [None if price == "abc" else float(price) for price in table.column("item_price").to_pylist()]
    table = table.set_column(names.index("item_price"), "item_price", pa.array(prices, pa.float64()))
    table = table.cast(pa.schema([pa.field(f.name, pa.large_string() if f.type == pa.string() else f.type)
                                  for f in table.schema]))  # as pandas writes text
    pq.write_table(table, workdir / "logs.parquet", row_group_size=64)
    return csv_path, workdir / "logs.parquet"


@pytest.fixture(scope="module")
def valid_rows(served_config, inputs):
    """(impression id, the model's validated features) of the CSV input's valid rows, in input order."""
    from pipelines.validation import RowError, RowValidator

    validate = RowValidator(served_config, served_config.feature_columns)
    reader = pacsv.read_csv(inputs[0], parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _: "skip"),
                            convert_options=pacsv.ConvertOptions(strings_can_be_null=False,
                                                                 column_types={n: pa.string() for n in
                                                                               served_config.raw_column_names}))
    rows = []
    for raw in reader.to_pylist():
        try:
            rows.append((raw["impression_id"], validate(raw)))
        except RowError:
            continue
    return rows


@pytest.fixture(scope="module")
def expected(served_config, valid_rows, in_process):
    """serving_default's scores of the valid rows, in input order, with their impression ids."""
    from features.examples import to_example

    scores = in_process.score([to_example(served_config, row) for _, row in valid_rows])
    return [impression for impression, _ in valid_rows], {name: scores[name] for name in OUTPUTS}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, served_config):
    """The served config as a YAML file, as the command line reads it."""
    import yaml

    path = tmp_path_factory.mktemp("predict_config") / "config.yaml"
    raw = served_config.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def run_predict(config_file, *args) -> int:
    return cli.main(["predict", "--config", str(config_file), *args])


def read_output(directory: Path, output_format: str = "parquet") -> dict:
    shards = sorted(directory.glob("part-*"))
    if output_format == "parquet":
        table = pa.concat_tables([pq.read_table(shard) for shard in shards])
    elif output_format == "csv":
        table = pa.concat_tables([pacsv.read_csv(shard, convert_options=pacsv.ConvertOptions(
            column_types={"impression_id": pa.string()})) for shard in shards])
    else:
        import tensorflow as tf

        spec = {"impression_id": tf.io.FixedLenFeature([], tf.string),
                **{name: tf.io.FixedLenFeature([], tf.float32) for name in OUTPUTS}}
        records = list(tf.data.TFRecordDataset([str(s) for s in shards], compression_type="GZIP").as_numpy_iterator())
        parsed = tf.io.parse_example(records, spec)
        return {"impression_id": [v.decode() for v in parsed["impression_id"].numpy()],
                **{name: parsed[name].numpy() for name in OUTPUTS}}
    return {name: table.column(name).to_pylist() for name in table.column_names}


def check_scores(found: dict, expected, atol=1e-6):
    impressions, scores = expected
    assert found["impression_id"] == impressions
    for name in OUTPUTS:
        np.testing.assert_allclose(found[name], scores[name], atol=atol, err_msg=name)


@pytest.mark.parametrize("engine", ["inprocess", "beam"])
def test_both_engines_give_serving_defaults_scores_in_input_order_with_dead_letters(
        engine, config_file, inputs, expected, tmp_path):
    output = tmp_path / "predictions"
    assert run_predict(config_file, "--input", str(inputs[0]), "--output", str(output), "--engine", engine,
                       "--keep", "impression_id,click", "--shard-rows", "64") == 0
    assert [p.name for p in sorted(output.glob("part-*"))] == [f"part-00000-0000{i}.parquet" for i in range(4)]
    found = read_output(output)
    check_scores(found, expected)
    assert list(found) == ["impression_id", "click", *OUTPUTS]
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["rows_in"], summary["scored"], summary["dead_letters"]) == (ROWS + 1, ROWS - 1, 2)
    assert summary["dead_letters_by_reason"] == {"invalid_float": 1, "wrong_column_count": 1}
    letters = [json.loads(line) for line in (output / "dead_letter" / "dead_letters.jsonl").read_text().splitlines()]
    assert sorted(letter["reason"] for letter in letters) == ["invalid_float", "wrong_column_count"]
    assert all(letter["file"] == str(inputs[0]) for letter in letters)
    assert not list(tmp_path.glob(".predictions.*")), "staging is removed once published"


@pytest.mark.parametrize("engine", ["inprocess", "beam"])
def test_parquet_input_gives_the_same_scores(engine, config_file, inputs, expected, tmp_path):
    output = tmp_path / "predictions"
    assert run_predict(config_file, "--input", str(inputs[1]), "--output", str(output), "--engine", engine,
                       "--keep", "impression_id") == 0
    check_scores(read_output(output), expected)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["dead_letters_by_reason"] == {"missing_required": 1}  # the Parquet null price


@pytest.mark.parametrize("output_format", ["csv", "tfrecord"])
def test_csv_and_tfrecord_outputs_hold_the_same_predictions(output_format, config_file, inputs, expected, tmp_path):
    output = tmp_path / "predictions"
    assert run_predict(config_file, "--input", str(inputs[0]), "--output", str(output),
                       "--format", output_format, "--keep", "impression_id") == 0
    check_scores(read_output(output, output_format), expected)


def test_existing_output_is_kept_unless_overwrite(config_file, exported_version, inputs, tmp_path, capsys):
    output = tmp_path / "predictions"
    output.mkdir()
    (output / "old.txt").write_text("yesterday's")
    assert run_predict(config_file, "--input", str(inputs[0]), "--output", str(output)) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert run_predict(config_file, "--input", str(inputs[0]), "--output", str(output), "--overwrite") == 0
    assert not (output / "old.txt").exists() and (output / "summary.json").exists()


def test_unknown_kept_column_and_missing_input_are_one_error(config_file, exported_version, inputs, tmp_path, capsys):
    assert run_predict(config_file, "--input", str(inputs[0]), "--output", str(tmp_path / "o"),
                       "--keep", "impression_id,request_id") == 2
    assert "--keep request_id: no such column in" in capsys.readouterr().err
    assert run_predict(config_file, "--input", str(tmp_path / "none*.csv"), "--output", str(tmp_path / "o")) == 2
    assert "no file matches" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_kept_column_is_checked_in_every_parquet_file_and_against_the_config_for_records(
        config_file, exported_version, inputs, tmp_path, capsys):
    """A later Parquet file without the column, or a misspelt name for TFRecord input, is one error, no output."""
    import tensorflow as tf

    parts = tmp_path / "parts"
    parts.mkdir()
    table = pq.read_table(inputs[1])
    pq.write_table(table, parts / "a.parquet")
    pq.write_table(table.drop(["click"]), parts / "b.parquet")
    assert run_predict(config_file, "--input", str(parts / "*.parquet"), "--output", str(tmp_path / "o"),
                       "--keep", "impression_id,click") == 2
    assert f"--keep click: no such column in '{parts / 'b.parquet'}'" in capsys.readouterr().err
    records = tmp_path / "logs.tfrecord"
    with tf.io.TFRecordWriter(str(records)) as writer:
        writer.write(tf.train.Example().SerializeToString())
    assert run_predict(config_file, "--input", str(records), "--output", str(tmp_path / "o"),
                       "--keep", "impresion_id") == 2
    assert "--keep impresion_id: tfrecord records are read by the config's columns" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_file_that_breaks_off_mid_read_fails_the_job_and_publishes_nothing(
        config_file, exported_version, inputs, tmp_path):
    """The read runs a batch ahead on a worker thread: its error reaches the job, which leaves no output behind."""
    import gzip

    data = gzip.compress(Path(inputs[0]).read_bytes() * 50)
    broken = tmp_path / "logs.csv.gz"
    broken.write_bytes(data[:len(data) // 2])  # a copy cut off half way
    output = tmp_path / "predictions"
    with pytest.raises(OSError, match="(?i)gzip|compress|truncat|EOF"):
        run_predict(config_file, "--input", str(broken), "--output", str(output), "--keep", "impression_id")
    assert not output.exists() and not list(tmp_path.glob(".predictions.*"))


_KILLED_AFTER_FIRST_SHARD = """
import os, signal, sys
from pipelines.prediction import output
close = output.ShardWriter.close
def close_then_die(self):
    close(self)
    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-job: one shard written, the rest not
output.ShardWriter.close = close_then_die
from recsys import cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_killed_job_leaves_no_output_and_a_rerun_publishes_it_whole(config_file, inputs, expected, tmp_path):
    output = tmp_path / "predictions"
    args = ["predict", "--config", str(config_file), "--input", str(inputs[0]), "--output", str(output),
            "--keep", "impression_id", "--shard-rows", "64"]
    killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER_FIRST_SHARD, *args], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not output.exists()
    staging = list(tmp_path.glob(".predictions.staging-*"))
    assert len(staging) == 1 and len(list(staging[0].glob("part-*"))) == 1  # the partial output, hidden
    assert cli.main(args) == 0
    check_scores(read_output(output), expected)
    assert not list(tmp_path.glob(".predictions.staging-*")), "the dead job's staging is removed"


def test_a_list_item_holding_its_separator_is_scored_as_serving_default_scores_it(
        config_file, served_config, inputs, in_process, tmp_path):
    """Parquet list columns can hold '|' inside an item: those batches go as tf.Examples, never re-split."""
    from features.examples import to_example
    from pipelines.validation import RowValidator

    table = pq.read_table(inputs[1])
    tags = [[] if text is None or text == "" else text.split("|") for text in table.column("item_tags").to_pylist()]
    tags[3] = ["t1|t2"]  # one item, as a pipe-joined text would split it into two
    table = table.set_column(table.column_names.index("item_tags"), "item_tags", pa.array(tags, pa.list_(pa.string())))
    path = tmp_path / "lists.parquet"
    pq.write_table(table, path)
    output = tmp_path / "predictions"
    assert run_predict(config_file, "--input", str(path), "--output", str(output), "--keep", "impression_id") == 0
    validate = RowValidator(served_config, served_config.feature_columns)
    rows = [row for row in table.to_pylist() if row["item_price"] is not None]
    scores = in_process.score([to_example(served_config, validate(row)) for row in rows])
    check_scores(read_output(output), ([row["impression_id"] for row in rows], scores))


@pytest.mark.parametrize("engine", ["inprocess", "beam"])
def test_tfrecord_input_is_parsed_record_by_record_with_the_same_scores(
        engine, config_file, served_config, valid_rows, expected, tmp_path):
    """Serialized tf.Example input (and a record that is none) scores like the CSV it came from."""
    import tensorflow as tf

    from features.examples import to_example

    path = tmp_path / "logs.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index, (impression, row) in enumerate(valid_rows):
            if index == 5:
                writer.write(b"not a tf.Example")
            writer.write(to_example(served_config, {**row, "impression_id": impression},
                                    ["impression_id", *served_config.feature_columns]))
    output = tmp_path / "predictions"
    assert run_predict(config_file, "--input", str(path), "--output", str(output), "--engine", engine,
                       "--keep", "impression_id") == 0
    check_scores(read_output(output), expected)
    assert json.loads((output / "summary.json").read_text())["dead_letters_by_reason"] == {"malformed_record": 1}
    if engine == "inprocess":  # with no kept column, every valid row is still scored and written
        bare = tmp_path / "bare"
        assert run_predict(config_file, "--input", str(path), "--output", str(bare)) == 0
        found = read_output(bare)
        assert list(found) == list(OUTPUTS)
        np.testing.assert_allclose(found["ctr"], expected[1]["ctr"], atol=1e-6)


@pytest.mark.parametrize("engine", ["inprocess", "beam"])
def test_the_bundled_sample_is_scored_whole(engine, config_file, served_config, in_process, tmp_path):
    """The quick start's gzip CSV (25,000 rows), every row scored, in order, as serving_default scores it."""
    from features.examples import to_example
    from pipelines.validation import RowValidator
    from tests.conftest import SAMPLE_CONFIG

    sample = SAMPLE_CONFIG.parent / "synthetic_sample.csv.gz"
    output = tmp_path / "predictions"
    assert run_predict(config_file, "--input", str(sample), "--output", str(output), "--engine", engine,
                       "--keep", "impression_id") == 0
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["rows_in"], summary["scored"], summary["dead_letters"]) == (25_000, 25_000, 0)
    found = read_output(output)
    first = pacsv.read_csv(sample, convert_options=pacsv.ConvertOptions(
        strings_can_be_null=False, column_types={n: pa.string() for n in served_config.raw_column_names})).slice(0, 50)
    validate = RowValidator(served_config, served_config.feature_columns)
    scores = in_process.score([to_example(served_config, validate(row)) for row in first.to_pylist()])
    check_scores({name: values[:50] for name, values in found.items()},
                 (first.column("impression_id").to_pylist(), scores))
