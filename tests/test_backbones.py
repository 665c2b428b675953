"""The backbone plugins: head replacement, the weights option, whole models and the legacy shim.

Tiny models only (MobileNet alpha=0.25 and EfficientNet-B0 at 32 px, random weights); nothing is
ever downloaded.
"""

from __future__ import annotations

import json

import h5py
import keras
import numpy as np
import pytest

from feph_finetune import CLASSES, PluginError, RunContext
from feph_finetune.config.options import option_problems
from feph_finetune_plugins import backbones, efficientnet, keras_model, mobilenet

SIDE = 32
ALPHA = 0.25


def make_context(input_size: int = SIDE, **options) -> RunContext:
    return RunContext(
        run_id="test",
        experiment="test",
        phase="explore",
        fold=None,
        seed=0,
        input_size=input_size,
        config={},
        options=options,
    )


def build_mobilenet(input_size: int = SIDE, **options):
    return mobilenet.build_model(make_context(input_size, alpha=ALPHA, **options))


def tiny_base():
    return keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(SIDE, SIDE, 3), alpha=ALPHA, pooling="avg"
    )


def tiny_classifier(outputs: int = len(CLASSES), activation: str | None = "softmax"):
    """A stand-in for Savchenko's model: base, pooled features, Dense `feats`, softmax top
    (``activation=None``: a top that gives logits)."""
    base = tiny_base()
    feats = keras.layers.Dense(16, name="feats")(base.output)
    embedding = keras.layers.Dense(8, name="embedding")(feats)
    top = keras.layers.Dense(outputs, activation=activation, name="emotion_preds")(embedding)
    return keras.Model(base.input, top)


def images(count: int = 3) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (count, SIDE, SIDE, 3)).astype("float32")


def layer_names(model) -> set[str]:
    return {layer.name for layer in model.layers}


@pytest.fixture(scope="module")
def built():
    keras.utils.set_random_seed(0)
    return build_mobilenet()


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    keras.utils.set_random_seed(1)
    path = tmp_path_factory.mktemp("models") / "classifier.keras"
    tiny_classifier().save(path)
    return path


# --- head replacement ------------------------------------------------------------------------


def test_new_head_outputs_probabilities_over_the_seven_classes(built):
    probabilities = built.model.predict(images(), verbose=0)
    assert probabilities.shape == (3, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)  # 7 float32 terms: a few ulp (1e-7) on any kernel


def test_head_holds_only_the_new_layers(built):
    head_names = [layer.name for layer in built.head]
    assert head_names == [backbones.HEAD_LAYER_NAME]
    assert built.head[0].units == len(CLASSES)
    assert built.model.layers[-1] is built.head[0]
    base_layers = [layer for layer in built.model.layers if layer not in built.head]
    assert any(layer.name.startswith("conv_dw") for layer in base_layers)
    assert built.pretrained is None and built.pretrained_classes is None
    assert built.normalizes_input is False


def test_dropout_joins_the_head():
    result = build_mobilenet(dropout=0.3)
    assert [type(layer).__name__ for layer in result.head] == ["Dropout", "Dense"]
    assert result.head[0].rate == pytest.approx(0.3)


def test_cut_layer_puts_the_head_lower_with_pooling():
    result = build_mobilenet(cut_layer="conv_pw_5_relu")
    names = layer_names(result.model)
    assert "conv_pw_5_relu" in names and "conv_pw_6" not in names
    assert type(result.head[0]).__name__ == "GlobalAveragePooling2D"
    assert result.model.predict(images(2), verbose=0).shape == (2, len(CLASSES))


def test_unknown_cut_layer_lists_layer_names():
    with pytest.raises(PluginError, match="cut_layer = 'no_such_layer'") as error:
        build_mobilenet(cut_layer="no_such_layer")
    assert "conv_pw_13_relu" in str(error.value)


@pytest.mark.parametrize(("option", "value", "says"), [
    ("dropout", 1.5, "< 1"), ("dropout", -0.1, ">= 0"), ("alpha", 0.0, "> 0"),
    ("pretrained_classes", ["anger"] * 7, "names a class twice ('anger', "),
    ("pretrained_classes", ["neutral", "Raised_Brows", "raised_brows"], "names a class twice ('raised_brows'; names are compared ignoring case)"),
    ("pretrained_classes", ["neutral", " "], "an empty class name"),
    ("pretrained_classes", [], "must be a non-empty list of class names"),
])
def test_bad_options_are_refused_by_their_declarations(option, value, says):
    (problem,) = option_problems(value, mobilenet.plugin_options()[option])
    assert says in problem


# --- weights files ---------------------------------------------------------------------------


def assert_same_base_weights(base, model):
    compared = 0
    for layer in (layer for layer in base.layers if layer.weights):
        compared += 1
        for saved, loaded in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(saved, loaded)
    assert compared > 20


def test_weights_file_round_trip(tmp_path):
    keras.utils.set_random_seed(2)
    base = tiny_base()
    path = tmp_path / "base.weights.h5"
    base.save_weights(path)

    keras.utils.set_random_seed(3)
    result = build_mobilenet(weights=str(path))
    assert_same_base_weights(base, result.model)
    assert result.pretrained is None


def test_weights_file_for_another_architecture_is_refused(tmp_path):
    other = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(SIDE, SIDE, 3), alpha=0.5, pooling="avg"
    )
    path = tmp_path / "wide.weights.h5"
    other.save_weights(path)
    with pytest.raises(PluginError, match="does not fit MobileNet alpha=0.25"):
        build_mobilenet(weights=str(path))


def test_legacy_h5_without_model_config_loads_as_weights(tmp_path):
    """Keras' own ImageNet downloads are .h5 files that hold weights only."""
    keras.utils.set_random_seed(4)
    base = tiny_base()
    path = tmp_path / "mobilenet_no_top.h5"
    base.save(path)
    with h5py.File(path, "r+") as file:
        del file.attrs["model_config"]

    result = build_mobilenet(weights=str(path))
    assert_same_base_weights(base, result.model)
    assert result.pretrained is None


def test_missing_weights_file_is_refused_naming_the_path(tmp_path):
    path = tmp_path / "absent" / "mobilenet_7.h5"
    (problem,) = option_problems(str(path), mobilenet.plugin_options()["weights"])
    assert "no such file" in problem and str(path) in problem


def test_unsupported_weights_file_kind_is_refused(tmp_path):
    path = tmp_path / "enet_b0_7.pt"
    path.write_bytes(b"torch")
    (problem,) = option_problems(str(path), efficientnet.plugin_options()["weights"])
    assert "neither one of 'none', 'imagenet' nor a file ending in .keras" in problem and "converted" in problem


def test_weights_say_whether_the_model_has_a_pretrained_classifier(tmp_path, classifier_file):
    keras.utils.set_random_seed(4)
    base = tiny_base()
    weights_only = tmp_path / "base.weights.h5"
    base.save_weights(weights_only)
    legacy_weights = tmp_path / "mobilenet_no_top.h5"
    base.save(legacy_weights)
    with h5py.File(legacy_weights, "r+") as file:
        del file.attrs["model_config"]
    legacy_model = tmp_path / "whole.h5"
    tiny_classifier().save(legacy_model)
    for weights in ("none", "imagenet", str(weights_only), str(legacy_weights)):
        assert mobilenet.plugin_traits({"weights": weights}) == set(), weights
    for weights in (str(classifier_file), str(legacy_model)):
        assert mobilenet.plugin_traits({"weights": weights}) == {"pretrained_classifier"}, weights
    assert efficientnet.plugin_traits({"weights": "imagenet"}) == {"normalizes_input"}


# --- whole pretrained models -----------------------------------------------------------------


def test_whole_model_becomes_pretrained_and_is_cut_below_its_top(classifier_file):
    result = build_mobilenet(weights=str(classifier_file))

    assert result.pretrained is not None
    assert result.pretrained.get_layer("emotion_preds").units == len(CLASSES)
    assert tuple(result.pretrained_classes) == backbones.SAVCHENKO_CLASSES
    names = layer_names(result.model)
    assert "emotion_preds" not in names and "embedding" in names
    assert result.head[-1].input.shape[-1] == 8  # the embedding's width


def test_whole_model_shares_its_layers_with_the_new_model(classifier_file):
    result = build_mobilenet(weights=str(classifier_file))
    kernel = result.model.get_layer("feats").kernel
    kernel.assign(np.zeros(kernel.shape, dtype="float32"))
    np.testing.assert_array_equal(result.pretrained.get_layer("feats").get_weights()[0], 0.0)


@pytest.mark.parametrize("outputs", ["probabilities", "logits"])
def test_whole_model_of_logits_gets_a_softmax_for_no_ft(tmp_path, outputs):
    keras.utils.set_random_seed(2)
    path = tmp_path / "logits.keras"
    tiny_classifier(activation=None).save(path)
    result = build_mobilenet(weights=str(path), outputs=outputs)
    logits = keras.saving.load_model(path).predict(images(), verbose=0).astype("float64")
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # tolerance: a float32 softmax in the model against a float64 one here
    np.testing.assert_allclose(result.pretrained.predict(images(), verbose=0), softmax if outputs == "logits" else logits, rtol=0, atol=1e-5)
    assert "logits_softmax" not in layer_names(result.model)  # fine-tuning still cuts below the file's top


def test_whole_model_cut_at_the_named_layer(classifier_file):
    result = build_mobilenet(weights=str(classifier_file), cut_layer="feats")
    names = layer_names(result.model)
    assert "feats" in names and "embedding" not in names
    assert result.head[-1].input.shape[-1] == 16


def test_pretrained_classes_option_is_passed_on(classifier_file):
    order = ["surprise", "sad", "neutral", "happy", "fear", "disgust", "anger"]
    result = build_mobilenet(weights=str(classifier_file), pretrained_classes=order)
    assert list(result.pretrained_classes) == order


def test_whole_model_with_another_output_width_is_no_pretrained_classifier(tmp_path):
    path = tmp_path / "eight_way.keras"
    tiny_classifier(outputs=8).save(path)
    result = build_mobilenet(weights=str(path))
    assert result.pretrained is None and result.pretrained_classes is None
    assert result.model.output_shape == (None, len(CLASSES))


def test_pretrained_classes_may_name_outputs_fephs_classes_lack(tmp_path):
    path = tmp_path / "eight_way.keras"
    tiny_classifier(outputs=8).save(path)
    order = ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    result = build_mobilenet(weights=str(path), pretrained_classes=order)
    assert result.pretrained is not None and list(result.pretrained_classes) == order


@pytest.mark.parametrize("names", [["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"],
                                   ["Neutral", "raised_brows", "puffed_cheeks"], ["smile"]])
def test_pretrained_classes_may_be_any_distinct_names(names):
    """Which of them a dataset has is checked per dataset (No-FT), not by the option."""
    assert option_problems(names, mobilenet.plugin_options()["pretrained_classes"]) == []
    assert option_problems(names, keras_model.plugin_options()["pretrained_classes"]) == []


def test_model_built_by_the_plugin_reloads_as_a_base(tmp_path):
    """A demo base model saved from this plugin has a `feph_head` already: names must not clash."""
    path = tmp_path / "demo_base.keras"
    build_mobilenet(dropout=0.2).model.save(path)

    result = build_mobilenet(weights=str(path), dropout=0.2)
    assert result.pretrained is not None
    assert len(layer_names(result.model)) == len(result.model.layers)
    assert result.model.predict(images(2), verbose=0).shape == (2, len(CLASSES))


def test_input_size_mismatch_names_both_sizes(classifier_file):
    with pytest.raises(PluginError, match="32x32x3 images but the run's input_size is 48"):
        build_mobilenet(input_size=48, weights=str(classifier_file))


# --- tf.keras 2.x files (keras-team/keras#19151) ---------------------------------------------


def write_tf_keras_2_style_h5(model, path):
    """Save as legacy HDF5, then add the `groups` keyword tf.keras 2.x wrote for depthwise layers."""
    model.save(path)
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        depthwise = [layer for layer in config["config"]["layers"] if layer["class_name"] == "DepthwiseConv2D"]
        assert depthwise
        for layer in depthwise:
            layer["config"]["groups"] = 1
        file.attrs["model_config"] = json.dumps(config)


@pytest.mark.numerics
def test_legacy_h5_with_groups_loads_through_the_shim_and_saves_as_plain_keras(tmp_path):
    keras.utils.set_random_seed(5)
    original = tiny_classifier()
    path = tmp_path / "mobilenet_7.h5"
    write_tf_keras_2_style_h5(original, path)

    with pytest.raises(Exception, match="Unrecognized keyword arguments passed to DepthwiseConv2D"):
        keras.models.load_model(path, compile=False)

    result = build_mobilenet(weights=str(path), cut_layer="feats")
    assert result.pretrained is not None
    # Same weights in a rebuilt graph: 0 difference measured on both kernel paths; the tolerance
    # allows float32 reordering should a rebuilt graph get other kernels, far below a wrong weight.
    np.testing.assert_allclose(
        result.pretrained.predict(images(), verbose=0), original.predict(images(), verbose=0), rtol=1e-5, atol=1e-6
    )


    fine_tuned = tmp_path / "fine_tuned.keras"
    result.model.save(fine_tuned)
    reloaded = keras.models.load_model(fine_tuned, compile=False)  # no custom objects needed
    np.testing.assert_allclose(
        reloaded.predict(images(), verbose=0), result.model.predict(images(), verbose=0), rtol=1e-5, atol=1e-6
    )


# --- EfficientNet ----------------------------------------------------------------------------


def test_efficientnet_builds_small_and_normalizes_its_input():
    result = efficientnet.build_model(make_context())
    assert result.normalizes_input is True
    assert result.model.predict(images(2), verbose=0).shape == (2, len(CLASSES))
    assert [layer.name for layer in result.head] == [backbones.HEAD_LAYER_NAME]


# --- ImageNet weights without network --------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Every download fails as it does offline; Keras' cache points at an empty folder."""

    def refuse(fname, origin=None, *args, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- offline")

    import keras.src.utils.file_utils as file_utils  # where keras.applications fetch weights

    monkeypatch.setattr(file_utils, "get_file", refuse)
    monkeypatch.setattr(keras.utils, "get_file", refuse)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home" / "models"


def test_imagenet_without_network_says_where_to_put_the_file(no_network):
    with pytest.raises(PluginError, match="URL fetch failure") as error:
        build_mobilenet(weights="imagenet")
    assert str(no_network / "mobilenet_2_5_224_tf_no_top.h5") in str(error.value)


def test_efficientnet_imagenet_without_network(no_network):
    with pytest.raises(PluginError) as error:
        efficientnet.build_model(make_context(weights="imagenet"))
    assert str(no_network / "efficientnetb0_notop.h5") in str(error.value)


def test_imagenet_refuses_unpublished_alpha_before_downloading(no_network):
    with pytest.raises(PluginError, match="alpha") as error:
        mobilenet.build_model(make_context(weights="imagenet", alpha=0.3))
    assert "URL fetch failure" not in str(error.value)


def test_plugin_modules_import_without_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; import feph_finetune_plugins.mobilenet, feph_finetune_plugins.efficientnet; "
        "sys.exit('keras' in sys.modules or 'tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_converted_files_own_classes_are_what_the_dry_run_maps(tmp_path):
    """``model_input`` names the classes recorded with a converted file (any names, FePh's
    synonyms made FePh's), not the ``pretrained_classes`` default the file overrides."""
    from feph_finetune.convert import SIDECAR_FORMAT

    model_file = tmp_path / "brows.keras"
    model_file.write_bytes(b"")  # only its description is read here
    description = {"format": SIDECAR_FORMAT, "architecture": "EfficientNet-B0", "classes": ["Raised_Brows", "Happiness", "Neutral"],
                   "input_size": 224, "source": "brows.pt", "source_kind": "state_dict", "source_sha256": "0" * 64,
                   "max_abs_difference": 0.0, "check_images": 4}
    (tmp_path / "brows.keras.json").write_text(json.dumps(description), encoding="utf-8")
    options = {**{key: option.default for key, option in efficientnet.plugin_options().items()}, "weights": str(model_file)}
    assert efficientnet.model_input(options)["classes"] == ["raised_brows", "happy", "neutral"]
