"""Image normalisation, the paper's IP: zero-centre pixel values before the model.

Option ``mode``:

- ``rgb_means`` (default): what Savchenko's MobileNet was trained on and the paper's code does
  (SPEC §1 IP, HSE-asavchenko/face-emotion-recognition ``mobilenet_preprocess_input``): keep RGB
  order and subtract 103.939, 116.779, 123.68 from R, G, B.
- ``caffe_bgr``: Keras' "caffe" preprocessing: RGB to BGR, then subtract the same numbers from B,
  G, R (what Savchenko's Android app feeds the model).
- ``dataset_mean``: the paper's equation 1, X' = X - mu, with mu the mean of the training split
  (per pixel and channel, or per channel with ``per = "channel"``). Test images are normalised with
  the training split's mean; they never contribute to it.

The former mode ``imagenet`` is refused with a hint: it was Keras' caffe mode, which is not what
the paper did.
"""

from __future__ import annotations

import numpy as np

from feph_finetune import Option, PluginError, Preprocessing, hookimpl

#: The channel means subtracted in ``rgb_means`` (from R, G, B) and ``caffe_bgr`` (from B, G, R).
CAFFE_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)
MODES = ("rgb_means", "caffe_bgr", "dataset_mean")


@hookimpl
def plugin_options():
    return {
        "mode": Option("rgb_means", help="rgb_means (the paper's), caffe_bgr (Keras' caffe) or dataset_mean",
                       choices=MODES, retired={"imagenet": "it was renamed: use 'rgb_means' (the paper's: RGB "
                                               "minus the means, no flip) or 'caffe_bgr' (Keras' caffe: BGR, then the means)"}),
        "per": Option("pixel", help="dataset_mean over each pixel and channel, or over each channel", choices=("pixel", "channel")),
    }


@hookimpl
def plugin_traits(options):
    return {"normalizes_pixels"}


@hookimpl
def preprocess(context):
    mode, per = context.options.get("mode", "rgb_means"), context.options.get("per", "pixel")
    if mode == "rgb_means":
        return Preprocessing(batch=rgb_means_normalize, normalizes=True)
    if mode == "caffe_bgr":
        return Preprocessing(batch=caffe_normalize, normalizes=True)
    return TrainingMean(per).preprocessing()


def rgb_means_normalize(x):
    """Subtract 103.939, 116.779, 123.68 from R, G, B (no channel flip); NumPy or TensorFlow."""
    return x - CAFFE_MEANS


def caffe_normalize(x):
    """RGB to BGR, then subtract 103.939, 116.779, 123.68 from B, G, R; NumPy or TensorFlow."""
    return x[..., ::-1] - CAFFE_MEANS


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
