"""Deterministic train/eval assignment by a hashed key.

A stable digest (never Python's salted `hash()`) means the same row lands in
the same split on every run, machine and runner.
"""
import hashlib

TRAIN, EVAL = "train", "eval"
SPLITS = (TRAIN, EVAL)
_RESOLUTION = 1_000_000


def split_of(key, eval_fraction: float) -> str:
    """'eval' for about `eval_fraction` of keys, 'train' for the rest, always the same per key."""
    digest = hashlib.sha256(str(key).encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % _RESOLUTION
    return EVAL if bucket < eval_fraction * _RESOLUTION else TRAIN
