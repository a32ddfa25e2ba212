"""The transform graph with precomputed statistics: written once, applied to whole batches.

`write_transform_fn` lets tf.Transform itself trace and save the graph with
`impl_helper.analyze_in_place`, its entry point for a `preprocessing_fn` with no
analyzers left (a Beam `AnalyzeDataset` on no rows does the same in about twice
the time), so `transform_fn/`, `transformed_metadata/` and the vocabulary assets
are laid out as the reference path lays them out, and serving loads them
unchanged. `BatchTransformer` then runs that saved graph in-process on tens of
thousands of rows at a time and encodes the result with tfx_bsl's C++ encoder.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import impl_helper
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

from features.config import Config
from features.precomputed import AnalysisResults, PrecomputedAnalyzers
from features.schema import raw_feature_spec
from features.transform import make_preprocessing_fn


def write_transform_fn(config: Config, results: AnalysisResults, output_dir: str):
    """Saves transform_fn/ and transformed_metadata/ under `output_dir`, statistics baked in."""
    feature_spec = raw_feature_spec(config)
    impl_helper.analyze_in_place(
        make_preprocessing_fn(config, PrecomputedAnalyzers(results)), force_tf_compat_v1=False,
        feature_specs=feature_spec, type_specs=impl_helper.get_type_specs_from_feature_specs(feature_spec),
        transform_output_path=output_dir)


def _input_tensor(values: pa.ChunkedArray):
    """A dense tensor for a scalar column; a [rows, longest] SparseTensor for a list column."""
    values = pa.concat_arrays(values.chunks) if values.num_chunks != 1 else values.chunk(0)
    if not pa.types.is_list(values.type):
        return tf.constant(values.to_numpy(zero_copy_only=False))
    lengths = pc.list_value_length(values).to_numpy().astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rows = np.repeat(np.arange(len(values), dtype=np.int64), lengths)
    positions = np.arange(len(rows), dtype=np.int64) - np.repeat(starts, lengths)
    return tf.SparseTensor(np.stack([rows, positions], axis=1).reshape(-1, 2),
                           tf.constant(values.flatten().to_numpy(zero_copy_only=False), tf.string),
                           [len(values), int(lengths.max(initial=0))])


def _list_column(values: np.ndarray) -> pa.ListArray:
    """One list per row, as tf.Transform's record-batch output holds every feature."""
    rows = values.shape[0]
    width = values.shape[1] if values.ndim == 2 else 1
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))


class BatchTransformer:
    """Raw typed batches → serialized transformed tf.Examples, through the saved transform_fn."""

    def __init__(self, output_dir: str):
        self._transform = tft.TFTransformOutput(output_dir)
        self._encoder = RecordBatchToExamplesEncoder()

    def __call__(self, table: pa.Table) -> list[bytes]:
        if not table.num_rows:
            return []
        inputs = {name: _input_tensor(table.column(name)) for name in table.column_names}
        outputs = self._transform.transform_raw_features(inputs, drop_unused_features=True)
        names = sorted(outputs)
        batch = pa.RecordBatch.from_arrays([_list_column(outputs[name].numpy()) for name in names], names)
        return self._encoder.encode(batch)
