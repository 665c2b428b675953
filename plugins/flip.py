"""Horizontal flip, the paper's HF augmentation of the training data (never of test data).

- ``double`` (default, the paper): the training images plus their mirror images, once, doubling
  the training set.
- ``random``: each training image flipped with probability 1/2, drawn anew every epoch (the
  authors' code), reproducible from the run's seed.
"""

from __future__ import annotations

import numpy as np

from feph_finetune import Augmentation, Option, hookimpl

MODES = ("double", "random")


@hookimpl
def plugin_options():
    return {"mode": Option("double", help="double: add mirror images (the paper); random: flip per epoch", choices=MODES)}


@hookimpl
def augment(context):
    if context.options.get("mode", "double") == "double":
        return Augmentation(expand=add_mirror_images)
    return Augmentation(batch=random_flip)


def add_mirror_images(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images (N x H x W x C) followed by their left-right mirror images, labels repeated."""
    return np.concatenate([images, images[:, :, ::-1]]), np.concatenate([labels, labels])


def random_flip(x, seed):
    """Flip each image of a float batch left-right with probability 1/2 (stateless, seeded)."""
    import tensorflow as tf

    flip = tf.random.stateless_uniform(tf.shape(x)[:1], seed=seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
