"""Synthetic data with a hidden ground truth: a seeded world of items, users and interactions.

``generate(SyntheticConfig(...))`` returns a :class:`SyntheticDataset`: canonical Arrow tables
(``items``, ``users``, ``interactions``, ``impressions``) and the :class:`GroundTruth` they were
sampled from, whose ``affinity`` and ``top_k`` are the oracle a model should approach. See
``world`` (the latent model), ``sessions`` (the interaction process) and ``catalog`` (text).
"""

from funnel.data.synthetic.config import SyntheticConfig
from funnel.data.synthetic.dataset import SyntheticDataset, generate, read_dataset, write_dataset
from funnel.data.synthetic.stream import event_stream
from funnel.data.synthetic.truth import GroundTruth

__all__ = [
    "GroundTruth",
    "SyntheticConfig",
    "SyntheticDataset",
    "event_stream",
    "generate",
    "read_dataset",
    "write_dataset",
]
