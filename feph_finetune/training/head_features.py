"""Phase 1 on precomputed features: train the new head on what the frozen base outputs, once.

In a ``trainable == "head"`` stage the base is frozen and runs in inference mode, so its output for
an image is the same in every epoch; plain ``fit`` still runs it on every batch of every epoch, and
that forward pass is nearly all of the stage's cost. Here the frozen part runs once over the
training (and validation) images, and the head layers train on the stored features for the
stage's epochs. The head layers are the model's own layer objects, so the full model holds the
trained head afterwards.

When it applies (:func:`unsuitable_reason` says why not otherwise):

- the stage trains the head only and has no ``wrap`` (a custom ``train_step`` such as SAM's must
  see the whole model);
- the training data has no random per-batch augmentation (features of randomly changed images
  differ every epoch);
- the head is the tail of the model: a chain of layers from one feature tensor to the output.

Differences from plain ``fit`` (results are close, not bit-equal): the frozen part runs in
inference mode, as the Keras transfer-learning guide prescribes, so dropout layers *inside the
base* (EfficientNet's drop-connect) are off, while plain ``fit`` applies them even to frozen
layers; frozen BatchNormalization behaves the same in both (moving statistics). Dropout *in the
head* trains as usual. Shuffling, batch size, class weights and seed follow the core's pipeline.

TensorFlow and Keras are imported inside the functions that build or train a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from feph_finetune.api import BuiltModel, TrainingStage
from feph_finetune.training.compiling import compile_for_stage, predict_traced_once

#: Keras layers without weights that give the same output for an image every time: leading ones
#: of the head run once with the frozen part, so that spatial features (N x H x W x C) are stored
#: pooled, not whole.
_FOLDABLE_LAYERS = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")


@dataclass
class HeadSplit:
    """The model cut where the trained layers begin.

    ``extractor`` maps images to features (the frozen part, plus any leading pooling of the head);
    ``head`` maps features to probabilities through the original head layer objects.
    """

    extractor: Any
    head: Any


def unsuitable_reason(built: BuiltModel, stage: TrainingStage, random_augmentation: bool) -> str | None:
    """Why ``stage`` cannot train on precomputed features, in words; None when it can."""
    if stage.trainable != "head":
        return f"stage {stage.name!r} trains {stage.trainable!r} layers, not the head only"
    if stage.wrap is not None:
        return f"stage {stage.name!r} wraps the model in its own train_step"
    if random_augmentation:
        return "the training batches are augmented at random, so the base's features change every epoch"
    return _head_chain_problem(built)


def applies(built: BuiltModel, stage: TrainingStage, random_augmentation: bool) -> bool:
    """Whether :func:`train_head_on_features` can replace ``fit`` for this stage."""
    return unsuitable_reason(built, stage, random_augmentation) is None


def split_at_head(built: BuiltModel) -> HeadSplit:
    """Cut ``built.model`` into the frozen extractor and a model of the head layers alone."""
    problem = _head_chain_problem(built)
    if problem:
        raise ValueError(f"cannot train the head on precomputed features: {problem}")
    import keras

    foldable = tuple(getattr(keras.layers, name) for name in _FOLDABLE_LAYERS)
    trained = list(built.head)[_first_trained_layer(built.head, foldable) :]
    extractor = keras.Model(built.model.inputs, trained[0].input, name=f"{built.model.name}_features")
    features = keras.Input(shape=tuple(trained[0].input.shape[1:]), dtype=trained[0].input.dtype, name="features")
    x = features
    for layer in trained:
        x = layer(x)
    return HeadSplit(extractor=extractor, head=keras.Model(features, x, name=f"{built.model.name}_head"))


def train_head_on_features(
    built: BuiltModel,
    stage: TrainingStage,
    train: Any,
    train_labels: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    class_weight: Mapping[int, float] | None = None,
    validation: tuple[Any, np.ndarray] | None = None,
    callbacks: Sequence[Any] = (),
    initial_epoch: int = 0,
) -> dict[str, list[float]]:
    """Train ``built.head`` for ``stage.epochs`` epochs on features computed once; return the history.

    ``train`` holds the model-ready training images in the order of ``train_labels``: a float
    array, or an unshuffled ``tf.data.Dataset`` of preprocessed batches (``x`` or ``(x, y)``), as
    ``model.predict`` accepts. ``validation`` is ``(images, labels)`` in the same forms, or None.
    Training uses ``stage.optimizer``, sparse categorical cross-entropy and accuracy, batches of
    ``batch_size`` reshuffled every epoch from ``seed`` (as the core's pipeline), and
    ``class_weight``. ``callbacks`` and ``initial_epoch`` are passed to ``fit``, so epoch numbers
    and callbacks (progress, best epoch) work as for the full model.

    Returns ``{"loss": [...], "accuracy": [...]}`` per epoch, plus ``val_loss`` and
    ``val_accuracy`` with validation: the ``history`` of a Keras ``fit``.
    """
    split = split_at_head(built)
    features = _features(split.extractor, train, train_labels, batch_size, "training")
    validation_data = None
    if validation is not None:
        images, labels = validation
        validation_data = (_features(split.extractor, images, labels, batch_size, "validation"), np.asarray(labels, dtype="int32"))
    compile_for_stage(split.head, stage.optimizer)
    history = split.head.fit(
        _shuffled_batches(features, train_labels, batch_size, seed),
        validation_data=validation_data,
        validation_batch_size=batch_size,
        epochs=initial_epoch + stage.epochs,
        initial_epoch=initial_epoch,
        class_weight=dict(class_weight) if class_weight else None,
        callbacks=list(callbacks),
        shuffle=False,
        verbose=0,
    )
    return {key: [float(value) for value in values] for key, values in history.history.items()}


# --- helpers ---------------------------------------------------------------------------------


def _first_trained_layer(head: Sequence[Any], foldable: tuple[type, ...]) -> int:
    """Index of the first head layer that is not foldable into the extractor (never past the last)."""
    index = 0
    while index < len(head) - 1 and isinstance(head[index], foldable):
        index += 1
    return index


def _head_chain_problem(built: BuiltModel) -> str | None:
    """None when the head layers form a chain from one tensor to the model's only output."""
    head = list(built.head)
    if not head:
        return "the model names no head layers"
    if len(built.model.outputs) != 1:
        return f"the model has {len(built.model.outputs)} outputs; one is needed"
    for layer in head:
        if not _was_called(layer):
            return f"head layer {layer.name!r} is not connected to the model"
    if isinstance(head[0].input, (list, tuple)):
        return f"head layer {head[0].name!r} takes several inputs"
    for previous, layer in zip(head, head[1:]):
        if layer.input is not previous.output:
            return f"head layer {layer.name!r} does not take the output of {previous.name!r}: the head is not a chain"
    if built.model.outputs[0] is not head[-1].output:
        return f"the model's output is not the output of the last head layer {head[-1].name!r}"
    return None


def _was_called(layer: Any) -> bool:
    """Whether the layer was ever called on a tensor; Keras refuses to name the input otherwise."""
    try:
        return layer.input is not None
    except (AttributeError, ValueError):
        return False


def _features(extractor: Any, images: Any, labels: np.ndarray, batch_size: int, what: str) -> np.ndarray:
    """The extractor's output in inference mode, one row per label."""
    features = predict_traced_once(extractor, images, batch_size)
    if len(features) != len(labels):
        raise ValueError(f"train_head_on_features: the {what} images gave {len(features)} feature rows for {len(labels)} labels")
    return features


def _shuffled_batches(features: np.ndarray, labels: np.ndarray, batch_size: int, seed: int) -> Any:
    """Batches of (features, labels), reshuffled every epoch from ``seed`` like the core's pipeline."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((features, np.asarray(labels, dtype="int32")))
    dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
