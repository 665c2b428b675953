"""Phase 1 on precomputed features: only the head trains, the full model holds it, and the result
matches a plain ``fit`` with the base frozen."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from feph_finetune import BuiltModel, RunContext, TrainingStage
from feph_finetune.training.head_features import applies, split_at_head, train_head_on_features, unsuitable_reason
from feph_finetune_plugins import mobilenet
from feph_finetune_plugins.backbones import attach_head

SIZE = 32
BATCH = 8
SEED = 5


def tiny_mobilenet(dropout: float = 0.0) -> BuiltModel:
    """MobileNet alpha 0.25 at 32 px, random weights, as the ``mobilenet`` plugin builds it."""
    keras.utils.set_random_seed(SEED)
    context = RunContext(
        run_id="test", experiment="test", phase="exploratory", fold=None, seed=SEED, input_size=SIZE, config={},
        options={"weights": "none", "alpha": 0.25, "dropout": dropout},
    )
    return mobilenet.build_model(context=context)


def small_convnet(dropout: float = 0.0) -> BuiltModel:
    """A small conv base with BatchNorm whose random features keep the images' colour (a
    random MobileNet's vanish to ~1e-17), under the head the backbone plugins attach."""
    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    model, head = attach_head(keras.Model(inputs, features), features, 7, dropout, "small", "test")
    return BuiltModel(model=model, head=head)


def colour_classes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images whose bright colour channel is their class (0, 1 or 2): a random base separates them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = 60.0 + 120.0 * np.eye(3)[labels][:, None, None, :] + rng.normal(0, 20, (count, SIZE, SIZE, 3))
    return np.clip(images, 0, 255).astype("float32"), labels.astype("int32")


def head_stage(epochs: int = 2, lr: float = 1e-2) -> TrainingStage:
    return TrainingStage("head", "head", epochs, keras.optimizers.Adam(lr))


def freeze_base(built: BuiltModel) -> None:
    head = {id(layer) for layer in built.head}
    for layer in built.model.layers:
        layer.trainable = id(layer) in head


def plain_frozen_fit(built: BuiltModel, stage: TrainingStage, images: np.ndarray, labels: np.ndarray) -> None:
    """What the core does without this module: fit the whole model, base frozen, same shuffling."""
    import tensorflow as tf

    freeze_base(built)
    built.model.compile(optimizer=stage.optimizer, loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(images), seed=SEED, reshuffle_each_iteration=True).batch(BATCH)
    built.model.fit(dataset, epochs=stage.epochs, shuffle=False, verbose=0)


def weights_by_layer(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def data():
    return colour_classes(48, seed=1), colour_classes(30, seed=2)


def test_only_the_head_changes_and_the_full_model_holds_it(data):
    (images, labels), _ = data
    built = tiny_mobilenet()
    head_names = {layer.name for layer in built.head}
    before = weights_by_layer(built.model)
    predictions_before = built.model.predict(images, verbose=0)

    train_head_on_features(built, head_stage(), images, labels, batch_size=BATCH, seed=SEED)

    after = weights_by_layer(built.model)
    for name, weights in before.items():
        changed = any(not np.array_equal(old, new) for old, new in zip(weights, after[name]))
        assert changed == (name in head_names), f"layer {name}: changed={changed}"
    predictions = built.model.predict(images, verbose=0)
    assert predictions.shape == (len(images), 7)
    assert not np.allclose(predictions, predictions_before)


def test_history_has_one_entry_per_epoch_with_validation(data):
    (images, labels), (val_images, val_labels) = data
    built = tiny_mobilenet()
    history = train_head_on_features(
        built, head_stage(epochs=3), images, labels, batch_size=BATCH, seed=SEED, validation=(val_images, val_labels), initial_epoch=2
    )
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 3 for values in history.values())
    assert all(isinstance(value, float) and np.isfinite(value) for values in history.values() for value in values)


@pytest.mark.numerics
def test_matches_plain_fit_with_the_base_frozen(data):
    """Same initial weights, seed and batches: the head ends where plain ``fit`` takes it (the base
    has no dropout and frozen BatchNorm runs in inference mode in both), and predicts as well."""
    (images, labels), (test_images, test_labels) = data
    on_features, plain = small_convnet(), small_convnet()
    plain.model.set_weights(on_features.model.get_weights())

    keras.utils.set_random_seed(SEED)
    train_head_on_features(on_features, head_stage(epochs=3), images, labels, batch_size=BATCH, seed=SEED)
    keras.utils.set_random_seed(SEED)
    plain_frozen_fit(plain, head_stage(epochs=3), images, labels)

    # The same float32 steps reached by another route: 0 difference measured on both kernel paths;
    # 2e-3 leaves room for float32 reordering to grow over 18 Adam steps of lr 1e-2 (a step's size).
    for trained, reference in zip(on_features.head[-1].get_weights(), plain.head[-1].get_weights()):
        np.testing.assert_allclose(trained, reference, atol=2e-3)
    accuracy = lambda built: float(np.mean(built.model.predict(test_images, verbose=0).argmax(axis=1) == test_labels))  # noqa: E731
    assert accuracy(on_features) > 0.5  # three classes: chance is 1/3
    assert abs(accuracy(on_features) - accuracy(plain)) <= 0.1


@pytest.mark.numerics
def test_takes_the_cores_unshuffled_batches(data):
    """The core passes its pipeline unshuffled: a dataset of (float images, labels) batches."""
    import tensorflow as tf

    (images, labels), (val_images, val_labels) = data
    batches = lambda x, y: tf.data.Dataset.from_tensor_slices((x.astype("uint8"), y)).batch(BATCH).map(lambda a, b: (tf.cast(a, tf.float32), b))  # noqa: E731
    from_arrays, from_batches = small_convnet(), small_convnet()
    train_head_on_features(from_arrays, head_stage(), images.astype("uint8").astype("float32"), labels, batch_size=BATCH, seed=SEED,
                           validation=(val_images.astype("uint8").astype("float32"), val_labels))
    history = train_head_on_features(from_batches, head_stage(), batches(images, labels), labels, batch_size=BATCH, seed=SEED,
                                     validation=(batches(val_images, val_labels), val_labels))
    assert len(history["val_accuracy"]) == 2
    for a, b in zip(from_arrays.model.get_weights(), from_batches.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)  # equal float32 inputs: 0 measured on both kernel paths


@pytest.mark.numerics
def test_head_dropout_still_trains(data):
    """With dropout in the head the result is not equal to plain fit, but training works."""
    (images, labels), (test_images, test_labels) = data
    built = small_convnet(dropout=0.3)
    history = train_head_on_features(built, head_stage(epochs=4), images, labels, batch_size=BATCH, seed=SEED)
    assert history["loss"][-1] < history["loss"][0]
    assert np.mean(built.model.predict(test_images, verbose=0).argmax(axis=1) == test_labels) > 0.5


def test_spatial_features_are_stored_pooled():
    """A head that begins with global pooling on a conv cut trains on pooled features."""
    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    source = keras.Model(inputs, conv)
    model, head = attach_head(source, conv, 7, 0.0, "spatial", "test")
    built = BuiltModel(model=model, head=head)
    split = split_at_head(built)
    assert len(split.extractor.output.shape) == 2
    images, labels = colour_classes(16, seed=3)
    history = train_head_on_features(built, head_stage(epochs=1), images, labels, batch_size=BATCH, seed=SEED)
    assert len(history["loss"]) == 1


def test_refuses_stages_and_models_it_cannot_serve():
    built = tiny_mobilenet()
    assert applies(built, head_stage(), random_augmentation=False)
    assert "not the head only" in unsuitable_reason(built, TrainingStage("adam", "all", 1, None), False)
    assert "train_step" in unsuitable_reason(built, TrainingStage("head", "head", 1, None, wrap=lambda model: model), False)
    assert "at random" in unsuitable_reason(built, head_stage(), random_augmentation=True)

    extra = keras.layers.Activation("linear", name="after_head")
    not_tail = BuiltModel(model=keras.Model(built.model.input, extra(built.model.output)), head=built.head)
    assert "last head layer" in unsuitable_reason(not_tail, head_stage(), False)
    with pytest.raises(ValueError, match="last head layer"):
        split_at_head(not_tail)
    assert "not connected" in unsuitable_reason(BuiltModel(model=built.model, head=[keras.layers.Dense(7)]), head_stage(), False)
