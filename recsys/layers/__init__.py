"""Keras layers the rankers are composed of; each round-trips through `get_config`."""
from recsys.layers.backbones import PLE, AdaTT, MMoE, SharedBottom
from recsys.layers.embedding import FeatureEmbedding
from recsys.layers.mlp import MLP

__all__ = ["AdaTT", "FeatureEmbedding", "MLP", "MMoE", "PLE", "SharedBottom"]
