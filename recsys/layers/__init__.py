"""Keras layers the rankers are composed of; each round-trips through `get_config`."""
from recsys.layers.embedding import FeatureEmbedding
from recsys.layers.mlp import MLP

__all__ = ["FeatureEmbedding", "MLP"]
