"""The target: Keras' EfficientNet-B0 with the source's preprocessing and classifier inside.

The model is ``keras.applications.EfficientNetB0(include_top=False, pooling="avg")`` at 224x224,
then ``top_dropout`` (rate 0.2, timm's and Keras' default for B0; inactive at inference) and a
Dense softmax ``predictions`` layer with the source's classes. Keras' own first layers,
``Rescaling(1/255)`` and ``Normalization``, carry the source's preprocessing: the Normalization
layer's mean and variance are set to the ImageNet mean and the square of the ImageNet standard
deviation, so the model takes raw RGB 0-255 and needs no Lambda layer (it loads in safe mode).
Keras imports only inside these functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from feph_finetune.convert.source import IMAGENET_MEAN, IMAGENET_STD, ConversionError, SourceConv, SourceModel

ARCHITECTURE = "EfficientNet-B0"
INPUT_SIZE = 224
FEATURES = 1280
TOP_DROPOUT = 0.2


def efficientnet_b0_classifier(classes: int) -> Any:
    """A Keras EfficientNet-B0 classifier with random weights, as converted files hold it.

    Input float32 (N, 224, 224, 3) RGB 0-255; output float32 (N, ``classes``) softmax. The
    Normalization layer starts at mean 0, variance 1; a conversion (or loading a converted
    ``.weights.h5``) sets it.
    """
    import keras

    base = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(INPUT_SIZE, INPUT_SIZE, 3), pooling="avg"
    )
    features = keras.layers.Dropout(TOP_DROPOUT, name="top_dropout")(base.output)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(features)
    return keras.Model(base.input, outputs, name="efficientnet_b0_converted")


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


def check_architecture(source: SourceModel, pairs: list[tuple[Any, Any]], origin: str) -> None:
    """Refuse a source that is not EfficientNet-B0, naming the first convolution that differs."""
    for index, (layer, _) in enumerate(pairs):
        if index >= len(source.convolutions):
            raise ConversionError(
                f"{origin}: not an {ARCHITECTURE}: the source has {len(source.convolutions)} convolutions, "
                f"{ARCHITECTURE} has {len(pairs)}; the source ends where {ARCHITECTURE} has {layer.name}"
            )
        conv = source.convolutions[index]
        shape, groups = _expected(layer)
        if tuple(conv.weight.shape) != shape or conv.groups != groups or conv.strides != tuple(layer.strides):
            raise ConversionError(
                f"{origin}: not an {ARCHITECTURE}: convolution {index + 1} of the source ({conv.name}: "
                f"{_describe(conv)}) is where {ARCHITECTURE} has {layer.name} (weight {shape}, groups "
                f"{groups}, stride {layer.strides[0]})"
            )
        if conv.padding != "same":
            raise ConversionError(
                f"{origin}: convolution {conv.name} (stride {conv.strides[0]}) uses {conv.padding} padding "
                f"(PyTorch's, as in timm's efficientnet_b0, or none); Keras' {ARCHITECTURE} pads as TensorFlow's 'same' does, like timm's "
                "tf_efficientnet_b0 (Savchenko's models): the two cannot give the same outputs"
            )
    if len(source.convolutions) > len(pairs):
        extra = source.convolutions[len(pairs)]
        raise ConversionError(
            f"{origin}: not an {ARCHITECTURE}: the source has {len(source.convolutions)} convolutions, "
            f"{ARCHITECTURE} has {len(pairs)}; the first extra one is {extra.name} ({_describe(extra)})"
        )
    if source.classifier_weight.ndim != 2 or source.classifier_weight.shape[1] != FEATURES:
        raise ConversionError(
            f"{origin}: the classifier takes {source.classifier_weight.shape[1:]} features; "
            f"{ARCHITECTURE} gives {FEATURES}"
        )


def _kernel(layer: Any, weight: np.ndarray) -> np.ndarray:
    """PyTorch (out, in / groups, kh, kw) to Keras (kh, kw, in, out), or (kh, kw, channels, 1) for depthwise."""
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return weight.transpose(2, 3, 0, 1)
    return weight.transpose(2, 3, 1, 0)


def _batchnorm_weights(conv: SourceConv, epsilon: float) -> list[np.ndarray]:
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
        raise ConversionError(f"{conv.name}: BatchNorm epsilon {bn.epsilon:g}; Keras' {ARCHITECTURE} uses {epsilon:g} (as timm's tf_ models do)")
    return [bn.gamma, bn.beta, bn.mean - bias, bn.variance]


def build_converted(source: SourceModel, origin: str) -> Any:
    """The Keras model with the source's weights, after :func:`check_architecture`."""
    model = efficientnet_b0_classifier(source.classes)
    pairs = keras_convolutions(model)
    check_architecture(source, pairs, origin)
    for (layer, batchnorm), conv in zip(pairs, source.convolutions):
        kernel = _kernel(layer, conv.weight).astype(np.float32)
        if layer.use_bias:
            layer.set_weights([kernel, conv.bias if conv.bias is not None else np.zeros(conv.weight.shape[0], np.float32)])
        else:
            layer.set_weights([kernel])
            batchnorm.set_weights([w.astype(np.float32) for w in _batchnorm_weights(conv, float(batchnorm.epsilon))])
    import keras

    # found by type: Keras names it "normalization_1" and so on when the session holds others
    normalization = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    normalization.set_weights([IMAGENET_MEAN, IMAGENET_STD**2, np.zeros((), np.int64)])
    normalization.finalize_state()  # set_weights bypasses it; the layer computes with constants made here
    model.get_layer("predictions").set_weights([source.classifier_weight.T.astype(np.float32), source.classifier_bias.astype(np.float32)])
    return model
