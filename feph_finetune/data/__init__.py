"""The data side: loading a dataset, grouped splits, per-image preprocessing and its cache."""
