"""Predicting with one traced graph: the same numbers as Keras' ``predict``, one trace."""

from __future__ import annotations

import numpy as np
import pytest

from feph_finetune.training.compiling import predict_traced_once


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((32, 32, 3))
    base = keras.applications.MobileNet(include_top=False, weights=None, input_tensor=inputs, alpha=0.25, pooling="avg")
    return keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(base.output))


def test_predicting_in_one_graph_gives_keras_predict_numbers_bit_for_bit(tiny_model):
    """Same ops, same batches, same kernels: equal bits on either kernel path (each path is
    compared with itself), for an array and for a dataset of (x, y) batches with a short last one."""
    import tensorflow as tf

    images = np.random.default_rng(0).uniform(0, 255, (37, 32, 32, 3)).astype(np.float32)
    expected = tiny_model.predict(images, batch_size=16, verbose=0)
    np.testing.assert_array_equal(predict_traced_once(tiny_model, images, 16), expected)
    batches = tf.data.Dataset.from_tensor_slices((images, np.zeros(37, "int32"))).batch(16)
    np.testing.assert_array_equal(predict_traced_once(tiny_model, batches, 16), expected)


def test_a_short_last_batch_does_not_trace_again(tiny_model, monkeypatch):
    import tensorflow as tf

    traced = []
    original = tf.function

    def counting(function=None, **kwargs):
        if function is None or "input_signature" not in kwargs:  # Keras' own tf.function uses
            return original(function, **kwargs) if function is not None else original(**kwargs)

        def body(x):
            traced.append(x.shape.as_list())
            return function(x)

        return original(body, **kwargs)

    monkeypatch.setattr(tf, "function", counting)
    images = np.zeros((37, 32, 32, 3), np.float32)
    assert predict_traced_once(tiny_model, images, 16).shape == (37, 7)
    assert traced == [[None, 32, 32, 3]]
