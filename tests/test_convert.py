"""``python -m feph_finetune convert``: Savchenko-style EfficientNet-B0 sources to Keras, verified.

The sources are timm ``tf_efficientnet_b0`` networks with random weights and randomised BatchNorm
statistics, written by ``tests/timm_sources.py`` in a process of its own (timm cannot be imported
after TensorFlow), once per test run: a state_dict and a pickled whole model (7 classes) converted
there, and an ONNX export (8 classes, BatchNorm folded) converted here through the CLI. Each
converted file must give the source's probabilities, computed by PyTorch, on images the converter
did not check itself on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from feph_finetune import CLASSES, RunContext
from feph_finetune.cli import main
from feph_finetune.convert import TOLERANCE, ConversionError, check_images, convert, efficientnet_b0_classifier, read_converted
from feph_finetune_plugins import efficientnet

from conftest import REPO, TinyMatrix, built_once, run_cli

IMAGES = check_images(4, seed=99)  # as tests/timm_sources.py computes the sources' probabilities
#: The 8-class ONNX source's classes, in an order unlike FePh's, so that mapping by name shows.
SHUFFLED_8 = ("Surprise", "Sadness", "Neutral", "Contempt", "Happiness", "Fear", "Disgust", "Anger")


def write_sources(out: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "tests" / "timm_sources.py"), str(out)], check=True, cwd=REPO, timeout=900, capture_output=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """The sources, written once for all xdist workers (read only: see ``built_once``)."""
    return built_once(tmp_path_factory, "convert_sources", write_sources)


@pytest.fixture(scope="module")
def onnx_keras(sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx_keras") / "m8.keras"
    assert main(["convert", str(sources / "m8.onnx"), str(out), "--classes", ",".join(SHUFFLED_8)]) == 0
    return out


def test_the_onnx_source_has_batchnorm_folded_and_tf_padding_as_hsemotions(sources):
    import onnx

    ops = [node.op_type for node in onnx.load(str(sources / "m8.onnx")).graph.node]
    assert ops.count("Conv") == 81 and "BatchNormalization" not in ops
    assert ops.count("Pad") == 5  # the stem and the four stride-2 depthwise convolutions


@pytest.mark.numerics
def test_onnx_conversion_gives_the_sources_probabilities_from_raw_pixels(sources, onnx_keras):
    model = keras.saving.load_model(onnx_keras, safe_mode=True)
    expected = np.load(sources / "probs8.npy")
    assert expected.std(axis=0).mean() > 0.02, "the source must respond to its input for the test to mean anything"
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), expected, rtol=0, atol=TOLERANCE)
    info = read_converted(onnx_keras)
    assert info.classes == SHUFFLED_8 and info.architecture == "EfficientNet-B0" and info.input_size == 224
    assert 0 <= info.max_abs_difference <= TOLERANCE


@pytest.mark.numerics
def test_pickled_model_converts_to_a_keras_file_that_loads_in_safe_mode(sources):
    model = keras.saving.load_model(sources / "whole7.keras", safe_mode=True)
    assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), np.load(sources / "probs7.npy"), rtol=0, atol=TOLERANCE)
    assert read_converted(sources / "whole7.keras").classes == ("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")


@pytest.mark.numerics
def test_state_dict_converts_to_weights_for_the_converters_architecture(sources):
    model = efficientnet_b0_classifier(7)
    model.load_weights(sources / "sd7.weights.h5")
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), np.load(sources / "probs7.npy"), rtol=0, atol=TOLERANCE)


def test_other_architectures_are_refused_naming_what_differs(sources, tmp_path, capsys):
    refusals = json.loads((sources / "refusals.json").read_text())
    assert "not an EfficientNet-B0" in refusals["b1.pt"] and "blocks.0.1" in refusals["b1.pt"]
    assert "symmetric padding" in refusals["pytorch_padding.pt"] and "tf_efficientnet_b0" in refusals["pytorch_padding.pt"]
    assert main(["convert", str(sources / "tiny.onnx"), str(tmp_path / "tiny.keras")]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "not an EfficientNet-B0" in message and "stem_conv" in message and "(8, 3, 3, 3)" in message
    assert not (tmp_path / "tiny.keras").exists()


def test_a_pickled_model_needs_trust_pickle(sources, tmp_path):
    result = run_cli("convert", str(sources / "whole7.pt"), str(tmp_path / "out.keras"))
    assert result.returncode == 2
    assert "--trust-pickle" in result.stderr and "runs code" in " ".join(result.stderr.split())
    assert not (tmp_path / "out.keras").exists()


def test_nothing_is_written_when_the_difference_exceeds_the_limit(sources, tmp_path, monkeypatch, capsys):
    import feph_finetune.convert as converter

    monkeypatch.setattr(converter, "TOLERANCE", 0.0)
    assert main(["convert", str(sources / "m8.onnx"), str(tmp_path / "m8.keras")]) == 2
    assert "largest difference of probabilities" in capsys.readouterr().out
    assert not (tmp_path / "m8.keras").exists() and not (tmp_path / "m8.keras.json").exists()


def test_a_missing_package_is_named_with_its_pip_command(sources, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ConversionError, match=r'pip install "feph_finetune\[convert\]"'):
        convert(sources / "m8.onnx", tmp_path / "m8.keras")


# --- the efficientnet plugin with converted files ---------------------------------------------


def build(weights: Path):
    context = RunContext(run_id="t", experiment="t", phase="exploratory", fold=None, seed=0, input_size=224, config={}, options={"weights": str(weights)})
    return efficientnet.build_model(context)


@pytest.mark.numerics
def test_efficientnet_fine_tunes_from_a_converted_weights_file(sources):
    built = build(sources / "sd7.weights.h5")
    assert built.pretrained_classes == CLASSES and built.normalizes_input
    np.testing.assert_allclose(built.pretrained.predict(IMAGES[:2], verbose=0), np.load(sources / "probs7.npy")[:2], rtol=0, atol=TOLERANCE)
    assert built.model.get_layer("top_conv") is built.pretrained.get_layer("top_conv")
    assert built.model.output.shape[-1] == len(CLASSES) and built.head[-1].units == len(CLASSES)


@pytest.mark.numerics
def test_no_ft_maps_a_converted_8_class_model_by_name_and_drops_contempt(sources, onnx_keras, synthetic_feph, tmp_path):
    experiments = f"""
    [experiments.E0]
    model = "efficientnet"
    fine_tune = false
    input_size = 224
    preprocess = []
    options.efficientnet.weights = "{onnx_keras}"
    """
    tiny = TinyMatrix(tmp_path, synthetic_feph, experiments)
    record = tiny.run_result("E0")
    assert record["status"] == "done", record.get("error")
    assert any("contempt" in note for note in record["notes"])
    _, y_prob = tiny.store.predictions(tiny.runs["E0"].id)
    raw = keras.saving.load_model(onnx_keras).predict(tiny.prepare("E0").test.pixels().astype("float32"), verbose=0)
    names = [name.lower().replace("happiness", "happy").replace("sadness", "sad") for name in SHUFFLED_8]
    expected = raw[:, [names.index(name) for name in CLASSES]]
    # y_prob and raw are two float32 passes of one EfficientNet-B0 (the run's in batches of 16, this
    # one in a batch of 23): they differ by float32 accumulation order, set by kernel path and batch.
    # Measured on these images: each pass within 4.6e-5 (Eigen) and 5.4e-5 (oneDNN) of the model in
    # float64; the two passes 3.1e-5 (Eigen) and 3e-9 (oneDNN) apart. 2e-4 is twice two passes'
    # error; the faults caught are 13 times that or more: two FePh classes swapped (2.7e-3 at least),
    # no division by the sum (0.39), HSEmotion's positions for names (0.99), pixels / 255 twice (0.78).
    tolerance = 2e-4
    np.testing.assert_allclose(y_prob, expected / expected.sum(axis=1, keepdims=True), rtol=0, atol=tolerance)
    assert not np.allclose(y_prob, expected, rtol=0, atol=tolerance), "Contempt too unlikely to test the division"
