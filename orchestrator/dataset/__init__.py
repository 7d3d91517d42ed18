"""SQuAD v1.1 -> MLPerf BERT features (tokenized, windowed), cached as a plain .npz keyed by inputs."""

from orchestrator.dataset.cache import FEATURES_FORMAT_VERSION, build_features, load_features
from orchestrator.dataset.features import Features, feature_tokens
from orchestrator.dataset.squad import Example, load_examples
from orchestrator.dataset.vocab import load_vocab

__all__ = [
    "FEATURES_FORMAT_VERSION",
    "Example",
    "Features",
    "build_features",
    "feature_tokens",
    "load_examples",
    "load_features",
    "load_vocab",
]
