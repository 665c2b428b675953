"""The SAM model of the ``sam`` plugin: one step against the formula, BatchNorm, and training."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from feph_finetune_plugins.sam import sharpness_aware, sharpness_aware_model_class

CLASSES = 3
FEATURES = 4

# Keras warns about the deliberately unused weight of ``softmax_regression``.
UNUSED_WEIGHT_WARNING = "ignore:Gradients do not exist for variables"


def softmax_regression(kernel: np.ndarray, bias: np.ndarray) -> keras.Model:
    """Dense softmax on ``FEATURES`` inputs, with an extra weight that the loss never touches."""
    model = keras.Sequential(
        [keras.Input((FEATURES,)), UnusedWeight(), keras.layers.Dense(CLASSES, activation="softmax")]
    )
    model.layers[-1].set_weights([kernel, bias])
    return model


class UnusedWeight(keras.layers.Layer):
    """Passes its input through; its trainable weight gets no gradient (SAM must skip it)."""

    def build(self, input_shape):
        self.unused = self.add_weight(shape=(2,), initializer="ones", name="unused")

    def call(self, inputs):
        return inputs


def loss_gradient(x, y, weights, kernel, bias):
    """Gradient of Keras' mean (over the batch) weighted cross-entropy of a softmax regression."""
    logits = x @ kernel + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    error = (probabilities - np.eye(CLASSES)[y]) * weights[:, None] / len(x)
    return x.T @ error, error.sum(axis=0)


def sam_update_by_hand(x, y, weights, kernel, bias, rho, lr):
    """One SAM step with a plain SGD base optimizer, straight from Foret et al.'s formula."""
    g_kernel, g_bias = loss_gradient(x, y, weights, kernel, bias)
    norm = np.sqrt(np.sum(g_kernel**2) + np.sum(g_bias**2))
    e_kernel, e_bias = rho * g_kernel / norm, rho * g_bias / norm
    s_kernel, s_bias = loss_gradient(x, y, weights, kernel + e_kernel, bias + e_bias)
    return kernel - lr * s_kernel, bias - lr * s_bias


def compile_with(model, optimizer, **kwargs):
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"], **kwargs)


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, FEATURES)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    kernel = rng.normal(size=(FEATURES, CLASSES)).astype("float32")
    bias = rng.normal(size=CLASSES).astype("float32")
    return x, y, kernel, bias


# Graph mode (run_eagerly=False, Keras' default) is where a badly ordered perturbation makes both
# gradients equal; XLA compiles the step as a whole and is what Keras picks on a GPU.
@pytest.mark.numerics
@pytest.mark.filterwarnings(UNUSED_WEIGHT_WARNING)
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("weighting", ["none", "sample_weight", "class_weight"])
def test_one_step_matches_the_formula_and_differs_from_sgd(data, weighting, jit_compile):
    keras.utils.set_random_seed(0)
    x, y, kernel, bias = data
    rho, lr = 0.5, 0.5
    class_weight = {0: 1.0, 1: 2.5, 2: 0.5}
    sample_weight = np.linspace(0.5, 3.0, len(x)).astype("float32")
    fit_weights = {
        "none": {},
        "sample_weight": {"sample_weight": sample_weight},
        "class_weight": {"class_weight": class_weight},
    }[weighting]
    loss_weights = {
        "none": np.ones(len(x), "float32"),
        "sample_weight": sample_weight,
        "class_weight": np.array([class_weight[label] for label in y], "float32"),
    }[weighting]

    model = softmax_regression(kernel, bias)
    wrapped = sharpness_aware(model, rho=rho)
    compile_with(wrapped, keras.optimizers.SGD(learning_rate=lr), jit_compile=jit_compile)
    wrapped.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0, **fit_weights)

    expected_kernel, expected_bias = sam_update_by_hand(x, y, loss_weights, kernel, bias, rho, lr)
    new_kernel, new_bias = model.layers[-1].get_weights()
    # TensorFlow's float32 step against NumPy's by hand: 6.4e-8 measured on both kernel paths;
    # 1e-5 is float32 rounding with margin, and 100 times below SAM's difference from SGD (1e-3).
    np.testing.assert_allclose(new_kernel, expected_kernel, atol=1e-5)
    np.testing.assert_allclose(new_bias, expected_bias, atol=1e-5)
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], [1.0, 1.0])

    g_kernel, _ = loss_gradient(x, y, loss_weights, kernel, bias)
    assert np.abs(new_kernel - (kernel - lr * g_kernel)).max() > 1e-3, "SAM made a plain SGD step"


@pytest.mark.numerics
@pytest.mark.filterwarnings(UNUSED_WEIGHT_WARNING)
def test_reported_loss_is_the_loss_at_the_unperturbed_weights(data):
    x, y, kernel, bias = data
    model = softmax_regression(kernel, bias)
    expected = keras.losses.SparseCategoricalCrossentropy()(y, model.predict(x, verbose=0))
    wrapped = sharpness_aware(model, rho=0.5)
    compile_with(wrapped, keras.optimizers.SGD(learning_rate=0.5))
    history = wrapped.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(float(expected), rel=1e-5)  # float32 reordering: 2.2e-7 measured, both paths


def batchnorm_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(5),
            keras.layers.BatchNormalization(momentum=0.5),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )


@pytest.mark.numerics
def test_batchnorm_statistics_are_updated_once_per_step(data):
    keras.utils.set_random_seed(0)
    x, y, _, _ = data
    model = batchnorm_model()
    reference = batchnorm_model()
    reference.set_weights(model.get_weights())
    before = model.layers[1].get_weights()[2:]

    reference(x, training=True)  # one plain forward pass: the statistics of one update
    wrapped = sharpness_aware(model, rho=0.5)
    compile_with(wrapped, keras.optimizers.SGD(learning_rate=0.5))
    wrapped.fit(x, y, batch_size=len(x), epochs=1, verbose=0)

    after = model.layers[1].get_weights()[2:]
    expected = reference.layers[1].get_weights()[2:]
    for name, old, new, once in zip(["moving_mean", "moving_variance"], before, after, expected):
        assert not np.allclose(new, old), f"{name} was not updated"
        np.testing.assert_allclose(new, once, atol=1e-6, err_msg=name)  # float32 of O(1) statistics: 6e-8 measured, both paths
    # The trainable weights of the same layer did move: only the statistics were restored.
    assert not np.allclose(model.layers[1].get_weights()[0], reference.layers[1].get_weights()[0])


def tiny_convnet() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )


def blob_images(n_per_class: int = 8):
    """Images whose mean colour tells the class: easy to learn in a few epochs."""
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(CLASSES), n_per_class)
    x = rng.normal(0.0, 0.3, size=(len(y), 8, 8, 3)).astype("float32")
    x[np.arange(len(y)), :, :, y] += 1.0
    return x, y


@pytest.mark.numerics
@pytest.mark.parametrize("class_weight", [None, {0: 1.0, 1: 3.0, 2: 0.5}], ids=["unweighted", "class_weight"])
def test_a_small_model_trains_with_sam(class_weight):
    keras.utils.set_random_seed(1)
    x, y = blob_images()
    model = tiny_convnet()
    wrapped = sharpness_aware(model, rho=0.05)
    compile_with(wrapped, keras.optimizers.Adam(learning_rate=0.03))
    history = wrapped.fit(x, y, batch_size=8, epochs=6, class_weight=class_weight, verbose=0)

    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    # The wrapper trained the inner model's own weights; evaluate and predict work unchanged.
    np.testing.assert_allclose(wrapped.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)  # one set of weights: 0 measured, both paths
    assert set(wrapped.evaluate(x, y, verbose=0, return_dict=True)) == {"loss", "accuracy"}


def test_wrapper_shares_the_weights_and_passes_training_on(data):
    x, _, kernel, bias = data
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dropout(0.9), keras.layers.Dense(CLASSES)])
    wrapped = sharpness_aware(model)
    assert isinstance(wrapped, sharpness_aware_model_class())
    assert [id(v) for v in wrapped.trainable_weights] == [id(v) for v in model.trainable_weights]
    np.testing.assert_allclose(wrapped(x, training=False), model(x, training=False))
    assert not np.allclose(wrapped(x, training=True), model(x, training=False))


def test_rho_must_be_positive():
    with pytest.raises(ValueError, match="rho"):
        sharpness_aware(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), rho=0.0)


def test_both_gradient_passes_of_a_step_share_one_trace():
    """The two forward and backward passes are one traced function called twice: a second trace
    of EfficientNet-B0's passes cost seconds per run."""
    traced = []

    class Counting(sharpness_aware_model_class()):
        def _forward_backward(self, *args):
            traced.append(len(traced))
            return super()._forward_backward(*args)

    x, y = blob_images()
    wrapped = Counting(tiny_convnet(), rho=0.05)
    compile_with(wrapped, keras.optimizers.Adam(learning_rate=0.01))
    wrapped.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert traced == [0]
