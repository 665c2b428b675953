"""Compiling a Keras model for one training stage so that its train step is traced only once."""

from __future__ import annotations

from typing import Any


def all_layers(layer: Any) -> list:
    """``layer`` and every layer nested in it, depth first (a backbone inside a functional model)."""
    return [layer] + [inner for child in getattr(layer, "layers", []) for inner in all_layers(child)]


def compile_for_stage(model: Any, optimizer: Any) -> None:
    """Compile ``model`` with ``optimizer``, sparse categorical cross-entropy and accuracy, and
    create the optimizer's and the metric's variables now.

    Without a distribution strategy Keras 3 creates them lazily, inside the first trace of the
    train step, and TensorFlow traces a function that created variables a second time. Measured
    on this project's 2-core CPU (TF 2.21, Keras 3.15), a demo run of EfficientNet-B0 with SAM at
    64 px took 44 s with that second trace and 34 s without it, with the same metrics.

    The metric is passed as an object (its variables exist once it is constructed) and keeps
    the name ``accuracy``, so the history's keys are ``accuracy`` and ``val_accuracy`` as with
    ``metrics=["accuracy"]``. The optimizer built is the model's own (Keras may wrap or resolve
    ``optimizer``); one already built (reused from an earlier stage) is kept, and a model not yet
    built (its variables made on first call) is left to Keras.
    """
    import keras

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    if model.built and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def predict_traced_once(model: Any, data: Any, batch_size: int) -> Any:
    """``model.predict(data)`` with one graph for all batches: a float32 NumPy array, one row per
    example.

    ``data``: an array (N x ...), batched here into ``batch_size``; or a ``tf.data.Dataset`` of
    batches, ``x`` or ``(x, ...)``. Keras' ``predict`` traces its step for the first batch's
    shape and again for a smaller last batch; each trace of a CPU model costs seconds (measured
    on this project's 2-core CPU, TF 2.21: 1.5 to 1.8 s per trace of EfficientNet-B0 at 64 px,
    plus as much again for the first call of each traced graph). Here the batch dimension is
    left open in the signature, so it is traced once. The computation is the one Keras'
    ``predict_step`` runs, ``model(x, training=False)``.
    """
    import numpy as np
    import tensorflow as tf

    if not isinstance(data, tf.data.Dataset):
        data = tf.data.Dataset.from_tensor_slices(np.asarray(data)).batch(batch_size)
    spec = data.element_spec
    if isinstance(spec, tuple):
        data, spec = data.map(lambda x, *rest: x), spec[0]
    forward = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, *spec.shape[1:]), spec.dtype)])
    outputs = [forward(batch).numpy() for batch in data]
    return np.concatenate(outputs, axis=0) if outputs else np.empty((0, *model.output.shape[1:]), dtype=np.float32)
