"""A local stand-in for TensorFlow Serving (development and tests; production is TF Serving)."""
