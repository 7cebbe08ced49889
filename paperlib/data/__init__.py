"""Datasets: raw sources, the registry of biased presets, and the container they share."""

from paperlib.data.container import BiasedDataset, DatasetInfo, Split
from paperlib.data.presets import PRESETS, build_dataset, dataset_present

__all__ = ["PRESETS", "BiasedDataset", "DatasetInfo", "Split", "build_dataset", "dataset_present"]
