"""Image normalisation, the paper's IP: zero-centre pixel values before the model.

Option ``mode``:

- ``rgb_means`` (default): what Savchenko's ``mobilenet_7.h5`` was trained on and what the paper's
  code fed it: RGB float pixels with 103.939, 116.779 and 123.68 subtracted from R, G and B, in
  that order, with no channel flip (HSE-asavchenko/face-emotion-recognition,
  ``src/train_emotions.ipynb``, ``mobilenet_preprocess_input``; SPEC section 1, IP).
- ``caffe_bgr``: Keras' "caffe" mode (``keras.applications.imagenet_utils.preprocess_input``):
  RGB flipped to BGR, then the same three numbers subtracted from B, G and R. Only Savchenko's
  Android app feeds his models this way; it is here for models trained on BGR input.
- ``dataset_mean``: the paper's equation 1, X' = X - mu, with mu the mean of the training split
  (per pixel and channel, or per channel with ``per = "channel"``). Test images are normalised with
  the training split's mean; they never contribute to it.

The earlier name ``imagenet`` (what ``caffe_bgr`` is now) is refused: it fed Savchenko's model
swapped channels, and an old configuration must say which of the two it means.
"""

from __future__ import annotations

import numpy as np

from feph_finetune import Option, PluginError, Preprocessing, hookimpl

#: Subtracted from channels 0, 1, 2 (R, G, B in ``rgb_means``; B, G, R in ``caffe_bgr``). The
#: ImageNet channel means in BGR order of the original Caffe models, as Keras' "caffe" mode uses.
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
        return Preprocessing(batch=caffe_bgr_normalize, normalizes=True)
    return TrainingMean(per).preprocessing()


def rgb_means_normalize(x):
    """R, G, B minus 103.939, 116.779, 123.68, channels kept in order.

    ``x``: float32 (..., 3) RGB in 0-255, a NumPy array or a TensorFlow tensor; returns the same
    shape and dtype.
    """
    return x - CAFFE_MEANS


def caffe_bgr_normalize(x):
    """Keras' "caffe" mode: RGB to BGR, then B, G, R minus 103.939, 116.779, 123.68.

    ``x``: float32 (..., 3) RGB in 0-255, a NumPy array or a TensorFlow tensor; returns BGR of the
    same shape and dtype.
    """
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
