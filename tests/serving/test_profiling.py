"""The serving profile finds the parse, the transform graph and the ranker in a real trace of the export."""
import pytest

from serving.profiling import op_durations, profile_signature, summarise, time_by_scope


def test_a_trace_of_serving_default_splits_parsing_transform_and_model(served_config, in_process, sample_rows,
                                                                        tmp_path):
    from features.examples import to_example

    examples = [to_example(served_config, row) for row in sample_rows[:20]]
    summary = profile_signature(in_process.signature, examples, calls=3, logdir=tmp_path)
    events = op_durations(tmp_path)
    types = {op_type for _, op_type, _ in events}
    assert {"ParseExampleV2", "LookupTableFindV2", "ResourceGather"} <= types
    scopes = {"/".join(name.split("/")[:2]) for name, _, _ in events}
    assert any("transform_features_layer" in scope for scope in scopes)
    assert any("ranker" in scope for scope in scopes)
    assert all(micros >= 0 for _, _, micros in events)
    assert "ParseExampleV2" in summary and "by scope:" in summary


def test_summaries_are_per_call_and_a_missing_trace_is_named(tmp_path):
    events = [("call/ParseExample/ParseExampleV2", "ParseExampleV2", 300.0),
              ("call/ranker/dense/MatMul", "MatMul", 100.0), ("call/ranker/dense_1/MatMul", "MatMul", 100.0)]
    summary = summarise(events, calls=2)
    assert summary.splitlines()[0] == "2 ops and 250 µs of op time per call"
    assert "    150.0 µs  60.0%     0.5×  ParseExampleV2" in summary
    assert "    100.0 µs  40.0%  call/ranker" in summary
    assert time_by_scope(events, calls=2) == {"call/ParseExample": 150.0, "call/ranker": 100.0}
    with pytest.raises(FileNotFoundError, match="no \\*.xplane.pb under"):
        op_durations(tmp_path)
