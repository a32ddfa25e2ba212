"""Batch prediction over raw files: read and validate rows, write scores in input order, publish atomically.

Both engines share this contract; the scorer (an exported SavedModel) comes
from `serving/`, handed in by the CLI, so this package never imports it.
"""
