"""The config schema, the raw schema and the tf.Transform preprocessing built from them.

TFRS and our layers need Keras 2 (tf-keras); the switch must be set before
TensorFlow is first imported, in every process that imports us.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
