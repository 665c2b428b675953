"""What a converter reads from a source model, whatever its format: convolutions in forward order.

Both readers (:mod:`.onnx_source`, :mod:`.torch_source`) reduce their file to a
:class:`SourceModel`; :mod:`.keras_target` matches it to a Keras EfficientNet layer by layer.
Arrays keep PyTorch's layouts: convolution weights (out, in / groups, kh, kw), classifier weights
(classes, features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from feph_finetune.errors import ProblemsError

#: The input Savchenko's models were trained on (SPEC section 3; timm's default configuration):
#: RGB, x / 255, then minus this mean and divided by this standard deviation, per channel.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ConversionError(ProblemsError):
    """The source cannot be converted (unreadable, not a supported EfficientNet, not verified); nothing is written.
    One problem a line (``problems``)."""


@dataclass(frozen=True)
class BatchNorm:
    """Inference-mode BatchNorm: gamma * (x - mean) / sqrt(variance + epsilon) + beta, per channel."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    epsilon: float


@dataclass(frozen=True)
class SourceConv:
    """One convolution of the source, with the BatchNorm after it if the source keeps it separate.

    ``padding``: ``"same"`` (TensorFlow's: zero rows and columns added below and right first, as
    timm's ``tf_`` models and Keras do), ``"symmetric"`` (PyTorch's fixed padding) or ``"none"``.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray | None
    batchnorm: BatchNorm | None
    groups: int
    strides: tuple[int, int]
    padding: str


@dataclass
class SourceModel:
    """A source reduced to what the conversion needs.

    ``probabilities(images, classes)``: the source's own softmax over its first ``classes``
    outputs (the expression logits; HSEmotion's multi-task models add valence and arousal after
    them) for float32 RGB images (N, S, S, 3) in 0-255, with the source's preprocessing applied;
    shape (N, classes), float64. ``verified_against``: what computes those probabilities, in words
    (the file itself, or a named architecture carrying the file's weights).
    """

    kind: str
    convolutions: list[SourceConv]
    classifier_weight: np.ndarray
    classifier_bias: np.ndarray
    probabilities: Callable[[np.ndarray, int], np.ndarray]
    verified_against: str
    notes: list[str] = field(default_factory=list)

    @property
    def outputs(self) -> int:
        """How many outputs the classifier has (expression logits, then any regression outputs)."""
        return int(self.classifier_weight.shape[0])

    @property
    def features(self) -> int:
        """The width of the pooled features the classifier reads (1280 for B0, 1408 for B2)."""
        return int(self.classifier_weight.shape[1]) if self.classifier_weight.ndim == 2 else 0


def source_input(images: np.ndarray) -> np.ndarray:
    """RGB 0-255 (N, H, W, 3) to the sources' input: x / 255, ImageNet mean and std, NCHW float32."""
    scaled = (images.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, classes) logits, computed in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def missing_package(package: str, extra: str) -> ConversionError:
    return ConversionError(f"the converter needs {package}, which is not installed: pip install \"feph_finetune[{extra}]\"")
