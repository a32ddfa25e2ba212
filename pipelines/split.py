"""Deterministic train/eval/test assignment by a hashed key.

A stable digest (never Python's salted `hash()`) means the same row lands in
the same split on every run, machine and runner.
"""
import hashlib

TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS = (TRAIN, EVAL, TEST)
_RESOLUTION = 1_000_000


def split_of(key, eval_fraction: float, test_fraction: float = 0.0) -> str:
    """'test' for about `test_fraction` of keys, 'eval' for `eval_fraction`, 'train' for the rest."""
    digest = hashlib.sha256(str(key).encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % _RESOLUTION
    if bucket < test_fraction * _RESOLUTION:
        return TEST
    return EVAL if bucket < (test_fraction + eval_fraction) * _RESOLUTION else TRAIN
