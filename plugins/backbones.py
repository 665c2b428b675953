"""What the backbone plugins (``mobilenet``, ``efficientnet``) share; not a plugin itself.

A backbone plugin only says how to build its Keras Applications base (a model from images to
pooled features); everything else lives here, so that both plugins read the ``weights`` option,
load files, replace the top and fill in :class:`feph_finetune.BuiltModel` the same way:

- ``weights = "none"``: random initialisation.
- ``weights = "imagenet"``: Keras' ImageNet weights (downloaded once, then cached); without network
  the error says where to put the file by hand.
- ``weights = "<path>.weights.h5"`` (Keras 3), or a legacy ``.h5`` holding weights only (Keras'
  own ImageNet files): weights for the base built as usual.
- ``weights = "<path>.keras"`` or a legacy ``.h5`` holding a whole model (an expression classifier
  such as Savchenko's ``mobilenet_7.h5``): the model is loaded as is and becomes both the
  ``pretrained`` classifier for the No-FT baseline and, cut below its top, the base of the new
  model (the two share their layers).
- a file written by ``python -m feph_finetune convert`` (``.keras`` or ``.weights.h5``, with the
  converter's ``<file>.json`` next to it): a whole classifier as above, whose output classes are
  the names in that JSON, FePh's where one is a synonym of it (Happiness is happy, Sadness sad...).
  No-FT matches them to the dataset's classes by name and drops an output the dataset lacks
  (Contempt, in HSEmotion's 8-class models, on FePh).
  The JSON names the variant (EfficientNet-B0, -B2): the classifier is built for it at the run's
  input size and the file's weights loaded (EfficientNet takes any side).

The plugins build RGB models: a whole-model file that takes another number of channels is
refused while the configuration is checked (the ``keras_model`` plugin takes such files). So is
a file that does not hold what its suffix says (:func:`feph_finetune.keras_file_problem`, read
without TensorFlow); whether a weights-only file fits the architecture shows only when the run
loads it into the built base.

Keras is imported inside functions only: the CLI imports the plugin modules without TensorFlow.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from feph_finetune import (
    BuiltModel,
    ConversionError,
    Option,
    PluginError,
    RunContext,
    class_names_problem,
    efficientnet_classifier,
    keras_file_problem,
    read_converted,
)
from feph_finetune_plugins.keras_file import UnreadableModel, read_header

#: The FePh class of each output of Savchenko's HSEmotion 7-class models, in their order.
SAVCHENKO_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: Name of the new softmax layer; the other new layers are named after it.
HEAD_LAYER_NAME = "feph_head"

#: How many layer names an unknown ``cut_layer`` error shows (those nearest the top).
LAYER_NAMES_SHOWN = 12


#: The FePh class each class name of an expression dataset stands for (AffectNet and HSEmotion
#: name them by nouns: Happiness, Sadness); compared in lower case.
FEPH_CLASS_NAMES: dict[str, str] = {
    "anger": "anger", "angry": "anger", "disgust": "disgust", "disgusted": "disgust", "fear": "fear",
    "fearful": "fear", "happy": "happy", "happiness": "happy", "neutral": "neutral", "sad": "sad",
    "sadness": "sad", "surprise": "surprise", "surprised": "surprise",
}

#: What the ``outputs`` option says a whole-model file's last layer gives.
OUTPUT_KINDS = ("probabilities", "logits")
#: What the ``weights`` option may name: a Keras file, whole model or weights only.
WEIGHTS_SUFFIXES = (".keras", ".h5", ".hdf5")


def common_options() -> dict[str, Option]:
    """The options every backbone plugin offers, with their defaults and accepted values."""
    return {
        "weights": Option(
            "none", choices=("none", "imagenet"), path="file", suffixes=WEIGHTS_SUFFIXES, check=weights_file_problem,
            help="none, imagenet, or a Keras file (.weights.h5 for the base; .keras or .h5 for a whole "
                 "model); PyTorch (.pt) and ONNX files must be converted to Keras first",
        ),
        "cut_layer": Option("", help="the layer to put the new head on (default: below the model's top)", training_only=True),
        "dropout": Option(0.0, help="dropout before the new softmax layer, in [0, 1)", minimum=0, maximum=1,
                          exclusive_maximum=True, training_only=True),
        "outputs": Option(
            "probabilities", choices=OUTPUT_KINDS, unhashed_at_default=True, check_with_options=outputs_problem,
            help="what the last layer of a whole-model file gives: probabilities (a softmax), or logits "
                 "(raw scores: No-FT applies a softmax before matching classes)",
        ),
        "pretrained_classes": Option(
            list(SAVCHENKO_CLASSES), check=class_names_problem, check_with_options=output_width_problem,
            help="the class name of each output of a pretrained classifier, in its order (No-FT matches them "
                 "to the dataset's classes by name, ignoring case)",
        ),
    }


def file_header(value: Any):
    """The input shape and output width of the whole-model file ``value`` names (read without
    TensorFlow), or None: not a file, weights only, a converter's file, or unreadable (the run
    reports that when it loads it)."""
    path = Path(str(value).strip()).expanduser()
    if not path.is_file() or not path.name.lower().endswith((".keras", ".h5", ".hdf5")) or path.name.lower().endswith(".weights.h5"):
        return None
    try:
        return None if read_converted(path) is not None else read_header(path)
    except (ConversionError, UnreadableModel):
        return None


def weights_file_problem(weights: Any) -> str | None:
    """Refuse a converter's file whose ``.json`` cannot be used (unreadable, or written for another
    file: a conversion interrupted between the two, or the file replaced since), a file that is not
    the Keras file its suffix says (:func:`feph_finetune.keras_file_problem`), then a whole-model
    file whose input is not RGB. Whether weights-only files fit the architecture is known only when
    the run builds it (that needs TensorFlow)."""
    if str(weights).strip().lower() in ("none", "imagenet"):
        return None
    path = Path(str(weights).strip()).expanduser()
    if path.is_file():
        try:
            read_converted(path)
        except ConversionError as error:
            return str(error)
    return keras_file_problem(weights) or rgb_file_problem(weights)


def rgb_file_problem(weights: Any) -> str | None:
    """Refuse a whole-model file whose input is not RGB: these plugins build (S, S, 3) models."""
    header = file_header(weights)
    if header is None or header.channels == 3:
        return None
    return (f"the model in {weights} takes inputs of shape {header.describe()}; this plugin needs RGB "
            "images (S, S, 3): use the keras_model plugin for models with other inputs")


def outputs_problem(outputs: str, options: dict[str, Any]) -> str | None:
    """Refuse ``outputs = "logits"`` for a whole-model file whose last layer is a softmax (its
    outputs are probabilities already; a second softmax would flatten them). A file whose last
    layer gives logits is caught when No-FT runs it: fine-tuning such a file needs no setting."""
    file_option = "file" if "file" in options else "weights"
    header = file_header(options.get(file_option, ""))
    if outputs == "logits" and header is not None and header.activation == "softmax":
        return f"the last layer of the model in {options[file_option]} is a softmax: its outputs are probabilities; remove outputs = \"logits\""
    return None


def output_width_problem(classes: Sequence[str], options: dict[str, Any], file_option: str = "weights") -> str | None:
    """Refuse ``pretrained_classes`` set to a list whose length is not the whole-model file's
    output width. The default list is left alone: it only matters for No-FT, which the
    ``pretrained_classifier`` trait then refuses (fine-tuning cuts the classifier off)."""
    header = file_header(options.get(file_option, ""))
    if header is None or header.outputs is None or len(classes) == header.outputs:
        return None
    if list(classes) == list(SAVCHENKO_CLASSES):
        return None
    return (f"names {len(classes)} classes, but the model in {options[file_option]} has {header.outputs} outputs: "
            "name the class of each output, in its order")


def model_input_of(value: Any) -> dict[str, Any] | None:
    """``model_input`` for a whole-model file with a fixed square input: its side, fixed."""
    header = file_header(value)
    return {"size": header.side, "fixed": True} if header is not None and header.side else None


def weights_traits(weights: str, pretrained_classes: Sequence[str] | None = None) -> set[str]:
    """``pretrained_classifier`` unless ``weights`` surely carries no classifier: none, imagenet,
    a ``.weights.h5`` file or a legacy ``.h5`` without a model configuration, or a whole model
    whose output width is not the length of ``pretrained_classes`` (when given)."""
    text = str(weights).strip()
    if text.lower() in ("none", "imagenet"):
        return set()
    try:
        if read_converted(Path(text).expanduser()) is not None:  # a converter's file: a whole classifier
            return {"pretrained_classifier"}
    except ConversionError:
        return {"pretrained_classifier"}  # its unreadable description is reported when the run loads it
    if text.lower().endswith(".weights.h5"):
        return set()
    path = Path(text).expanduser()
    header = file_header(path)
    if header is not None and pretrained_classes is not None and header.outputs not in (None, len(pretrained_classes)):
        return set()  # a classifier, but not one pretrained_classes describes: No-FT cannot map it
    if path.name.lower().endswith((".h5", ".hdf5")) and path.is_file():
        try:
            return {"pretrained_classifier"} if _h5_holds_model(path, "") else set()
        except PluginError:
            return set()
    return {"pretrained_classifier"}


@dataclass(frozen=True)
class Backbone:
    """How one plugin builds its base; everything else is shared.

    - ``plugin``: the plugin's name, which starts every error message.
    - ``description``: the architecture in words for messages (``"MobileNet alpha=0.25"``).
    - ``make_base(input_size, weights)``: a Keras model from (S, S, 3) images to pooled features;
      ``weights`` is None or ``"imagenet"``. It may raise PluginError for options it refuses.
    - ``imagenet_file(input_size)``: the file name under which Keras caches the ImageNet weights.
    - ``normalizes_input``: whether the model rescales raw 0-255 pixels itself.
    """

    plugin: str
    description: str
    make_base: Callable[[int, str | None], Any]
    imagenet_file: Callable[[int], str]
    normalizes_input: bool


@dataclass(frozen=True)
class WeightsSource:
    """The ``weights`` option, understood: ``kind`` is none, imagenet, weights_file or model_file."""

    kind: str
    path: Path | None = None
    converted: Any = None  # a ConvertedModel when the file comes from ``python -m feph_finetune convert``


def build_backbone_model(context: RunContext, backbone: Backbone) -> BuiltModel:
    """Build the classifier to fine-tune: the base from the ``weights`` option plus a new head."""
    options = {**{key: option.default for key, option in common_options().items()}, **context.options}
    plugin = backbone.plugin
    dropout = float(options["dropout"])
    cut_layer = str(options["cut_layer"] or "")
    source = resolve_weights(options["weights"], plugin)
    if source.converted is not None:
        pretrained_classes = _converted_classes(source, options["pretrained_classes"], backbone)
    else:
        pretrained_classes = tuple(str(name) for name in options["pretrained_classes"])

    if source.kind == "model_file":
        source_model = _load_classifier(source, plugin, context.input_size)
        check_input_size(source_model, context.input_size, source.path, plugin)
        pretrained = as_probabilities(source_model, options["outputs"]) if _output_width(source_model) == len(pretrained_classes) else None
    else:
        source_model = _build_base(backbone, context.input_size, source)
        pretrained = None

    if cut_layer:
        features = layer_output(source_model, cut_layer, plugin)
    elif source.kind == "model_file":
        features = _below_top(source_model, plugin)
    else:
        features = source_model.output

    model, head = attach_head(source_model, features, len(context.classes), dropout, f"{plugin}_feph", plugin)
    return BuiltModel(
        model=model,
        head=head,
        pretrained=pretrained,
        pretrained_classes=pretrained_classes if pretrained is not None else None,
        normalizes_input=backbone.normalizes_input,
    )


# --- options ---------------------------------------------------------------------------------


def resolve_weights(value: Any, plugin: str) -> WeightsSource:
    """Understand the ``weights`` option (its value was checked with the configuration)."""
    text = str(value).strip()
    if text.lower() == "none":
        return WeightsSource("none")
    if text.lower() == "imagenet":
        return WeightsSource("imagenet")
    path = Path(text).expanduser()
    problem = keras_file_problem(text)  # checked with the configuration; the file may have changed since
    if problem:
        raise PluginError(f"{plugin}: option weights: {problem}")
    try:
        converted = read_converted(path)
    except ConversionError as error:
        raise PluginError(f"{plugin}: option weights: {error}") from error
    if converted is not None:
        return WeightsSource("model_file", path, converted)
    name = path.name.lower()
    if name.endswith(".weights.h5") or name.endswith(".keras"):
        return WeightsSource("weights_file" if name.endswith(".weights.h5") else "model_file", path)
    return WeightsSource("model_file" if _h5_holds_model(path, plugin) else "weights_file", path)


def _converted_classes(source: WeightsSource, option: Any, backbone: Backbone) -> tuple[str, ...]:
    """The class of each output of a converted file, from the names its JSON records."""
    plugin, converted = backbone.plugin, source.converted
    if converted.architecture != backbone.description:
        raise PluginError(
            f"{plugin}: option weights: {source.path} was converted to {converted.architecture}, "
            f"not {backbone.description}"
        )
    names = converted_class_names(converted)
    if list(option) != common_options()["pretrained_classes"].default and [name.casefold() for name in option] != [name.casefold() for name in names]:
        raise PluginError(
            f"{plugin}: option pretrained_classes = {list(option)} contradicts the classes recorded "
            f"with {source.path} ({', '.join(converted.classes)}); remove the option"
        )
    problem = class_names_problem(list(names))
    if problem:
        raise PluginError(f"{plugin}: the classes recorded with {source.path}: {problem}")
    return names


def converted_class_names(converted: Any) -> tuple[str, ...]:
    """The class names of a converted file's outputs, in order, in lower case: FePh's name where the
    recorded one is a synonym of it (HSEmotion's ``Happiness`` is ``happy``), else the recorded name."""
    return tuple(FEPH_CLASS_NAMES.get(name.lower(), name.lower()) for name in converted.classes)


def pretrained_class_names(weights: Any, option: Sequence[str]) -> list[str]:
    """The class names of the pretrained classifier a ``weights`` file carries, for ``model_input``:
    a converted file's (:func:`converted_class_names`), else the ``pretrained_classes`` option."""
    try:
        converted = read_converted(Path(str(weights).strip()).expanduser())
    except ConversionError:
        converted = None  # reported when the run loads the file
    return list(converted_class_names(converted)) if converted is not None else list(option)


def _h5_holds_model(path: Path, plugin: str) -> bool:
    """A legacy HDF5 file holds a whole model when it carries the model's configuration."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            return "model_config" in file.attrs
    except OSError as error:
        raise PluginError(f"{plugin}: option weights: {path} is not a readable HDF5 file ({error})") from error


# --- building and loading --------------------------------------------------------------------


def _build_base(backbone: Backbone, input_size: int, source: WeightsSource) -> Any:
    """The Keras Applications base, with the weights the option asks for."""
    if source.kind == "imagenet":
        return _build_imagenet_base(backbone, input_size)
    base = _call_make_base(backbone, input_size, None)
    if source.kind == "weights_file":
        load_base_weights(base, source.path, backbone)
    return base


def _call_make_base(backbone: Backbone, input_size: int, weights: str | None) -> Any:
    try:
        return backbone.make_base(input_size, weights)
    except ValueError as error:
        raise PluginError(
            f"{backbone.plugin}: cannot build {backbone.description} for input_size {input_size}: {error}"
        ) from error


def _build_imagenet_base(backbone: Backbone, input_size: int) -> Any:
    """Keras fetches the ImageNet weights on first use; when that fails, say how to place them.

    Any exception counts: offline, Keras' download raises a bare ``Exception`` (URL fetch failure).
    """
    try:
        return backbone.make_base(input_size, "imagenet")
    except PluginError:
        raise
    except Exception as error:
        cached = keras_models_dir() / backbone.imagenet_file(input_size)
        raise PluginError(
            f"{backbone.plugin}: could not build {backbone.description} with Keras' ImageNet weights: "
            f"{type(error).__name__}: {_shorten(error)}. If the download failed (no network): Keras "
            f"reads the weights from {cached} once downloaded, so download that file on another "
            "machine and copy it there (KERAS_HOME moves the folder), or set option weights to the "
            "path of a local weights file (.weights.h5, or Keras' own .h5) or of a whole model "
            "(.keras or .h5)."
        ) from error


def keras_models_dir() -> Path:
    """The folder where Keras caches downloaded model weights (``$KERAS_HOME/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def load_base_weights(base: Any, path: Path, backbone: Backbone) -> None:
    """Load a weights file into the freshly built base; refuse one made for another architecture.

    A failed load makes Keras warn once per layer before it raises; those warnings only repeat
    the error, so they are shown only when the load succeeds.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base.load_weights(str(path))
        except Exception as error:
            problem = keras_file_problem(path) or f"{path} does not fit {backbone.description}: {_shorten(error)}"
            raise PluginError(f"{backbone.plugin}: option weights: {problem}") from error
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _shorten(error: Exception, limit: int = 400) -> str:
    """Keras' loading errors can print whole weight tensors; keep their beginning."""
    text = " ".join(str(error).split()).split(" Target variable:")[0]
    return text if len(text) <= limit else text[:limit] + " ..."


@functools.cache
def compat_custom_objects() -> dict[str, type]:
    """Custom objects that let Keras 3 load whole models saved by tf.keras 2.x.

    tf.keras 2.x wrote ``groups: 1`` into every DepthwiseConv2D configuration, a keyword Keras 3
    refuses (keras-team/keras#19151). The replacement class drops it and is otherwise the same
    layer; it saves itself as ``keras.layers.DepthwiseConv2D``, so that a model fine-tuned from
    such a file and saved again loads in plain Keras, without these custom objects.
    """
    import keras

    class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
        """keras.layers.DepthwiseConv2D that accepts (and ignores) tf.keras 2.x's ``groups``."""

        __module__ = "keras.layers"  # Keras' saving records the class's module: name the standard layer's

        def __init__(self, *args: Any, groups: int | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)

    return {"DepthwiseConv2D": DepthwiseConv2D}


def load_whole_model(path: Path, plugin: str, option: str = "weights") -> Any:
    """Load a whole Keras model (``.keras``, or legacy ``.h5`` from tf.keras 2.x) without compiling."""
    import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True, custom_objects=compat_custom_objects())
    except Exception as error:
        # What the file really is, where Keras' own error misleads ("File not found" for a .keras name that is no zip)
        problem = keras_file_problem(path, whole_model=True) or f"cannot load the model in {path}: {type(error).__name__}: {_shorten(error)}"
        raise PluginError(f"{plugin}: option {option}: {problem}") from error


def _load_classifier(source: WeightsSource, plugin: str, input_size: int) -> Any:
    if source.converted is not None:
        return load_converted_weights(source, plugin, input_size)
    return load_whole_model(source.path, plugin)


def load_converted_weights(source: WeightsSource, plugin: str, input_size: int) -> Any:
    """The classifier of a converted file (``.keras`` or ``.weights.h5``): the converter's
    variant built for ``input_size``, the file's weights loaded (they fit any side)."""
    variant = source.converted.variant
    if variant is None:
        raise PluginError(f"{plugin}: option weights: {source.path} holds an {source.converted.architecture}, which this version cannot build")
    model = efficientnet_classifier(len(source.converted.classes), variant.name, input_size)
    try:
        model.load_weights(str(source.path))
    except Exception as error:
        raise PluginError(f"{plugin}: option weights: cannot load {source.path} into the converted {source.converted.architecture}: {_shorten(error)}") from error
    return model


def check_input_size(model: Any, input_size: int, path: Path, plugin: str) -> None:
    """A loaded model must take one (S, S, 3) image input with S the run's input_size."""
    if len(model.inputs) != 1:
        raise PluginError(f"{plugin}: the model in {path} has {len(model.inputs)} inputs; one image input is needed")
    shape = tuple(model.inputs[0].shape)[1:]
    if len(shape) != 3 or shape[2] != 3:
        raise PluginError(f"{plugin}: the model in {path} takes inputs of shape {shape}; RGB images (S, S, 3) are needed")
    height, width, _ = shape
    if any(side not in (None, input_size) for side in (height, width)):
        raise PluginError(
            f"{plugin}: the model in {path} takes {height}x{width}x3 images but the run's input_size "
            f"is {input_size}; set input_size = {height} in the configuration or use a model made "
            f"for {input_size}x{input_size}"
        )


def as_probabilities(model: Any, outputs: str) -> Any:
    """The pretrained classifier ``model`` giving probabilities: itself when its ``outputs`` are
    probabilities, else with a softmax over its (B, K) logits, so No-FT gets rows that sum to 1."""
    if outputs != "logits":
        return model
    import keras

    return keras.Model(model.inputs, keras.layers.Softmax(name="logits_softmax")(model.outputs[0]), name=f"{model.name}_softmax")


def _output_width(model: Any) -> int | None:
    return model.outputs[0].shape[-1] if len(model.outputs) == 1 else None


def layer_output(model: Any, name: str, plugin: str) -> Any:
    """The output of the named layer, where the new head goes (option ``cut_layer``)."""
    names = [layer.name for layer in model.layers]
    if name not in names:
        shown = ", ".join(names[-LAYER_NAMES_SHOWN:])
        raise PluginError(
            f"{plugin}: option cut_layer = {name!r} is not a layer of the model "
            f"({len(names)} layers; those nearest the top: {shown})"
        )
    return model.get_layer(name).output


def _below_top(model: Any, plugin: str) -> Any:
    """The input of a loaded model's last layer: the features its own top classified."""
    top = model.layers[-1]
    features = top.input
    if isinstance(features, (list, tuple)):
        raise PluginError(
            f"{plugin}: cannot tell which features lie below the top layer {top.name!r} of the loaded "
            "model; set option cut_layer to the layer to put the new head on"
        )
    return features


def attach_head(
    source: Any, features: Any, classes: int, dropout: float, model_name: str, plugin: str
) -> tuple[Any, list[Any]]:
    """Put the new top on ``features`` of ``source``: (pooling if spatial) (dropout) dense softmax.

    Returns the new model, from the source model's input to the probabilities and sharing its
    layers, and the new layers. Their names avoid the source's, since a loaded model may itself
    have been built here.
    """
    import keras

    taken = {layer.name for layer in source.layers}
    head = []
    if len(features.shape) == 4:
        head.append(keras.layers.GlobalAveragePooling2D(name=_free_name(f"{HEAD_LAYER_NAME}_pool", taken)))
    elif len(features.shape) != 2:
        raise PluginError(
            f"{plugin}: the features at the cut have shape {tuple(features.shape)}; the head takes "
            "(batch, features) or (batch, height, width, channels); choose another cut_layer"
        )
    if dropout > 0:
        head.append(keras.layers.Dropout(dropout, name=_free_name(f"{HEAD_LAYER_NAME}_dropout", taken)))
    head.append(keras.layers.Dense(classes, activation="softmax", name=_free_name(HEAD_LAYER_NAME, taken)))

    x = features
    for layer in head:
        x = layer(x)
    return keras.Model(source.input, x, name=model_name), head


def _free_name(name: str, taken: set[str]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate
