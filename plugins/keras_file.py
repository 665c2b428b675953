"""What a whole-model Keras file takes and gives, read from its configuration without TensorFlow.

Used while a configuration is validated (``--dry-run``), where importing TensorFlow would cost
seconds: a ``.keras`` file is a zip archive holding ``config.json``; a legacy ``.h5`` written by
Keras 2 or 3 holds the same configuration as JSON in its ``model_config`` attribute (h5py, which
Keras depends on, reads it without TensorFlow). Not a plugin.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UnreadableModel(Exception):
    """The file is not a whole Keras model whose configuration can be read."""


@dataclass(frozen=True)
class ModelHeader:
    """``input_shape``: one image's shape, (height, width, channels), None where any size goes;
    ``outputs``: the width of the (single) output layer, None when it cannot be told;
    ``activation``: the activation of that layer as its configuration names it (``"softmax"``,
    ``"linear"``), None when it cannot be told."""

    input_shape: tuple[int | None, ...]
    outputs: int | None
    activation: str | None = None

    @property
    def channels(self) -> int | None:
        return self.input_shape[-1] if self.input_shape else None

    @property
    def side(self) -> int | None:
        """The square side the model is made for, or None (any size, or not square)."""
        height, width = (self.input_shape + (None, None))[:2]
        return height if height is not None and height == width else None

    def describe(self) -> str:
        return "(" + ", ".join("None" if side is None else str(side) for side in self.input_shape) + ")"


def model_config(path: Path) -> dict[str, Any] | None:
    """The ``{"class_name", "config"}`` of a whole model, or None for a weights-only file."""
    name = path.name.lower()
    try:
        if name.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as file:
            text = file.attrs.get("model_config")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise UnreadableModel(f"{path}: not a readable Keras model file ({type(error).__name__}: {error})") from error
    if text is None:
        return None
    return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)


def read_header(path: Path) -> ModelHeader | None:
    """The input shape and output width of the whole model in ``path``; None for weights only.

    Raises UnreadableModel when the file or its configuration cannot be read.
    """
    config = model_config(path)
    if config is None:
        return None
    try:
        return _header(config)
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise UnreadableModel(f"{path}: its model configuration is not one this reader knows ({type(error).__name__}: {error})") from error


def _header(config: dict[str, Any]) -> ModelHeader:
    inner = config["config"]
    layers = inner["layers"] if isinstance(inner, dict) else inner
    by_name = {layer["config"]["name"]: layer for layer in layers}
    if isinstance(inner, dict) and "input_layers" in inner:  # Functional (Keras 3) / Model (Keras 2)
        first = by_name[_layer_names(inner["input_layers"])[0]]
        outputs = _layer_names(inner["output_layers"])
        last = by_name[outputs[0]] if len(outputs) == 1 else None
    else:  # Sequential
        first, last = layers[0], layers[-1]
        if "build_input_shape" in inner and not _batch_shape(first):
            first = {"config": {"batch_shape": inner["build_input_shape"]}}
    shape = _batch_shape(first)
    if not shape:
        raise ValueError("no input shape in the first layer")
    return ModelHeader(tuple(shape[1:]), _units(last, by_name) if last is not None else None, _activation(last) if last is not None else None)


def _activation(layer: dict[str, Any]) -> str | None:
    """The activation a layer applies last: a ``Softmax`` layer's, or the ``activation`` named in
    its configuration (a Dense's, an Activation layer's), None when it names none as text."""
    if layer.get("class_name") == "Softmax":
        return "softmax"
    activation = layer["config"].get("activation")
    return activation if isinstance(activation, str) else None


def _layer_names(entries: Any) -> list[str]:
    """``[["input", 0, 0]]`` or ``["input", 0, 0]`` (Keras 3 with one) -> ``["input"]``."""
    if entries and isinstance(entries[0], str):
        return [entries[0]]
    return [entry[0] for entry in entries]


def _batch_shape(layer: dict[str, Any]) -> list | None:
    config = layer["config"]
    return config.get("batch_shape") or config.get("batch_input_shape")


def _units(layer: dict[str, Any], by_name: dict[str, dict], depth: int = 0) -> int | None:
    """The width of a layer's output: a Dense's units, or a convolution's filters (mini-Xception
    ends in a 7-filter convolution and global pooling), found through activations, pooling and
    dropout."""
    config = layer["config"]
    for key in ("units", "filters"):
        if key in config:
            return int(config[key])
    if depth > 4:
        return None
    inbound = _inbound(layer)
    return _units(by_name[inbound], by_name, depth + 1) if inbound in by_name else None


def _inbound(layer: dict[str, Any]) -> str | None:
    """The single layer feeding ``layer``, from Keras 2's or Keras 3's ``inbound_nodes``."""
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) != 1:
        return None
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [{"config": {"keras_history": [name, 0, 0]}}], ...}
        args = node.get("args") or []
        history = args[0].get("config", {}).get("keras_history") if args and isinstance(args[0], dict) else None
        return history[0] if history else None
    return node[0][0] if len(node) == 1 else None  # Keras 2: [[name, 0, 0, {}]]
