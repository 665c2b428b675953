"""The guard against TensorFlow's heap corruption on a strided 1x1 convolution's filter gradient
(``feph_finetune.training.tensorflow_faults``): which layers it concerns, which batches, and
that the probe runs only where both meet on the oneDNN path. No training here; the guarded run
itself is in ``test_savchenko_models.py``."""

from __future__ import annotations

import signal

import keras
import pytest

from feph_finetune.training import tensorflow_faults
from feph_finetune.training.tensorflow_faults import TensorFlowFaultError, odd_batch, refuse_known_faults, strided_pointwise_convolutions


def model_with_strided_pointwise_layers():
    """Conv2D layers of every kind around the fault, one in a nested backbone, one frozen and one
    in a frozen nested model."""
    inner_input = keras.Input((16, 16, 4))
    inner = keras.Model(inner_input, keras.layers.Conv2D(4, 1, strides=(2, 1), name="nested_1x1_s2")(inner_input), name="backbone")
    frozen_input = keras.Input((16, 16, 4))
    frozen_inner = keras.Model(frozen_input, keras.layers.Conv2D(4, 1, strides=2, name="frozen_nested_1x1_s2")(frozen_input), name="frozen_backbone")
    frozen_inner.trainable = False
    image = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 1, strides=2, name="top_1x1_s2")(image)
    branches = [
        inner(x),
        keras.layers.Conv2D(4, 1, name="pointwise_s1")(x),
        keras.layers.Conv2D(4, 3, strides=2, padding="same", name="k3_s2")(x),
        keras.layers.SeparableConv2D(4, 1, strides=2, name="separable_1x1_s2")(x),
        frozen_inner(x),
    ]
    frozen = keras.layers.Conv2D(4, 1, strides=2, name="frozen_1x1_s2")
    frozen.trainable = False
    pooled = [keras.layers.GlobalAveragePooling2D()(branch) for branch in [*branches, frozen(x)]]
    return keras.Model(image, keras.layers.Dense(2)(keras.layers.Concatenate()(pooled)))


def test_the_finder_names_only_the_trained_1x1_convolutions_with_a_stride():
    found = [layer.name for layer in strided_pointwise_convolutions(model_with_strided_pointwise_layers())]
    assert found == ["top_1x1_s2", "nested_1x1_s2"]


def test_the_finder_sees_through_a_stages_wrapper():
    from feph_finetune_plugins.sam import sharpness_aware

    wrapped = sharpness_aware(model_with_strided_pointwise_layers(), rho=0.05)  # what a SAM stage fits
    assert [layer.name for layer in strided_pointwise_convolutions(wrapped)] == ["top_1x1_s2", "nested_1x1_s2"]


def test_a_frozen_model_has_none_to_guard():
    model = model_with_strided_pointwise_layers()
    model.trainable = False
    assert strided_pointwise_convolutions(model) == []


@pytest.mark.parametrize(("examples", "batch_size", "odd"), [
    (97, 16, 1),     # the synthetic data's training split: a last batch of 1
    (78, 16, None),  # 4 x 16 + 14
    (96, 16, None),  # 6 x 16
    (20, 5, 5),      # every batch odd
    (4, 5, None),    # one batch of 4: the odd batch_size never fills
    (3, 16, 3),      # one batch of 3
    (17, 3, 3),
    (0, 16, None),
])
def test_the_odd_batch_a_stage_sees(examples, batch_size, odd):
    assert odd_batch(examples, batch_size) == odd


@pytest.fixture
def probe_forbidden(monkeypatch):
    """The probe (a TensorFlow child process) fails the test if it runs."""
    monkeypatch.setattr(tensorflow_faults, "fault_shown", lambda: pytest.fail("the probe ran"))


@pytest.mark.parametrize(("examples", "onednn"), [(97, False), (78, True)], ids=["eigen", "even-batches"])
def test_no_probe_where_the_stage_cannot_meet_the_fault(probe_forbidden, monkeypatch, examples, onednn):
    monkeypatch.setattr(tensorflow_faults, "onednn_enabled", lambda: onednn)
    refuse_known_faults(model_with_strided_pointwise_layers(), examples, 16, "fine_tune")


@pytest.mark.parametrize(("examples", "batch_size", "odd", "advice"), [
    (97, 16, 1, "cannot help here: the training split has 97 images, an odd number"),
    (98, 15, 15, "any even one"),
])
def test_a_stage_that_would_crash_fails_naming_layers_batch_version_and_ways_out(monkeypatch, examples, batch_size, odd, advice):
    import tensorflow as tf

    monkeypatch.setattr(tensorflow_faults, "onednn_enabled", lambda: True)
    monkeypatch.setattr(tensorflow_faults, "fault_shown", lambda: signal.SIGABRT)
    with pytest.raises(TensorFlowFaultError) as raised:
        refuse_known_faults(model_with_strided_pointwise_layers(), examples, batch_size, "fine_tune")
    message = str(raised.value)
    assert "'top_1x1_s2' (1x1, stride 2), 'nested_1x1_s2' (1x1, stride 2)" in message and "frozen" not in message
    assert f"a batch of {odd} image" in message and f"TensorFlow {tf.__version__}" in message
    assert "stage 'fine_tune'" in message and "TF_ENABLE_ONEDNN_OPTS=0" in message and advice in message
