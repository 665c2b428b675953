"""The target: a Keras EfficientNet (B0 or B2) with the source's preprocessing and classifier inside.

The model is ``keras.applications.EfficientNetB0`` (or ``B2``) with ``include_top=False,
pooling="avg"`` at the variant's native input side, then ``top_dropout`` (timm's and Keras' rate
for the variant; inactive at inference) and a Dense softmax ``predictions`` layer with the
source's classes. Keras' own first layers, ``Rescaling(1/255)`` and ``Normalization``, carry the
source's preprocessing: the Normalization layer's mean and variance are set to the ImageNet mean
and the square of the ImageNet standard deviation, so the model takes raw RGB 0-255 and needs no
Lambda layer (it loads in safe mode). Keras imports only inside these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from feph_finetune.convert.source import IMAGENET_MEAN, IMAGENET_STD, ConversionError, SourceConv, SourceModel


@dataclass(frozen=True)
class Variant:
    """One EfficientNet the converter writes and the ``efficientnet`` plugin builds.

    ``input_size``: the native side in pixels (timm's and Keras' default configuration);
    ``features``: the width of the pooled features the classifier reads (timm's ``num_features``);
    ``top_dropout``: the dropout rate before the classifier (Keras' and timm's ``drop_rate``);
    ``timm``: the timm architecture with TensorFlow padding and BatchNorm epsilon 1e-3, as Keras'.
    """

    name: str
    architecture: str
    application: str
    input_size: int
    features: int
    top_dropout: float
    timm: str


#: The variants supported, by name. Savchenko's HSEmotion models are B0 (enet_b0_*) and B2
#: (enet_b2_8*, 260 px); the widths and rates are timm's and keras.applications' for each.
VARIANTS: dict[str, Variant] = {
    "b0": Variant("b0", "EfficientNet-B0", "EfficientNetB0", 224, 1280, 0.2, "tf_efficientnet_b0"),
    "b2": Variant("b2", "EfficientNet-B2", "EfficientNetB2", 260, 1408, 0.3, "tf_efficientnet_b2"),
}

# The B0 names earlier versions exported.
ARCHITECTURE = VARIANTS["b0"].architecture
INPUT_SIZE = VARIANTS["b0"].input_size
FEATURES = VARIANTS["b0"].features


def supported() -> str:
    """``"B0 (1280 features), B2 (1408 features)"``, for messages."""
    return ", ".join(f"{v.name.upper()} ({v.features} features)" for v in VARIANTS.values())


def variant_by_features(features: int, origin: str) -> Variant:
    """The variant whose classifier reads ``features`` features; ConversionError for any other."""
    for variant in VARIANTS.values():
        if variant.features == features:
            return variant
    raise ConversionError(f"{origin}: the classifier reads {features} features; the converter writes EfficientNet {supported()}")


def variant_by_architecture(architecture: str) -> Variant | None:
    """The variant recorded as ``architecture`` in a converter's sidecar (``"EfficientNet-B2"``), or None."""
    return next((v for v in VARIANTS.values() if v.architecture == architecture), None)


def efficientnet_classifier(classes: int, variant: str = "b0", input_size: int | None = None) -> Any:
    """A Keras EfficientNet classifier with random weights, as converted files hold it.

    Input float32 (N, S, S, 3) RGB 0-255 with S = ``input_size`` (default: the variant's native
    side; the weights fit any side >= 32); output float32 (N, ``classes``) softmax. The
    Normalization layer starts at mean 0, variance 1; a conversion (or loading a converted file's
    weights) sets it.
    """
    import keras

    spec = VARIANTS[variant]
    side = input_size or spec.input_size
    base = getattr(keras.applications, spec.application)(
        include_top=False, weights=None, input_shape=(side, side, 3), pooling="avg"
    )
    features = keras.layers.Dropout(spec.top_dropout, name="top_dropout")(base.output)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(features)
    return keras.Model(base.input, outputs, name=f"efficientnet_{variant}_converted")


def efficientnet_b0_classifier(classes: int) -> Any:
    """:func:`efficientnet_classifier` for B0 at 224 px (the public name of earlier versions)."""
    return efficientnet_classifier(classes, "b0")


def keras_convolutions(model: Any) -> list[tuple[Any, Any]]:
    """Each convolution of the model in forward order, with the BatchNorm that follows it (or None).

    Keras names each BatchNorm after its convolution: ``stem_conv``/``stem_bn``,
    ``*_expand_conv``/``*_expand_bn``, ``*_dwconv``/``*_bn``, ``*_project_conv``/``*_project_bn``,
    ``top_conv``/``top_bn``; the squeeze-and-excitation convolutions have a bias and no BatchNorm.
    """
    import keras

    names = {layer.name for layer in model.layers}
    pairs = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            bn_name = layer.name.replace("_conv", "_bn") if layer.name.endswith("_conv") else layer.name.replace("_dwconv", "_bn")
            pairs.append((layer, model.get_layer(bn_name) if not layer.use_bias and bn_name in names else None))
    return pairs


def _expected(layer: Any) -> tuple[tuple[int, ...], int]:
    """The PyTorch weight shape (out, in / groups, kh, kw) and groups that fit a Keras convolution."""
    import keras

    kernel = tuple(layer.kernel.shape)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return (kernel[2], 1, kernel[0], kernel[1]), kernel[2]
    return (kernel[3], kernel[2], kernel[0], kernel[1]), 1


def _describe(conv: SourceConv) -> str:
    return f"weight {tuple(conv.weight.shape)}, groups {conv.groups}, stride {conv.strides[0]}"


def check_architecture(source: SourceModel, pairs: list[tuple[Any, Any]], origin: str, variant: Variant) -> None:
    """Refuse a source that is not ``variant``, naming the first convolution that differs."""
    architecture = variant.architecture
    for index, (layer, _) in enumerate(pairs):
        if index >= len(source.convolutions):
            raise ConversionError(
                f"{origin}: not an {architecture}: the source has {len(source.convolutions)} convolutions, "
                f"{architecture} has {len(pairs)}; the source ends where {architecture} has {layer.name}"
            )
        conv = source.convolutions[index]
        shape, groups = _expected(layer)
        if tuple(conv.weight.shape) != shape or conv.groups != groups or conv.strides != tuple(layer.strides):
            raise ConversionError(
                f"{origin}: not an {architecture}: convolution {index + 1} of the source ({conv.name}: "
                f"{_describe(conv)}) is where {architecture} has {layer.name} (weight {shape}, groups "
                f"{groups}, stride {layer.strides[0]})"
            )
        if conv.padding != "same":
            raise ConversionError(
                f"{origin}: convolution {conv.name} (stride {conv.strides[0]}) uses {conv.padding} padding "
                f"(PyTorch's, as in timm's efficientnet_b0, or none); Keras' {architecture} pads as TensorFlow's 'same' does, like timm's "
                f"{variant.timm} (Savchenko's models): the two cannot give the same outputs"
            )
    if len(source.convolutions) > len(pairs):
        extra = source.convolutions[len(pairs)]
        raise ConversionError(
            f"{origin}: not an {architecture}: the source has {len(source.convolutions)} convolutions, "
            f"{architecture} has {len(pairs)}; the first extra one is {extra.name} ({_describe(extra)})"
        )
    if source.classifier_weight.ndim != 2 or source.classifier_weight.shape[1] != variant.features:
        raise ConversionError(
            f"{origin}: the classifier takes {source.classifier_weight.shape[1:]} features; "
            f"{architecture} gives {variant.features}"
        )


def _kernel(layer: Any, weight: np.ndarray) -> np.ndarray:
    """PyTorch (out, in / groups, kh, kw) to Keras (kh, kw, in, out), or (kh, kw, channels, 1) for depthwise."""
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return weight.transpose(2, 3, 0, 1)
    return weight.transpose(2, 3, 1, 0)


def _batchnorm_weights(conv: SourceConv, epsilon: float, architecture: str) -> list[np.ndarray]:
    """Keras BatchNorm weights (gamma, beta, moving mean, moving variance) equal to what follows the conv.

    A convolution bias b before a BatchNorm moves its mean to mean - b. A source whose BatchNorm
    was folded into the convolution (ONNX exported in eval mode) keeps only the bias: then gamma
    1, beta b, mean 0 and variance 1 - epsilon make the Keras BatchNorm add b exactly.
    """
    channels = conv.weight.shape[0]
    bias = conv.bias if conv.bias is not None else np.zeros(channels, np.float32)
    if conv.batchnorm is None:
        return [np.ones(channels, np.float32), bias, np.zeros(channels, np.float32), np.full(channels, 1.0 - epsilon, np.float32)]
    bn = conv.batchnorm
    if abs(bn.epsilon - epsilon) > 1e-9:
        raise ConversionError(f"{conv.name}: BatchNorm epsilon {bn.epsilon:g}; Keras' {architecture} uses {epsilon:g} (as timm's tf_ models do)")
    return [bn.gamma, bn.beta, bn.mean - bias, bn.variance]


def build_converted(source: SourceModel, variant: Variant, classes: int, origin: str) -> Any:
    """The Keras ``variant`` with the source's weights, after :func:`check_architecture`.

    ``classes``: how many of the source's outputs are expression classes, the first ones; the
    others (valence and arousal of HSEmotion's multi-task models) are left out of the model.
    """
    import keras

    model = efficientnet_classifier(classes, variant.name)
    pairs = keras_convolutions(model)
    check_architecture(source, pairs, origin, variant)
    for (layer, batchnorm), conv in zip(pairs, source.convolutions):
        kernel = _kernel(layer, conv.weight).astype(np.float32)
        if layer.use_bias:
            layer.set_weights([kernel, conv.bias if conv.bias is not None else np.zeros(conv.weight.shape[0], np.float32)])
        else:
            layer.set_weights([kernel])
            weights = _batchnorm_weights(conv, float(batchnorm.epsilon), variant.architecture)
            batchnorm.set_weights([w.astype(np.float32) for w in weights])
    # found by type: Keras names it "normalization_1" and so on when the session holds others
    normalization = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    normalization.set_weights([IMAGENET_MEAN, IMAGENET_STD**2, np.zeros((), np.int64)])
    normalization.finalize_state()  # set_weights bypasses it; the layer computes with constants made here
    weight, bias = source.classifier_weight[:classes], source.classifier_bias[:classes]
    model.get_layer("predictions").set_weights([weight.T.astype(np.float32), bias.astype(np.float32)])
    return model
