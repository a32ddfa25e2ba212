"""Keras layers the rankers are composed of; each round-trips through `get_config`."""
from recsys.layers.adatt import AdaTT
from recsys.layers.embedding import FeatureEmbedding
from recsys.layers.mlp import MLP
from recsys.layers.mmoe import MMoE
from recsys.layers.ple import PLE
from recsys.layers.shared_bottom import SharedBottom

__all__ = ["AdaTT", "FeatureEmbedding", "MLP", "MMoE", "PLE", "SharedBottom"]
