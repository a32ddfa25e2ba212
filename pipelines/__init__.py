"""Beam pipelines and data sources that turn raw impression logs into training artifacts.

Beam workers import this package before tf.Transform loads TensorFlow, so the
Keras 2 switch is set here too.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
