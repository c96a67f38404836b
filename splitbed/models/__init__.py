"""Partitionable CNNs and the offline data they run on.

A model is an ordered list of stages; a split point k cuts it into head(k) for the edge and tail(k)
for the server, so head then tail is the very same computation as the whole model. The registry
finds models by name, the datasets module finds labelled and unlabelled inputs that ship offline,
photos.py fetches the photo evaluation set from Debian packages into the cache, metrics scores
predictions, and profile measures what each split costs.
May import: host, registry, errors.
"""

from splitbed.models.partition import EDGE_ONLY, SERVER_ONLY, SplitModel
from splitbed.models.registry import get_model, model_names

__all__ = ["EDGE_ONLY", "SERVER_ONLY", "SplitModel", "get_model", "model_names"]
