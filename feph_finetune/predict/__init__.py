"""Trained models applied to new frames: model bundles, inputs, predictions and plots."""
