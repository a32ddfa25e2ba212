"""The columnar preprocessing engine (`pipeline.engine: columnar`).

Same artifacts as the Beam + tf.Transform job (`pipelines/preprocess.py`, the
reference), computed on Arrow record batches in one process:

    pass 1  read CSV blocks (pyarrow) → validate column by column (dead letters)
            → split by hashed key → update analyzers on train rows → spill typed rows
    graph   write transform_fn with the learned statistics as constants (same ops)
    pass 2  spilled rows → transform_fn on whole batches → C++ tf.Example encoder
            → gzip TFRecord shards

Vocabularies, quantile boundaries and moments follow tf.Transform's definitions
(order, thresholds, OOV), so the two engines' outputs agree; tests/pipelines/
test_columnar_equivalence.py checks it.
"""
