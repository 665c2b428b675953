"""Image normalisation, the paper's IP: zero-centre pixel values before the model.

- ``imagenet`` (default): Keras' "caffe" preprocessing that Savchenko's MobileNet expects: RGB to
  BGR, then subtract the ImageNet channel means (103.939, 116.779, 123.68).
- ``dataset_mean``: the paper's equation 1, X' = X - mu, with mu the mean of the training split
  (per pixel and channel, or per channel with ``per = "channel"``). Test images are normalised with
  the training split's mean; they never contribute to it.
"""

from __future__ import annotations

import numpy as np

from feph_finetune import PluginError, Preprocessing, hookimpl

IMAGENET_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)
MODES = ("imagenet", "dataset_mean")


@hookimpl
def plugin_options():
    return {"mode": "imagenet", "per": "pixel"}


@hookimpl
def preprocess(context):
    mode, per = context.options["mode"], context.options["per"]
    if mode not in MODES:
        raise PluginError(f"option mode must be one of {', '.join(MODES)}, not {mode!r}")
    if per not in ("pixel", "channel"):
        raise PluginError(f"option per must be 'pixel' or 'channel', not {per!r}")
    if mode == "imagenet":
        return Preprocessing(batch=caffe_normalize, normalizes=True)
    return TrainingMean(per).preprocessing()


def caffe_normalize(x):
    """RGB to BGR and ImageNet mean subtraction; works on NumPy arrays and TensorFlow tensors."""
    return x[..., ::-1] - IMAGENET_BGR_MEANS


class TrainingMean:
    """Learns the training split's mean in ``fit`` and subtracts it from every batch."""

    def __init__(self, per: str):
        self.axes = (0,) if per == "pixel" else (0, 1, 2)
        self.mean: np.ndarray | None = None

    def fit(self, images: np.ndarray) -> None:
        if len(images) == 0:
            raise PluginError("cannot compute the training mean of an empty training split")
        self.mean = images.mean(axis=self.axes, dtype=np.float64).astype(np.float32)

    def batch(self, x):
        if self.mean is None:
            raise PluginError("dataset_mean used before its training mean was computed")
        return x - self.mean

    def state(self) -> dict[str, np.ndarray]:
        """The learned mean (float32, S x S x 3 per pixel or 3 per channel), for a model bundle."""
        if self.mean is None:
            raise PluginError("dataset_mean has no training mean to save: fit was not called")
        return {"mean": self.mean}

    def restore(self, state) -> None:
        """Set the mean a training run learned (``state()``'s arrays) instead of fitting."""
        if "mean" not in state:
            raise PluginError(f"dataset_mean: the saved state has no 'mean' (keys: {', '.join(state) or 'none'})")
        mean = np.asarray(state["mean"], dtype=np.float32)
        expected = 1 if len(self.axes) == 3 else 3
        if mean.ndim != expected:
            raise PluginError(f"dataset_mean: the saved mean has shape {mean.shape}, not what per = {'channel' if expected == 1 else 'pixel'} learns")
        self.mean = mean

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(fit=self.fit, batch=self.batch, normalizes=True, state=self.state, restore=self.restore)
