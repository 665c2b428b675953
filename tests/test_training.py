"""The training core: the input pipeline, which layers train in each stage, phase 1 on precomputed
features inside a run, and No-FT's class mapping.

Tiny models only: MobileNet alpha 0.25 and a small convnet saved as a "pretrained" whole model, at
32 px on the synthetic fixture set.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import keras

from feph_finetune import CLASSES
from feph_finetune.cli import main
from feph_finetune.data.preparation import Examples, RunData
from feph_finetune.training.stages import BestEpoch, make_dataset, probability_rows_problem, set_trainable

from conftest import TinyMatrix, write_matrix

#: A class order other than FePh's, as a pretrained model may have.
PRETRAINED_ORDER = ["surprise", "anger", "sad", "disgust", "happy", "fear", "neutral"]


def small_classifier_file(path, seed: int = 0):
    """A small convnet with a 7-way top, saved whole: a stand-in for a pretrained expression model
    whose features, unlike a random MobileNet's, do not vanish."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(7, activation="softmax", name="emotion_preds")(x)).save(path)
    return path


def run_dir(outdir, experiment: str):
    """The results folder of the only run of ``experiment``."""
    (found,) = [path.parent for path in outdir.glob("*/result.json") if json.loads(path.read_text())["experiment"] == experiment]
    return found


def history(outdir, experiment: str) -> list[dict]:
    return json.loads((run_dir(outdir, experiment) / "history.json").read_text())


def predictions(outdir, experiment: str) -> np.ndarray:
    with np.load(run_dir(outdir, experiment) / "predictions.npz") as stored:
        return stored["y_prob"]


# --- the input pipeline ----------------------------------------------------------------------


def pipeline_examples() -> tuple[Examples, RunData]:
    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    examples = Examples(images, np.array([7, 2, 5, 0, 9]), np.array([1, 2, 3, 4, 5]))
    return examples, RunData(train=examples, test=examples)


def batches(dataset) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(x.numpy(), y.numpy()) for x, y in dataset]
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])


def test_pipeline_gathers_the_chosen_rows_in_order_as_float():
    examples, data = pipeline_examples()
    x, y = batches(make_dataset(examples, data, batch_size=2, seed=0, training=False))
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, examples.pixels().astype(np.float32))
    np.testing.assert_array_equal(y, examples.labels)


def test_training_pipeline_reshuffles_each_epoch_and_repeats_with_the_seed():
    examples, data = pipeline_examples()
    dataset = make_dataset(examples, data, batch_size=2, seed=4, training=True)
    first, second = batches(dataset), batches(dataset)
    for x, y in (first, second):  # every epoch: each example once, image and label still paired
        order = [int(np.flatnonzero((examples.pixels() == image).all(axis=(1, 2, 3)))[0]) for image in x.astype(np.uint8)]
        assert sorted(order) == list(range(len(examples)))
        np.testing.assert_array_equal(y, examples.labels[order])
    assert not np.array_equal(first[1], second[1])
    again = make_dataset(examples, data, batch_size=2, seed=4, training=True)
    np.testing.assert_array_equal(batches(again)[1], first[1])


# --- which layers train ----------------------------------------------------------------------


@pytest.fixture
def tiny_mobilenet(tmp_path, synthetic_feph):
    tiny = TinyMatrix(tmp_path, synthetic_feph, "[experiments.A]\n")
    return tiny.plugins.call("mobilenet", "build_model", context=tiny.context("A", "mobilenet"))


def base_layers(built) -> list:
    head = {id(layer) for layer in built.head}
    return [layer for layer in built.model.layers if layer.weights and id(layer) not in head]


def test_head_stage_freezes_the_base_and_all_stage_unfreezes_it(tiny_mobilenet):
    set_trainable(tiny_mobilenet, "head", train_batchnorm=False)
    assert not any(layer.trainable for layer in base_layers(tiny_mobilenet))
    assert all(layer.trainable for layer in tiny_mobilenet.head)
    set_trainable(tiny_mobilenet, "all", train_batchnorm=False)
    batchnorm = [layer for layer in base_layers(tiny_mobilenet) if isinstance(layer, keras.layers.BatchNormalization)]
    others = [layer for layer in base_layers(tiny_mobilenet) if layer not in batchnorm]
    assert batchnorm and others
    assert all(layer.trainable for layer in others) and not any(layer.trainable for layer in batchnorm)
    trainable = {id(weight) for weight in tiny_mobilenet.model.trainable_weights}
    assert all(id(weight) in trainable for layer in others for weight in layer.trainable_weights)


def test_train_batchnorm_unfreezes_batchnorm_too(tiny_mobilenet):
    set_trainable(tiny_mobilenet, "head", train_batchnorm=True)
    set_trainable(tiny_mobilenet, "all", train_batchnorm=True)
    assert all(layer.trainable for layer in base_layers(tiny_mobilenet))


def test_all_layers_stage_changes_the_base_weights(synthetic_feph, tmp_path):
    base_file = small_classifier_file(tmp_path / "base.keras")
    experiments = f"""
    [experiments.A]
    save_model = true
    options.mobilenet.weights = "{base_file}"
    options.adam.lr = 0.01
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    outdir = tmp_path / "runs"
    assert main([str(path), "--executor", "inline", "--output", str(outdir)]) == 0
    (saved,) = outdir.glob("*/model.keras")
    trained = keras.models.load_model(saved, compile=False)
    original = keras.models.load_model(base_file, compile=False)
    for name in ("conv_a", "conv_b"):
        assert not np.allclose(trained.get_layer(name).get_weights()[0], original.get_layer(name).get_weights()[0])


# --- phase 1 on precomputed features, inside a run -------------------------------------------

HEAD_ONLY = """
[experiments.features]
options.mobilenet.weights = "{base_file}"
[experiments.features.options.adam]
head_epochs = 2
head_lr = 0.01
epochs = 0

[experiments.plain]
extends = "features"
head_features = false

[experiments.untrained]
extends = "features"
options.adam.head_epochs = 0

[experiments.random_flip]
extends = "features"
augment = ["flip"]
[experiments.random_flip.options.flip]
mode = "random"
"""


@pytest.mark.numerics
def test_head_stage_trains_on_features_where_it_applies_with_the_same_result(synthetic_feph, tmp_path):
    base_file = small_classifier_file(tmp_path / "base.keras")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, HEAD_ONLY.format(base_file=base_file))
    outdir = tmp_path / "runs"
    assert main([str(path), "--executor", "inline", "--output", str(outdir)]) == 0
    assert [entry["head_features"] for entry in history(outdir, "features")] == [True, True]
    assert [entry["head_features"] for entry in history(outdir, "plain")] == [False, False]
    assert [entry["head_features"] for entry in history(outdir, "random_flip")] == [False, False]
    features, plain = predictions(outdir, "features"), predictions(outdir, "plain")
    assert np.abs(features - predictions(outdir, "untrained")).max() > 1e-3
    np.testing.assert_allclose(features, plain, atol=1e-5)  # the same float32 steps by another route: 0 measured, both paths
    for a, b in zip(history(outdir, "features"), history(outdir, "plain")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


# --- keeping the best epoch ------------------------------------------------------------------


def test_best_epoch_keeps_the_weights_of_the_best_validation_accuracy():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best = BestEpoch(model)
    for epoch, (value, accuracy) in enumerate([(1.0, 0.5), (2.0, 0.7), (3.0, 0.6)]):
        model.set_weights([np.full((2, 1), value), np.zeros(1)])
        best.on_epoch_end(epoch, {"val_accuracy": accuracy})
    np.testing.assert_array_equal(best.weights[0], np.full((2, 1), 2.0))


def test_validation_split_reports_validation_accuracy_per_epoch(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\nvalidation_split = 0.3\n")
    outdir = tmp_path / "runs"
    assert main([str(path), "--executor", "inline", "--output", str(outdir)]) == 0
    entries = history(outdir, "A")
    assert len(entries) == 2 and all("val_accuracy" in entry for entry in entries)


# --- No-FT -----------------------------------------------------------------------------------


@pytest.mark.numerics
def test_no_ft_reorders_the_pretrained_models_classes_to_fephs(synthetic_feph, tmp_path):
    base_file = small_classifier_file(tmp_path / "base.keras", seed=3)
    experiments = f"""
    [experiments.noft]
    fine_tune = false
    [experiments.noft.options.mobilenet]
    weights = "{base_file}"
    pretrained_classes = {json.dumps(PRETRAINED_ORDER)}
    """
    tiny = TinyMatrix(tmp_path, synthetic_feph, experiments)
    record = tiny.run_result("noft")
    assert record["status"] == "done", record["error"]
    data = tiny.prepare("noft")
    raw = keras.models.load_model(base_file, compile=False).predict(data.test.pixels().astype("float32"), verbose=0)
    expected = raw[:, [PRETRAINED_ORDER.index(name) for name in CLASSES]]
    _, stored = tiny.store.predictions(tiny.runs["noft"].id)
    np.testing.assert_allclose(stored, expected, atol=1e-5)  # two float32 passes, other batches: 1.5e-8 measured (Eigen)
    assert PRETRAINED_ORDER != list(CLASSES) and not np.allclose(stored, raw, atol=1e-3)


def test_a_stage_compiled_by_the_core_traces_its_train_step_once():
    """Keras 3 creates the optimizer's and the metric's variables inside the first trace unless
    they exist, and TensorFlow then traces the step again: seconds per stage for EfficientNet."""
    from feph_finetune.training.compiling import compile_for_stage

    traced = []

    class Counting(keras.Model):
        def train_step(self, data):
            traced.append(len(traced))
            return super().train_step(data)

    inputs = keras.Input((4,))
    model = Counting(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    compile_for_stage(model, keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    history = model.fit(x, np.arange(40) % 3, batch_size=16, epochs=2, verbose=0)
    assert traced == [0]
    assert set(history.history) == {"loss", "accuracy"}


def test_probability_rows_pass_a_float32_softmax_and_refuse_logits():
    logits = np.random.default_rng(0).normal(0, 10, (64, 8)).astype("float32")
    softmax = keras.ops.convert_to_numpy(keras.ops.softmax(logits)).astype("float64")
    assert probability_rows_problem(softmax) is None
    assert probability_rows_problem(np.abs(logits).astype("float64")) is not None  # non-negative scores that do not sum to 1
    assert "below 0" in probability_rows_problem(logits.astype("float64"))
    assert "not finite" in probability_rows_problem(np.full((2, 8), np.nan))


def test_no_ft_refuses_non_finite_outputs_and_rows_given_wholly_to_a_class_the_dataset_lacks(monkeypatch):
    """Both would divide 0 by 0 or carry NaN into the metrics, scored as the first class."""
    from types import SimpleNamespace

    from feph_finetune.plugins import PluginCallError
    from feph_finetune.training import stages

    built = SimpleNamespace(pretrained=object(), pretrained_classes=[*CLASSES, "contempt"])
    uniform = np.full(8, 1 / 8)

    def outputs_of(raw):
        monkeypatch.setattr(stages, "predict", lambda *args: np.array(raw))
        return stages.pretrained_probabilities(built, "keras_model", SimpleNamespace(test=None), 4, classes=CLASSES)

    with pytest.raises(PluginCallError, match="all its probability to 'contempt'"):
        outputs_of([uniform, [0.0] * 7 + [1.0]])
    with pytest.raises(PluginCallError, match="not finite") as error:
        outputs_of([uniform, [np.nan] * 8])
    assert "logits" not in str(error.value)  # setting outputs = "logits" would not help
    np.testing.assert_allclose(outputs_of([uniform, uniform]).sum(axis=1), 1.0)
