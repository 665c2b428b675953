"""Image normalisation, the paper's IP: zero-centre pixel values before the model.

- ``rgb_means`` (default): what Savchenko's MobileNet was trained on (SPEC section 1, IP): subtract
  103.939, 116.779, 123.68 from R, G, B, in that order, with no channel flip.
- ``caffe_bgr``: Keras' "caffe" preprocessing: RGB to BGR, then subtract the same numbers from
  B, G, R.
- ``dataset_mean``: the paper's equation 1, X' = X - mu, with mu the mean of the training split
  (per pixel and channel, or per channel with ``per = "channel"``). Test images are normalised with
  the training split's mean; they never contribute to it.
"""

from __future__ import annotations

import numpy as np

from feph_finetune import PluginError, Preprocessing, hookimpl

IMAGENET_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)
MODES = ("rgb_means", "caffe_bgr", "dataset_mean")


@hookimpl
def plugin_options():
    return {"mode": "rgb_means", "per": "pixel"}


@hookimpl
def preprocess(context):
    mode, per = context.options["mode"], context.options["per"]
    if mode == "imagenet":
        raise PluginError("option mode 'imagenet' was ambiguous and is gone: use 'rgb_means' (Savchenko's input, no channel flip) or 'caffe_bgr' (Keras' caffe mode, RGB to BGR)")
    if mode not in MODES:
        raise PluginError(f"option mode must be one of {', '.join(MODES)}, not {mode!r}")
    if per not in ("pixel", "channel"):
        raise PluginError(f"option per must be 'pixel' or 'channel', not {per!r}")
    if mode == "rgb_means":
        return Preprocessing(batch=rgb_means_normalize, normalizes=True)
    if mode == "caffe_bgr":
        return Preprocessing(batch=caffe_normalize, normalizes=True)
    return TrainingMean(per).preprocessing()


def rgb_means_normalize(x):
    """Subtract the means from R, G, B without flipping; works on NumPy arrays and TensorFlow tensors."""
    return x - IMAGENET_BGR_MEANS


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

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(fit=self.fit, batch=self.batch, normalizes=True)
