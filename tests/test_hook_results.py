"""What a plugin's hook returns is checked where the hook is called: a result that breaks the
hookspec's promise is that plugin's failure, named, before the result is used (issue 22)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from feph_finetune.api import Augmentation, BuiltModel, Dataset, DroppedEntry, FrameResult, Preprocessing, Sample, TrainingStage
from feph_finetune.config.options import Option
from feph_finetune.config.matrix import build_matrix
from feph_finetune.config.reading import ConfigError, read_config
from feph_finetune.hookspecs import hookimpl
from feph_finetune.plugins import PluginCallError, get_plugins

from conftest import TinyMatrix, write_matrix

CLASSES = ("a", "b", "c")


class Returns:
    """A plugin registered for one test: each of its hooks returns ``value``."""

    def __init__(self, value):
        self.value = value

    @hookimpl
    def plugin_traits(self, options):
        return self.value

    @hookimpl
    def model_input(self, options):
        return self.value

    @hookimpl
    def load_dataset(self, root, settings, decode):
        return self.value

    @hookimpl
    def preprocess(self, context):
        return self.value

    @hookimpl
    def augment(self, context):
        return self.value

    @hookimpl
    def build_model(self, context):
        return self.value

    @hookimpl
    def optimizer_schedule(self, context):
        return self.value

    @hookimpl
    def weight_classes(self, labels, context):
        return self.value

    @hookimpl
    def evaluate(self, y_true, y_prob, context):
        return self.value


def call(hook: str, value, **arguments):
    """Plugin 'odd' returning ``value`` from ``hook``, called as the core calls it."""
    plugins = get_plugins()
    plugins.pm.register(Returns(value), name="odd")
    context = SimpleNamespace(classes=CLASSES, options={})
    passed = {"options": {}} if hook in ("plugin_traits", "model_input") else {"context": context}
    if hook == "load_dataset":
        passed = {"root": Path("data"), "settings": {}, "decode": False}
    if hook == "weight_classes":
        passed["labels"] = np.array([0, 1, 2])
    if hook == "evaluate":
        passed.update(y_true=np.array([0, 1, 2]), y_prob=np.eye(3))
    return plugins.call("odd", hook, **{**passed, **arguments})


def refused(hook: str, value) -> str:
    """The message of the plugin failure ``value`` from ``hook`` is; asserts plugin and hook are named."""
    with pytest.raises(PluginCallError) as failed:
        call(hook, value)
    assert (failed.value.plugin, failed.value.hook) == ("odd", hook)
    assert f"plugin 'odd' failed in hook '{hook}'" in str(failed.value)
    return str(failed.value)


def stage(epochs=1, **fields):
    import keras

    return TrainingStage(**{"name": "adam", "trainable": "all", "epochs": epochs, "optimizer": keras.optimizers.Adam(), **fields})


def odd_stage(**fields):
    """A stage with ``fields`` set after it was made, as a plugin may (the check sees what the core would)."""
    made = stage()
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def dataset(**fields) -> Dataset:
    """Two samples of classes a, b, with ``fields`` of the Dataset or (``sample_*``) of its first sample replaced."""
    samples = [Sample(Path("data/x.png"), 0, {"sequence": "s1"}, frame=3), Sample(Path("data/y.png"), 1, {"sequence": "s2"})]
    samples[0] = replace(samples[0], **{key[len("sample_"):]: value for key, value in fields.items() if key.startswith("sample_")})
    made = Dataset(Path("data"), samples, ("a", "b"), drop_reasons={"unreadable": "the file does not decode"}, fingerprint="f00d")
    return replace(made, **{key: value for key, value in fields.items() if not key.startswith("sample_")})


@pytest.mark.parametrize("hook,value,said", [
    ("plugin_traits", ["flying", 5], "trait names (text), got int 5"),  # sorted() of mixed types: a TypeError traceback
    ("plugin_traits", 5, "a collection of trait names"),
    ("plugin_traits", [["x"]], "trait names (text), got list ['x']"),
    ("plugin_traits", ["flying"], "unknown trait(s) 'flying'"),
    ("model_input", {"size": "big"}, "'size' that is a whole number"),  # was ignored without a word
    ("model_input", {"size": 2**70}, "pixels from 32 to 1024 (what input_size accepts), got int 1180591620717411303424"),  # a failed run blamed on the core
    ("model_input", {"size": 31, "fixed": True}, "pixels from 32 to 1024"),
    ("model_input", {"size": 64, "fixed": "yes"}, "'fixed' that is True or False"),
    ("model_input", {"side": 64}, "'size', 'fixed', 'classes' only, got 'side'"),
    ("model_input", 64, "None or a dict"),
    ("preprocess", lambda x: x, "feph_finetune.Preprocessing or None, got function"),  # was an AttributeError in the core
    ("preprocess", Preprocessing(batch="normalise"), "whose batch is a function or None, got str"),
    ("augment", {"batch": None}, "feph_finetune.Augmentation or None, got dict"),
    ("augment", Augmentation(expand=3), "whose expand is a function"),
    ("build_model", None, "feph_finetune.BuiltModel, got NoneType"),
    ("build_model", BuiltModel(model="a model", head=[]), "model is a Keras model, got str"),
    ("optimizer_schedule", [], "at least one TrainingStage, got none: the run would train nothing"),  # a "done" run that trained nothing
    ("optimizer_schedule", None, "a list of feph_finetune.TrainingStage, got NoneType"),
    ("weight_classes", {0: -1.0, 1: -1.0, 2: -1.0}, "0 or from 1e-06 to 1e+06, got float -1.0 for class 0 (and 2 more)"),  # a "done" run, loss negated
    ("weight_classes", {0: math.nan, 1: 1.0, 2: 1.0}, "0 or from 1e-06 to 1e+06, got float nan for class 0"),  # blamed on the optimizer
    ("weight_classes", {0: 5e-324, 1: 5e-324, 2: 5e-324}, "got float 5e-324 for class 0"),  # 0 in float32: a "done" run that learned nothing
    ("weight_classes", {0: 1e308, 1: 1.0, 2: 1.0}, "got float 1e+308 for class 0"),  # inf in float32: blamed on the core
    ("weight_classes", {0: 1.0, "x": 2, 99: 3.0}, "keys that are no class index: 'x', 99; no weight for 1, 2"),  # a TypeError in the core
    ("weight_classes", {0: 0, 1: 0.0, 2: 0}, "at least one weight above 0"),
    ("weight_classes", {0: 1.0, 1: True, 2: 1.0}, "got bool True for class 1"),
    ("weight_classes", [1.0, 1.0, 1.0], "a dict of one weight per class index 0..2"),
    ("evaluate", {"kappa": math.nan}, "finite numbers, got NaN or infinity in metric 'kappa'"),  # blamed on the core's record
    ("evaluate", {"kappa": -math.inf}, "in metric 'kappa'"),
    ("evaluate", {"per_class": [0.5, math.nan]}, "in metric 'per_class'"),
    ("evaluate", {"accuracy": 1.5}, "metrics.accuracy: expected a fraction from 0 to 1 or null"),
    ("evaluate", {"sensitivity": {"a": 1.0}}, "metrics.sensitivity: expected one value per name of classes"),
    ("evaluate", {"model": object()}, "JSON (numbers, text, lists, dicts), got in metric 'model'"),
    ("evaluate", {3: 0.5}, "metric names that are text, got int 3"),
    ("evaluate", [["accuracy", 0.5]], "a dict of metric name: value, or None, got list"),
    ("evaluate", "accuracy=0.5", "a dict of metric name: value, or None, got str"),
    ("evaluate", 0.5, "a dict of metric name: value, or None, got float"),
    ("evaluate", {"": 0.3}, "metric names that are not empty or blank (a report column without a title), got ''"),  # a report column with no header
    ("evaluate", {" \t": 0.3}, "got ' \\t'"),
    ("preprocess", Preprocessing(cache_key=3), "whose cache_key is text, got int 3"),
    ("preprocess", Preprocessing(normalizes="yes"), "whose normalizes is True or False, got str 'yes'"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_result_that_breaks_the_hookspec_is_the_plugins_failure_naming_it(hook, value, said):
    message = refused(hook, value)
    assert said in message, message


@pytest.mark.parametrize("hook,value", [
    ("plugin_traits", None), ("plugin_traits", "normalizes_pixels"), ("plugin_traits", {"pretrained_classifier"}), ("load_dataset", dataset()),
    ("model_input", None), ("model_input", {"size": 260, "fixed": False, "classes": ["x", "y"]}),
    ("preprocess", None), ("preprocess", Preprocessing(batch=lambda x: x)), ("augment", Augmentation()),
    ("optimizer_schedule", [stage(0), stage(1)]), ("optimizer_schedule", [stage(0)]),  # 0 epochs: the configuration's choice
    ("weight_classes", None), ("weight_classes", {0: 0.0, 1: 2, 2: 0.5}),
    ("evaluate", None), ("evaluate", {"accuracy": np.float64(0.5), "kappa": -0.25, "sensitivity": {"a": 1.0, "b": None, "c": 0}}),
], ids=lambda value: value if isinstance(value, str) else type(value).__name__)
def test_a_result_that_keeps_the_promise_is_returned_unchanged(hook, value):
    assert call(hook, value) == value


def test_class_weights_of_numpy_keys_and_fractions_are_given_to_the_core_as_ints_and_floats():
    """``{np.int64(i): Fraction(1, 3)}`` passed the check, then Keras failed converting the
    Fraction ("failed in the core"); a numpy float or int is the same weight."""
    from fractions import Fraction

    weights = call("weight_classes", {np.int64(0): Fraction(1, 3), np.int32(1): np.float32(0.5), 2: 2})
    assert weights == {0: 1 / 3, 1: 0.5, 2: 2.0}
    assert [(type(key), type(value)) for key, value in weights.items()] == [(int, float)] * 3


def test_a_numpy_integer_size_from_model_input_is_given_to_the_core_as_an_int():
    """``{"size": np.int64(64)}`` was refused ("got int64 np.int64(64)") although a numpy integer
    is the same side, as the README promises for every hook."""
    wanted = call("model_input", {"size": np.int64(64), "fixed": True, "classes": ("x", "y")})
    assert wanted == {"size": 64, "fixed": True, "classes": ["x", "y"]}
    assert type(wanted["size"]) is int


def test_numpy_epochs_are_given_to_the_core_as_an_int():
    schedule = call("optimizer_schedule", [stage(np.int64(2)), stage(0)])
    assert [(type(stage.epochs), stage.epochs) for stage in schedule] == [(int, 2), (int, 0)]


@pytest.mark.parametrize("fields,said", [
    ({"fingerprint": object()}, "a fingerprint that is text (part of every run's id), got object"),  # a run id that changed on every call
    ({"sample_path": "data/x.png"}, "samples whose path is a pathlib.Path, got str 'data/x.png'"),
    ({"sample_groups": {"sequence": 1}}, "samples whose groups is a dict of grouping key (text) to group (text)"),
    ({"sample_frame": -1}, "samples whose frame is a whole number from 0 or None, got int -1"),
    ({"sample_label": 1.0}, "labels within 0..1; sample data/x.png has one outside"),
    ({"dropped_entries": [DroppedEntry(3, "z.png", "missing")]}, "dropped entries (feph_finetune.DroppedEntry) whose reason is one of drop_reasons"),
    ({"notes": "one note"}, "notes that are a list of texts, got str 'one note'"),
    ({"samples": (Sample(Path("data/x.png"), 0),)}, "samples that are a list of feph_finetune.Sample, got a value of type tuple"),
], ids=["fingerprint", "path-text", "group-int", "frame-negative", "label-float", "reason-undeclared", "notes-text", "samples-tuple"])
def test_a_dataset_whose_parts_break_the_promise_is_the_format_plugins_failure(fields, said):
    message = refused("load_dataset", dataset(**fields))
    assert said in message, message


def test_numpy_labels_and_frames_of_a_dataset_are_given_to_the_core_as_ints():
    loaded = call("load_dataset", dataset(sample_label=np.int64(1), sample_frame=np.int32(3)))
    assert [(type(sample.label), sample.label, type(sample.frame)) for sample in loaded.samples[:1]] == [(int, 1, int)]


@pytest.mark.parametrize("made,said", [
    (lambda: stage(optimizer=None), "whose optimizer is a Keras optimizer instance (keras.optimizers.Adam(...)), got NoneType None in stage 1"),  # core AttributeError
    (lambda: stage(optimizer="adam"), "whose optimizer is a Keras optimizer instance"),
    (lambda: stage(1.5), "whose epochs is a whole number from 0, got float 1.5 in stage 1"),  # core TypeError
    (lambda: odd_stage(epochs=-1), "whose epochs is a whole number from 0, got int -1"),
    (lambda: odd_stage(epochs=True), "got bool True"),
    (lambda: odd_stage(trainable="top"), "whose trainable is 'head' or 'all', got str 'top'"),
    (lambda: stage(name=""), "whose name is text, not empty or blank, got str ''"),
    (lambda: stage(name=7), "whose name is text, not empty or blank, got int 7"),
    (lambda: stage(wrap=5), "whose wrap is a function (Keras model -> Keras model sharing its weights) or None, got int 5"),
    (lambda: stage(label=None), "whose label is text, got NoneType"),
], ids=["optimizer-none", "optimizer-text", "epochs-float", "epochs-negative", "epochs-bool", "trainable", "name-empty", "name-int", "wrap-int", "label-none"])
def test_a_stage_whose_fields_break_the_promise_is_the_schedules_failure_before_training(made, said):
    message = refused("optimizer_schedule", [stage(0), made()])
    assert said.replace("stage 1", "stage 2") in message, message


def test_a_wrap_that_returns_no_keras_model_or_a_copy_is_its_plugins_failure_when_the_stage_begins():
    """``wrap=lambda m: 5`` gave "failed in the core (run): AttributeError: 'int' object has no
    attribute 'compile'"; a copy of the model would train while the run saves the untrained one."""
    import keras

    from feph_finetune.hook_results import wrap_problem

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    assert wrap_problem(model, 5) == "wrap must return a Keras model, got int 5"
    assert "shares the given model's weights" in wrap_problem(model, keras.models.clone_model(model))
    wrapper = keras.Sequential([model])
    assert wrap_problem(model, wrapper) == ""


class FiveWrap:
    @hookimpl
    def optimizer_schedule(self, context):
        import keras

        return [TrainingStage("wrapped", "all", 1, keras.optimizers.Adam(), wrap=lambda model: 5)]


def test_a_wrap_returning_no_model_fails_the_run_naming_the_optimizer_plugin_before_training(tmp_path, synthetic_feph):
    get_plugins().pm.register(FiveWrap(), name="fivewrap")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\noptimizer = "fivewrap"\n')
    record = tiny.run_result("A")
    assert record["status"] == "failed" and (record["error"]["plugin"], record["error"]["hook"]) == ("fivewrap", "optimizer_schedule"), record["error"]
    assert "stage 'wrapped': wrap must return a Keras model, got int 5" in record["error"]["message"]
    assert not (tiny.store.run_dir(tiny.runs["A"].id) / "history.json").exists()


class ObjectState:
    @hookimpl
    def preprocess(self, context):
        return Preprocessing(fit=lambda images: None, state=lambda: {"x": object()}, restore=lambda state: None)


def test_a_state_that_cannot_be_saved_fails_a_saving_run_naming_the_plugin_before_training(tmp_path, synthetic_feph):
    """``state()`` of ``{"x": object()}`` gave a "done" run whose bundle ``predict`` refused
    ("Object arrays cannot be loaded when allow_pickle=False"), naming no plugin."""
    get_plugins().pm.register(ObjectState(), name="objectstate")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\npreprocess = ["face_crop", "objectstate"]\nsave_model = true\n')
    record = tiny.run_result("A")
    assert record["status"] == "failed" and (record["error"]["plugin"], record["error"]["hook"]) == ("objectstate", "preprocess"), record["error"]
    assert "state must return arrays of numbers, bools or text, got for 'x' object <object object at" in record["error"]["message"]
    run_dir = tiny.store.run_dir(tiny.runs["A"].id)
    assert not (run_dir / "history.json").exists() and not (run_dir / "bundle.json").exists()


@pytest.mark.parametrize("state,said", [
    ({"x": object()}, "arrays of numbers, bools or text, got for 'x' object"),
    ({"x": [[1.0], [1.0, 2.0]]}, "for 'x' a value NumPy cannot make an array of"),
    ({"": np.zeros(3)}, "names that are text, not empty, got str ''"),
    ({1: np.zeros(3)}, "names that are text, not empty, got int 1"),
    ([np.zeros(3)], "a dict of name: NumPy array, got list"),
], ids=["object", "ragged", "empty-name", "int-name", "list"])
def test_a_state_that_numpy_would_not_read_back_without_pickling_is_refused(state, said):
    from feph_finetune.hook_results import state_problem

    assert said in state_problem(state), state_problem(state)


def test_a_state_of_numbers_bools_text_and_lists_is_stored_as_arrays():
    from feph_finetune.hook_results import normalised_state, state_problem

    state = {"mean": np.float32(0.5), "flags": [True, False], "names": np.array(["a", "b"]), "basis": [[1, 2], [3, 4]]}
    assert state_problem(state) == ""
    assert {key: value.dtype.kind for key, value in normalised_state(state).items()} == {"mean": "f", "flags": "b", "names": "U", "basis": "i"}


class ExpandOutside:
    @hookimpl
    def augment(self, context):
        return Augmentation(expand=lambda images, labels: (images, labels + 10))


def test_expand_labels_beyond_the_classes_are_the_augment_plugins_failure(tmp_path, synthetic_feph):
    get_plugins().pm.register(ExpandOutside(), name="outside")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\naugment = ["outside"]\n')
    with pytest.raises(PluginCallError) as failed:
        tiny.prepare("A")
    assert (failed.value.plugin, failed.value.hook) == ("outside", "augment")
    assert "expand must return labels that are class indices 0..6, got labels from 10 to 16" in str(failed.value), str(failed.value)


@pytest.mark.parametrize("fields,said", [
    ({"head": "elsewhere"}, "head layers are layers of its model, got layer 'elsewhere', which is not"),  # a head stage that trains nothing
    ({"head": "dense"}, "head is a list of Keras layers, got str 'dense'"),
    ({"normalizes_input": "no"}, "normalizes_input is True or False, got str 'no'"),
    ({}, None),
], ids=["foreign-layer", "text", "normalizes-text", "kept"])
def test_a_model_whose_head_or_flags_break_the_promise_is_the_model_plugins_failure(fields, said):
    """A head stage trains the ``head`` layers: ones from another model would train nothing."""
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    head = {"elsewhere": [keras.layers.Dense(3, name="elsewhere")], "dense": "dense"}.get(fields.pop("head", ""), model.layers[-1:])
    built = BuiltModel(model=model, head=head, **fields)
    if said is None:
        assert call("build_model", built) is built
    else:
        assert said in refused("build_model", built)


def test_a_trait_of_mixed_types_refuses_the_configuration_naming_plugin_and_hook(tmp_path, synthetic_feph):
    """``["flying", 5]`` ended ``--dry-run`` and the run with a TypeError traceback (exit 1)."""
    plugins = get_plugins()
    plugins.pm.register(Returns(["flying", 5]), name="odd")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nevaluate = ["paper_metrics", "odd"]\n')
    with pytest.raises(ConfigError) as raised:
        build_matrix(read_config(path), plugins)
    assert "plugin 'odd' failed in hook 'plugin_traits'" in str(raised.value) and "got int 5" in str(raised.value)


class NegativeWeights:
    @hookimpl
    def weight_classes(self, labels, context):
        return {index: -1.0 for index in range(len(context.classes))}


def test_negative_class_weights_fail_the_run_naming_the_plugin_before_training(tmp_path, synthetic_feph):
    """Weights of -1.0 gave a "done" run trained on the negated loss, without a word."""
    get_plugins().pm.register(NegativeWeights(), name="negative")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\nclass_weights = "negative"\n')
    record = tiny.run_result("A")
    assert record["status"] == "failed" and (record["error"]["plugin"], record["error"]["hook"]) == ("negative", "weight_classes"), record["error"]
    assert "0 or from 1e-06 to 1e+06, got float -1.0 for class 0" in record["error"]["message"]
    assert not (tiny.store.run_dir(tiny.runs["A"].id) / "history.json").exists()  # refused before any training


# --- the functions a hook returns: checked where the core calls them ------------------------------


@pytest.mark.parametrize("frame,said", [
    (lambda image: image, "frame must return a feph_finetune.FrameResult, got a value of type ndarray"),  # was an AttributeError in the core
    (lambda image: FrameResult(image.astype(np.float32)), "image is uint8 RGB of shape (H, W, 3), got float32 of shape (8, 8, 3)"),
    (lambda image: FrameResult(image[..., 0]), "got uint8 of shape (8, 8)"),
    (lambda image: FrameResult(image[:0]), "got uint8 of shape (0, 8, 3)"),
], ids=["array", "float", "gray", "empty"])
def test_a_frame_step_returning_anything_but_a_uint8_rgb_frame_result_is_its_plugins_failure(frame, said):
    from feph_finetune.data.frames import FrameStep, apply_steps

    with pytest.raises(PluginCallError) as failed:
        apply_steps(np.zeros((8, 8, 3), np.uint8), [FrameStep("cropper", Preprocessing(frame=frame))], 4)
    assert (failed.value.plugin, failed.value.hook) == ("cropper", "preprocess") and said in str(failed.value), str(failed.value)


@pytest.mark.parametrize("batch,said", [
    (lambda x: x[..., 0], "batch must return a float batch of the shape it was given (2, 4, 4, 3), got float32 (2, 4, 4)"),
    (lambda x: x[:, :2], "got float32 (2, 2, 4, 3)"),
    (lambda x: np.zeros((2, 4, 4, 3), np.int32), "got int32 (2, 4, 4, 3)"),
    (lambda x: [1.0], "got list [1.0]"),
], ids=["channels", "size", "integers", "list"])
def test_a_preprocessing_batch_of_another_shape_or_dtype_is_its_plugins_failure(batch, said):
    from feph_finetune.training.stages import preprocess_batch

    with pytest.raises(PluginCallError) as failed:
        preprocess_batch(np.zeros((2, 4, 4, 3), np.uint8), [("scaler", Preprocessing(batch=batch))])
    assert (failed.value.plugin, failed.value.hook) == ("scaler", "preprocess") and said in str(failed.value), str(failed.value)


def test_an_augmentation_batch_of_another_shape_fails_when_the_pipeline_is_built_not_in_training():
    """Inside ``tf.data`` the batch function runs when the pipeline is traced: the static shape
    is checked there, before any epoch (a Keras shape error mid-fit blamed the optimizer)."""
    from feph_finetune.data.preparation import Examples
    from feph_finetune.training.stages import make_dataset

    examples = Examples(np.zeros((4, 4, 4, 3), np.uint8), np.arange(4), np.zeros(4, np.int64))
    data = SimpleNamespace(batch_steps=[], augmentations=[("cropper", Augmentation(batch=lambda x, seed: x[:, 1:, 1:]))])
    with pytest.raises(PluginCallError) as failed:
        make_dataset(examples, data, batch_size=2, seed=0, training=True)
    assert (failed.value.plugin, failed.value.hook) == ("cropper", "augment")
    assert "batch must return a float batch of the shape it was given (B, 4, 4, 3), got float32 (B, 3, 3, 3)" in str(failed.value)


def test_a_model_with_another_number_of_outputs_than_classes_is_the_model_plugins_failure():
    import keras

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    message = refused("build_model", BuiltModel(model=model, head=[]))
    assert "one output per class (3), got a model with 2 outputs" in message


def test_a_result_whose_repr_raises_is_named_by_its_type():
    class Unshowable:
        def __repr__(self):
            raise RuntimeError("repr exploded")

    assert "a value of type Unshowable" in refused("evaluate", Unshowable())


# --- plugin_options: defaults are JSON values, as configured values are ---------------------------


class Declares:
    """A plugin registered for one test whose ``plugin_options`` returns ``declared``."""

    def __init__(self, declared):
        self.declared = declared

    @hookimpl
    def plugin_options(self):
        return self.declared

    @hookimpl
    def evaluate(self, y_true, y_prob):
        return {}


@pytest.mark.parametrize("declared,said", [
    ({"x": object()}, "got object <object object at"),  # a run id that changed on every call, a crash writing config.json
    ({"x": math.nan}, "got float nan in the default of option 'x'"),  # written as NaN into config.json
    ({"x": Option(default=[1.0, -math.inf], finite=False)}, "got float -inf in the default of option 'x'"),
    ({"x": {"inner": {1: "a"}}}, "got a table key int 1 in the default of option 'x'"),
    ({"x": (1, 2)}, "got tuple (1, 2) in the default of option 'x'"),
], ids=["object", "nan", "option-inf", "int-key", "tuple"])
def test_a_default_that_is_no_json_value_is_the_plugins_failure_naming_the_option(declared, said):
    plugins = get_plugins()
    plugins.pm.register(Declares(declared), name="odd")
    with pytest.raises(PluginCallError) as failed:
        plugins.option_declarations("odd")
    assert (failed.value.plugin, failed.value.hook) == ("odd", "plugin_options")
    assert "must return defaults" in str(failed.value) and said in str(failed.value), str(failed.value)


def test_json_defaults_of_every_kind_are_accepted():
    declared = {"a": "text", "b": 1, "c": 0.5, "d": True, "e": None, "f": [1, "x"], "g": {"h": [{"i": 2.0}]}, "o": Option(default=None, kind=int)}
    get_plugins().pm.register(Declares(declared), name="fine")
    assert set(get_plugins().option_declarations("fine")) == set(declared)


def test_a_default_that_is_no_json_value_refuses_the_dry_run_naming_plugin_and_option(tmp_path, synthetic_feph, capsys):
    """``{"x": object()}`` gave ``--dry-run`` exit 0 with a run id that changed on every call."""
    from feph_finetune.cli import main

    get_plugins().pm.register(Declares({"x": object()}), name="odd")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nevaluate = ["paper_metrics", "odd"]\n')
    assert main([str(path), "--dry-run", "--output", str(tmp_path / "runs")]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "plugin 'odd' failed in hook 'plugin_options'" in message and "default of option 'x'" in message and "Traceback" not in message
    assert not (tmp_path / "runs").exists()
