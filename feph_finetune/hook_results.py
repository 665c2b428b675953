"""What each hook must return, checked where every hook is called (:meth:`feph_finetune.plugins.Plugins.call`).

A plugin's return value is its promise to the core (see :mod:`feph_finetune.hookspecs`); one that
breaks it would otherwise fail later in the core or in another plugin (a traceback, a run blamed
on the wrong party) or, worse, give a "done" run with wrong results (negative class weights negate
the loss). :func:`result_problem` says what is wrong with a result in one sentence, which the
caller raises as the plugin's own failure, before the result is used: at configuration time
(``plugin_traits``, ``model_input``) that refuses the configuration with exit 2, in a run it
fails the run naming the plugin and hook, before any training that would be wasted. A result
that keeps the promise is then given to the core in plain Python types where the plugin used
equivalent ones (:func:`normalised_result`: numpy integer class indices or image sides, a ``Fraction`` or
``np.float32`` weight, ``np.int64`` epochs), which the libraries downstream may not take.

Hooks whose result the core ignores (``register_executors`` and the tracking hooks) are not checked.
The functions a hook returns are checked where the core calls them: :func:`frame_problem`,
:func:`batch_problem`, :func:`wrap_problem`, :func:`state_problem` (and ``expand``'s result in
:mod:`feph_finetune.data.preparation`).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from feph_finetune import hookspecs
from feph_finetune.api import Augmentation, BuiltModel, Dataset, DroppedEntry, FrameResult, Preprocessing, Sample, TrainingStage
from feph_finetune.config.options import Option, name_problem
from feph_finetune.config.schema import EXPERIMENT_OPTIONS
from feph_finetune.data.class_mapping import class_names_problem
from feph_finetune.results.records import metrics_problems
from feph_finetune.results.store import jsonable, unreadable_json_problem
from feph_finetune.training.compiling import all_layers


def result_problem(hook: str, result: Any, arguments: Mapping[str, Any]) -> str:
    """What is wrong with ``result``, returned by an implementation of ``hook`` called with
    ``arguments`` ('' when nothing is): a sentence starting "must return"."""
    check = _CHECKS.get(hook)
    return check(result, arguments) if check is not None else ""


def normalised_result(hook: str, result: Any) -> Any:
    """``result`` of ``hook``, which :func:`result_problem` accepted, in the plain Python types the
    core uses (a new object for the hooks that have such types to convert)."""
    normalise = _NORMALISERS.get(hook)
    return normalise(result) if normalise is not None and result is not None else result


def _kind(value: Any) -> str:
    """How a returned value reads in a message: its type and, when short, its value."""
    try:
        text = repr(value)
    except Exception:  # a plugin's object whose repr raises is still named by its type
        text = ""
    return f"{type(value).__name__} {text}" if text and len(text) <= 80 else f"a value of type {type(value).__name__}"


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    """An integer (numpy's too), not a bool: 1.5 epochs or a class index of 1.0 is no count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_name(value: Any) -> bool:
    """Text with something to show: an empty or blank name is a column, a stage or a file with no title."""
    return isinstance(value, str) and bool(value.strip())


def _options_problem(declared: Any, arguments: Mapping[str, Any]) -> str:
    """None, or a mapping of addressable option names (:func:`~feph_finetune.config.options.name_problem`:
    "a.b" could be declared but never set) to defaults or Options whose defaults are JSON values:
    a default goes into the run's id and config.json like a configured value (an object there
    gave an id that changed on every call and a run that crashed writing it; NaN was written as
    NaN, which a configured value may not be)."""
    if declared is None:
        return ""
    if not isinstance(declared, Mapping):
        return f"must return a mapping of option names to defaults or Options, or None, got {_kind(declared)}"
    for name, value in declared.items():
        unaddressable = name_problem(name)
        if unaddressable:
            return f"must return option names that a configuration can address: option {unaddressable}"
        default = value.default if isinstance(value, Option) else value
        try:
            problem = _json_value_problem(default)
        except RecursionError:  # a list that holds itself
            problem = "a value nested too deeply"
        if problem:
            return (f"must return defaults that are JSON values (text, finite numbers, true/false, None, "
                    f"lists and tables of them), got {problem} in the default of option {str(name)!r}")
    return ""  # a default outside its own declaration cannot be declared (Option checks it: default_problems)


def _json_value_problem(value: Any) -> str:
    """What in ``value`` is no JSON value, in words ('' when it all is): text, a finite number,
    a bool, None, or a list or dict (text keys) of those."""
    if value is None or isinstance(value, (str, bool, int)):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else f"float {value!r}"
    if isinstance(value, list):
        return next(filter(None, map(_json_value_problem, value)), "")
    if isinstance(value, dict):
        keys = [key for key in value if not isinstance(key, str)]
        if keys:
            return f"a table key {_kind(keys[0])}"
        return next(filter(None, map(_json_value_problem, value.values())), "")
    return _kind(value)


def _traits_problem(declared: Any, arguments: Mapping[str, Any]) -> str:
    if declared is None or isinstance(declared, str):
        declared = () if declared is None else (declared,)
    elif not isinstance(declared, (list, tuple, set, frozenset)):
        return f"must return a collection of trait names, or None, got {_kind(declared)}"
    not_names = [item for item in declared if not isinstance(item, str)]
    if not_names:
        return f"must return trait names (text), got {_kind(not_names[0])} among {list(declared)!r}"
    unknown = sorted(set(declared) - set(hookspecs.TRAITS))
    if unknown:
        return f"must return known traits, got unknown trait(s) {', '.join(map(repr, unknown))}; known: {', '.join(hookspecs.TRAITS)}"
    return ""


#: The image sides ``model_input`` may ask for: what the ``input_size`` setting accepts.
_SIZES = EXPERIMENT_OPTIONS["input_size"]


def _model_input_problem(wanted: Any, arguments: Mapping[str, Any]) -> str:
    if wanted is None:
        return ""
    if not isinstance(wanted, Mapping):
        return f"must return None or a dict with 'size', 'fixed', 'classes', got {_kind(wanted)}"
    foreign = sorted(map(str, set(wanted) - {"size", "fixed", "classes"}))
    size, fixed, classes = wanted.get("size"), wanted.get("fixed", False), wanted.get("classes")
    if foreign:
        return f"must return a dict with the keys 'size', 'fixed', 'classes' only, got {', '.join(map(repr, foreign))}"
    if size is not None and not (_is_whole(size) and _SIZES.minimum <= size <= _SIZES.maximum):
        return f"must return a 'size' that is a whole number of pixels from {_SIZES.minimum} to {_SIZES.maximum} (what input_size accepts), got {_kind(size)}"
    if not isinstance(fixed, bool):
        return f"must return a 'fixed' that is True or False, got {_kind(fixed)}"
    if fixed and size is None:
        return "must return a 'size' with 'fixed': True"
    if classes is not None and not (isinstance(classes, (list, tuple)) and all(isinstance(name, str) and name for name in classes)
                                    and len(set(classes)) == len(classes)):
        return f"must return 'classes' as a list of distinct non-empty names, got {_kind(classes)}"
    return ""


def _normalised_model_input(wanted: Mapping) -> dict[str, Any]:
    """``model_input``'s answer with its 'size' an ``int`` (a numpy integer is the same side; the
    core compares and stores it as a plain int) and its 'classes' a list."""
    plain = dict(wanted)
    if plain.get("size") is not None:
        plain["size"] = int(plain["size"])
    if plain.get("classes") is not None:
        plain["classes"] = list(plain["classes"])
    return plain


def _dataset_problem(dataset: Any, arguments: Mapping[str, Any]) -> str:
    """A Dataset: unique non-empty class names; a list of Samples, each with a path, a label
    within the classes (a numpy integer too), text groups, a whole frame number or None, a split
    set for all or none; dropped entries whose reasons are declared; a text fingerprint (part of
    every run's id) and text notes."""
    if not isinstance(dataset, Dataset):
        return f"must return a feph_finetune.Dataset, got {type(dataset).__name__}"
    classes = dataset.classes
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(name, str) and name for name in classes) or len(set(classes)) != len(classes):
        return f"must return classes that are unique non-empty names, got {_kind(classes)}"
    if not isinstance(dataset.samples, list) or not all(isinstance(sample, Sample) for sample in dataset.samples):
        return f"must return samples that are a list of feph_finetune.Sample, got {_kind(dataset.samples)}"
    bad = [sample.path for sample in dataset.samples if not (_is_whole(sample.label) and 0 <= sample.label < len(classes))]
    if bad:
        return f"must return labels within 0..{len(classes) - 1}; sample {bad[0]} has one outside"
    for sample in dataset.samples:
        if broken := _sample_problem(sample):
            part, words = broken
            return f"must return samples whose {part} is {words}, got {_kind(getattr(sample, part))} for sample {sample.path}"
    splits = {sample.split for sample in dataset.samples}
    if splits - {None, "train", "test"} or (dataset.presplit and None in splits):
        return "must return samples whose split is 'train' or 'test', set for every sample or for none"
    if not (isinstance(dataset.drop_reasons, Mapping) and all(isinstance(key, str) and isinstance(value, str) for key, value in dataset.drop_reasons.items())):
        return f"must return drop_reasons that map reasons (text) to their meaning (text), got {_kind(dataset.drop_reasons)}"
    if not isinstance(dataset.dropped_entries, list):
        return f"must return dropped_entries that are a list of feph_finetune.DroppedEntry, got {_kind(dataset.dropped_entries)}"
    undeclared = [entry for entry in dataset.dropped_entries if not (isinstance(entry, DroppedEntry) and entry.reason in dataset.drop_reasons)]
    if undeclared:
        return f"must return dropped entries (feph_finetune.DroppedEntry) whose reason is one of drop_reasons, got {_kind(undeclared[0])}"
    if not isinstance(dataset.fingerprint, str):
        return f"must return a fingerprint that is text (part of every run's id), got {_kind(dataset.fingerprint)}"
    if not (isinstance(dataset.notes, list) and all(isinstance(note, str) for note in dataset.notes)):
        return f"must return notes that are a list of texts, got {_kind(dataset.notes)}"
    return ""


def _sample_problem(sample: Sample) -> tuple[str, str] | None:
    """The field of ``sample`` that breaks the promise and what it must be, or None."""
    if not isinstance(sample.path, Path):
        return "path", "a pathlib.Path"
    if not (isinstance(sample.groups, Mapping) and all(isinstance(key, str) and isinstance(group, str) for key, group in sample.groups.items())):
        return "groups", "a dict of grouping key (text) to group (text)"
    if not (sample.frame is None or (_is_whole(sample.frame) and sample.frame >= 0)):
        return "frame", "a whole number from 0 or None"
    return None


def _normalised_dataset(dataset: Dataset) -> Dataset:
    """Labels and frame numbers as ``int`` (a numpy integer label is the same class index)."""
    if all(type(sample.label) is int and type(sample.frame) in (int, type(None)) for sample in dataset.samples):
        return dataset
    samples = [replace(sample, label=int(sample.label), frame=None if sample.frame is None else int(sample.frame)) for sample in dataset.samples]
    return replace(dataset, samples=samples)


def _functions_problem(result: Any, kind: type, names: tuple[str, ...]) -> str:
    """None, or a ``kind`` whose ``names`` are each a function or None."""
    if result is None:
        return ""
    if not isinstance(result, kind):
        return f"must return a feph_finetune.{kind.__name__} or None, got {_kind(result)}"
    for name in names:
        part = getattr(result, name)
        if part is not None and not callable(part):
            return f"must return a {kind.__name__} whose {name} is a function or None, got {_kind(part)}"
    return ""


def _preprocess_problem(step: Any, arguments: Mapping[str, Any]) -> str:
    """None, or a Preprocessing whose parts are functions or None, ``cache_key`` text (it names the
    crop cache's entries) and ``normalizes`` True or False (it decides a refusal)."""
    problem = _functions_problem(step, Preprocessing, ("frame", "fit", "batch", "state", "restore"))
    if problem or step is None:
        return problem
    if not isinstance(step.cache_key, str):
        return f"must return a Preprocessing whose cache_key is text, got {_kind(step.cache_key)}"
    if not isinstance(step.normalizes, bool):
        return f"must return a Preprocessing whose normalizes is True or False, got {_kind(step.normalizes)}"
    return ""


def _augment_problem(augmentation: Any, arguments: Mapping[str, Any]) -> str:
    return _functions_problem(augmentation, Augmentation, ("expand", "batch"))


def _model_problem(built: Any, arguments: Mapping[str, Any]) -> str:
    """A BuiltModel: a Keras ``model`` with one output per class, ``head`` layers of that model
    (a head stage trains them: a layer from elsewhere would train nothing, without a word),
    ``pretrained`` a Keras model or None with usable ``pretrained_classes``, ``normalizes_input``
    True or False."""
    if not isinstance(built, BuiltModel):
        return f"must return a feph_finetune.BuiltModel, got {_kind(built)}"
    import keras  # build_model has imported it already

    if not isinstance(built.model, keras.Model):
        return f"must return a BuiltModel whose model is a Keras model, got {_kind(built.model)}"
    classes = getattr(arguments.get("context"), "classes", None)
    outputs = getattr(built.model, "output_shape", None)
    if classes and isinstance(outputs, tuple) and outputs and isinstance(outputs[-1], int) and outputs[-1] != len(classes):
        return f"must return a model with one output per class ({len(classes)}), got a model with {outputs[-1]} outputs"
    if not isinstance(built.head, (list, tuple)) or not all(isinstance(layer, keras.layers.Layer) for layer in built.head):
        return f"must return a BuiltModel whose head is a list of Keras layers, got {_kind(built.head)}"
    own = {id(layer) for layer in all_layers(built.model)}
    foreign = [layer for layer in built.head if id(layer) not in own]
    if foreign:
        return f"must return a BuiltModel whose head layers are layers of its model, got layer {foreign[0].name!r}, which is not"
    if built.pretrained is not None and not isinstance(built.pretrained, keras.Model):
        return f"must return a BuiltModel whose pretrained is a Keras model or None, got {_kind(built.pretrained)}"
    if built.pretrained is not None and built.pretrained_classes is not None and (problem := class_names_problem(built.pretrained_classes)):
        return f"must return pretrained_classes that name each output of pretrained: {problem}"
    if not isinstance(built.normalizes_input, bool):
        return f"must return a BuiltModel whose normalizes_input is True or False, got {_kind(built.normalizes_input)}"
    return ""


def _schedule_problem(stages: Any, arguments: Mapping[str, Any]) -> str:
    """A non-empty list of TrainingStage, each with a name (text, not blank), ``trainable``
    ``"head"`` or ``"all"``, ``epochs`` a whole number from 0, ``optimizer`` a Keras optimizer
    instance, ``wrap`` a function or None, ``label`` text: what training reads of each stage."""
    if not isinstance(stages, (list, tuple)) or not all(isinstance(stage, TrainingStage) for stage in stages):
        return f"must return a list of feph_finetune.TrainingStage, got {_kind(stages)}"
    if not stages:  # stages of 0 epochs are the configuration's (adam's epochs = 0): an untrained head, meant
        return ("must return at least one TrainingStage, got none: the run would train nothing without a word; "
                "an experiment that evaluates the pretrained model untrained sets fine_tune = false")
    import keras  # build_model has imported it already

    for number, stage in enumerate(stages, 1):
        for part, words, holds in _STAGE_PROMISES:
            if not holds(getattr(stage, part), keras):
                return f"must return stages whose {part} is {words}, got {_kind(getattr(stage, part))} in stage {number}"
    return ""


#: Each TrainingStage field training reads, what it must be in words, and ``holds(value, keras)``, in the order they are checked.
_STAGE_PROMISES: tuple[tuple[str, str, Callable[[Any, Any], bool]], ...] = (
    ("name", "text, not empty or blank", lambda value, keras: _is_name(value)),
    ("trainable", "'head' or 'all'", lambda value, keras: isinstance(value, str) and value in ("head", "all")),
    ("epochs", "a whole number from 0", lambda value, keras: _is_whole(value) and value >= 0),
    ("optimizer", "a Keras optimizer instance (keras.optimizers.Adam(...))", lambda value, keras: isinstance(value, keras.optimizers.Optimizer)),
    ("wrap", "a function (Keras model -> Keras model sharing its weights) or None", lambda value, keras: value is None or callable(value)),
    ("label", "text", lambda value, keras: isinstance(value, str)),
)


def _normalised_schedule(stages: list[TrainingStage]) -> list[TrainingStage]:
    """Epochs as ``int`` (Keras counts epochs with Python ints; ``np.int64(2)`` is the same count)."""
    return [stage if type(stage.epochs) is int else replace(stage, epochs=int(stage.epochs)) for stage in stages]


def wrap_problem(given: Any, wrapped: Any) -> str:
    """What is wrong with what a stage's ``wrap`` returned for the Keras model ``given`` ('' when
    nothing is): a Keras model that holds every weight of ``given`` (those are what the run saves
    and predicts with: a copy would be trained while the run reports the untrained model)."""
    import keras

    if not isinstance(wrapped, keras.Model):
        return f"wrap must return a Keras model, got {_kind(wrapped)}"
    shared = {id(weight) for weight in wrapped.weights}
    if not all(id(weight) in shared for weight in given.weights):
        return "wrap must return a model that shares the given model's weights, got one that does not hold them (a copy?)"
    return ""


#: The bounds of a class weight other than 0. Training computes the weighted loss in float32:
#: a weight below float32's smallest normal numbers (5e-324 is 0 there) trains nothing while
#: the run reads "done", and one near float32's largest (3.4e38) overflows the loss. Weights
#: from class frequencies (the paper's n / (classes * n_c)) lie within 1e-3..1e3 for any
#: imbalance a dataset of under a billion images can have; the bounds leave three decades beyond.
MIN_CLASS_WEIGHT, MAX_CLASS_WEIGHT = 1e-6, 1e6


def _weights_problem(weights: Any, arguments: Mapping[str, Any]) -> str:
    """One weight per class index, each 0 or within :data:`MIN_CLASS_WEIGHT`..:data:`MAX_CLASS_WEIGHT`,
    not all 0 (negative weights negate the loss; NaN makes it NaN; a zero weight leaves a class
    out of the loss, which may be meant)."""
    if weights is None:
        return ""
    classes = len(getattr(arguments.get("context"), "classes", ()) or ())
    expected = f"a dict of one weight per class index 0..{classes - 1}"
    if not isinstance(weights, Mapping):
        return f"must return {expected}, or None, got {_kind(weights)}"
    indices = [key for key in weights if isinstance(key, numbers.Integral) and not isinstance(key, bool) and 0 <= key < classes]
    foreign, missing = [key for key in weights if key not in indices], sorted(set(range(classes)) - {int(key) for key in indices})
    if foreign or missing:
        got = "; ".join(part for part in (foreign and f"keys that are no class index: {', '.join(map(repr, foreign))}",
                                          missing and f"no weight for {', '.join(map(str, missing))}") if part)
        return f"must return {expected}, got {got}"
    bad = {key: value for key, value in weights.items() if not (_is_real(value) and (value == 0 or MIN_CLASS_WEIGHT <= value <= MAX_CLASS_WEIGHT))}
    if bad:
        key, value = next(iter(bad.items()))
        return (f"must return weights that are 0 or from {MIN_CLASS_WEIGHT:g} to {MAX_CLASS_WEIGHT:g}, got {_kind(value)} for class {key}"
                + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    if not any(weights.values()):
        return "must return at least one weight above 0, got 0 for every class: nothing would be learned"
    return ""


def _normalised_weights(weights: Mapping) -> dict[int, float]:
    """``{int: float}``: Keras converts class weights to tensors, which takes no ``Fraction``, and
    a numpy key is the same class index."""
    return {int(key): float(value) for key, value in weights.items()}


def _metrics_problem(metrics: Any, arguments: Mapping[str, Any]) -> str:
    """A dict of JSON metrics, each named by text that is not blank, that the run's record
    accepts (no NaN or infinity anywhere: :func:`feph_finetune.results.records.metrics_problems`)
    and that its ``result.json`` can be read back with (:func:`feph_finetune.results.store.unreadable_json_problem`:
    a metric nested too deeply, one whose keys collide once written as text, one too large)."""
    if metrics is None:
        return ""
    if not isinstance(metrics, dict):
        return f"must return a dict of metric name: value, or None, got {_kind(metrics)}"
    for name, value in metrics.items():
        if not isinstance(name, str):
            return f"must return metric names that are text, got {_kind(name)}"
        if not name.strip():
            return f"must return metric names that are not empty or blank (a report column without a title), got {name!r}"
        try:
            json.dumps(value, default=jsonable, allow_nan=False)
        except ValueError:
            return f"must return finite numbers, got NaN or infinity in metric {name!r}: {value!r}"[:300]
        except (TypeError, RecursionError) as error:
            return f"must return metrics that are JSON (numbers, text, lists, dicts), got in metric {name!r}: {error}"
    unreadable = unreadable_json_problem({"metrics": metrics})  # as the metrics sit in result.json
    if unreadable:
        return f"must return metrics that the run's result.json can hold: written there, {unreadable}"
    problems = metrics_problems(json.loads(json.dumps(metrics, default=jsonable)), getattr(arguments.get("context"), "classes", None))
    return f"must return metrics of the record's shape, got {'; '.join(problems)}" if problems else ""


def frame_problem(result: Any) -> str:
    """What is wrong with the result of a ``Preprocessing.frame`` step ('' when nothing is): a
    :class:`feph_finetune.FrameResult` whose image is uint8 RGB (H, W, 3), H and W above 0."""
    if not isinstance(result, FrameResult):
        return f"frame must return a feph_finetune.FrameResult, got {_kind(result)}"
    image = result.image
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.size):
        got = f"{image.dtype} of shape {image.shape}" if isinstance(image, np.ndarray) else _kind(image)
        return f"frame must return a FrameResult whose image is uint8 RGB of shape (H, W, 3), got {got}"
    return ""


def state_problem(state: Any) -> str:
    """What is wrong with what a ``Preprocessing.state`` returned ('' when nothing is): a dict of
    text keys (not empty) to arrays that ``numpy.savez`` stores without pickling and ``predict``
    reads back: numbers, bools or text, or what ``np.asarray`` turns into those (a list of
    floats). An object array would be written and then refused by ``predict``."""
    if not isinstance(state, Mapping):
        return f"state must return a dict of name: NumPy array, got {_kind(state)}"
    for key, value in state.items():
        if not (isinstance(key, str) and key):
            return f"state must return names that are text, not empty, got {_kind(key)}"
        try:
            kind = np.asarray(value).dtype.kind
        except Exception as error:  # a ragged list; an object whose __array__ raises
            return f"state must return arrays, got for {key!r} a value NumPy cannot make an array of ({type(error).__name__})"
        if kind not in _STORABLE_KINDS:
            return f"state must return arrays of numbers, bools or text, got for {key!r} {_kind(value)}"
    return ""


#: The dtype kinds ``numpy.load`` reads without pickling: bool, integers, floats, complex, text.
_STORABLE_KINDS = "biufcUS"


def normalised_state(state: Mapping) -> dict[str, np.ndarray]:
    """A ``state`` that :func:`state_problem` accepted, as the arrays a bundle stores."""
    return {key: np.asarray(value) for key, value in state.items()}


def _sizes(dims: tuple) -> str:
    """A batch's shape in words: ``(B, 32, 32, 3)``, B for a size known only when it runs."""
    return "(" + ", ".join("B" if size is None else str(size) for size in dims) + ")"


def batch_problem(function: str, given: Any, returned: Any) -> str:
    """What is wrong with what a ``batch`` function (of a Preprocessing or an Augmentation)
    returned for the float batch ``given`` ('' when nothing is): a float batch (tensor or array)
    of the shape it was given, the model's input. Read from the static shape, so a batch inside
    ``tf.data`` is checked once, when its pipeline is built, before any training."""
    shape, dtype = getattr(returned, "shape", None), getattr(returned, "dtype", None)
    try:
        floating = np.dtype(getattr(dtype, "as_numpy_dtype", dtype)).kind == "f"
        dims, expected = tuple(shape), tuple(given.shape)
    except TypeError:
        return f"{function} must return a float batch (a tensor or array), got {_kind(returned)}"
    same = len(dims) == len(expected) and all(a is None or b is None or a == b for a, b in zip(dims[1:], expected[1:]))
    if not (floating and same):
        return f"{function} must return a float batch of the shape it was given {_sizes(expected)}, got {getattr(dtype, 'name', dtype)} {_sizes(dims)}"
    return ""


_CHECKS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "plugin_options": _options_problem,
    "plugin_traits": _traits_problem,
    "model_input": _model_input_problem,
    "load_dataset": _dataset_problem,
    "preprocess": _preprocess_problem,
    "augment": _augment_problem,
    "build_model": _model_problem,
    "optimizer_schedule": _schedule_problem,
    "weight_classes": _weights_problem,
    "evaluate": _metrics_problem,
}

_NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "model_input": _normalised_model_input,
    "load_dataset": _normalised_dataset,
    "optimizer_schedule": _normalised_schedule,
    "weight_classes": _normalised_weights,
}
