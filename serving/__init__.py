"""Export of TF-Serving-ready SavedModels with the transform graph inside.

Imports TensorFlow, so tf-keras is selected first (the ranker is a tf-keras model).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
