"""Multi-task rankers, their input, training, evaluation and the `recsys` command line.

TFRS refuses Keras 3, so tf-keras is selected before TensorFlow is first imported.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
