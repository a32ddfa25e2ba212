"""The id that pads multi-valued inputs and behaviour sequences to a fixed length.

It lives apart from the transform (which imports tf.Transform) so the model's
layers can mask padding without importing the preprocessing stack.
"""
PADDING_ID = 0  # reserved: vocabulary, hash and bucket ids start after it
