"""Model building, staged fine-tuning and prediction: the only core module that imports TensorFlow.

It is imported when the first run starts, never by listing plugins, a dry run, describing data or
rendering reports.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import keras
import tensorflow as tf

from feph_finetune.training import head_features
from feph_finetune.training.tensorflow_faults import refuse_known_faults
from feph_finetune.api import CLASSES, BuiltModel, PluginError, Preprocessing, RunContext, TrainingStage
from feph_finetune.training.compiling import all_layers, compile_for_stage, predict_traced_once
from feph_finetune.config.matrix import Run
from feph_finetune.execution.progress import epoch_words
from feph_finetune.hook_results import batch_problem, wrap_problem
from feph_finetune.plugins import PluginCallError, Plugins, plugin_code
from feph_finetune.data.class_mapping import map_classes
from feph_finetune.data.preparation import Examples, RunData


@dataclass
class TrainingOutcome:
    y_prob: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    model: Any = None
    notes: list[str] = field(default_factory=list)


def use_threads(threads: int) -> None:
    """Run TensorFlow's ops on ``threads`` threads, within an op and across ops; 0: TensorFlow's
    default, one per CPU core.

    The count is part of what a result depends on: floating-point sums split across a different
    number of threads round differently. Measured on this project's 2-core machine (TF 2.21, op
    determinism on), MobileNet and EfficientNet-B0 trained for two epochs on 1 thread and on 2
    ended with different weights, while 2 threads and the default gave the same. It is also
    faster when runs share the CPU: two EfficientNet-B0 runs with SAM side by side took 22.3 s
    on 1 thread each and 24.0 s on the default.

    Raises RuntimeError where TensorFlow already runs in this process with another count (an
    earlier run of the ``inline`` executor): TensorFlow fixes it when it starts.
    """
    current = (tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads())
    if current == (threads, threads):
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        raise RuntimeError(
            f"threads = {threads} cannot apply: TensorFlow already runs in this process with "
            f"{current[0] or 'its default number of'} threads (an earlier run of the inline executor); "
            f"run the matrix with the process executor"
        ) from None


def seed_everything(seed: int, deterministic: bool) -> None:
    """Fix Python, NumPy and TensorFlow randomness (initialisation, shuffling, augmentation)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


# --- the input pipeline ----------------------------------------------------------------------


def preprocess_batch(x, batch_steps: list[tuple[str, Preprocessing]]):
    """A uint8 batch (B x S x S x 3, tensor or array) cast to float32 and passed through each
    preprocessing ``batch`` step in order: the model's input in training, testing and ``predict``."""
    x = tf.cast(x, tf.float32)
    for name, step in batch_steps:
        with plugin_code(name, "preprocess"):
            returned = step.batch(x)
        x = _checked_batch(name, "preprocess", x, returned)
    return x


def _checked_batch(plugin: str, hook: str, given, returned):
    """``returned``, the result of ``plugin``'s batch function for ``given``, if it is a float
    batch of the same shape (:func:`feph_finetune.hook_results.batch_problem`); else the plugin's failure."""
    if problem := batch_problem("batch", given, returned):
        raise PluginCallError(plugin, hook, PluginError(problem))
    return returned


def _batch_transform(data: RunData, training: bool) -> Callable:
    """Cast a uint8 batch to float32, apply preprocessing, then (training only) augmentation."""

    def transform(x, y, seed=None):
        x = preprocess_batch(x, data.batch_steps)
        if training:
            for index, (name, augmentation) in enumerate(data.augmentations):
                with plugin_code(name, "augment"):
                    returned = augmentation.batch(x, seed + index)
                x = _checked_batch(name, "augment", x, returned)
        return x, y

    return transform


def make_dataset(examples: Examples, data: RunData, batch_size: int, seed: int, training: bool) -> tf.data.Dataset:
    """Batches of model-ready ``(images, labels)``, shuffled per epoch when ``training``.

    Only indices flow through shuffling and batching; each batch of uint8 rows is gathered from
    the shared image array, then cast, preprocessed and (training only) augmented. So neither a
    tensor copy of the images nor a shuffle buffer of them is held: the memory is one batch.
    """
    images = examples.images
    dataset = tf.data.Dataset.from_tensor_slices((examples.index.astype("int64"), examples.labels.astype("int32")))
    if training:
        dataset = dataset.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def gather(index, labels):
        rows = tf.numpy_function(lambda chosen: images[chosen], [index], tf.uint8, stateful=False)
        rows.set_shape((None, *images.shape[1:]))
        return rows, labels

    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    transform = _batch_transform(data, training)
    if training and data.augmentations:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = _traced_map(tf.data.Dataset.zip((dataset, seeds)), lambda batch, s: transform(*batch, seed=s))
    else:
        dataset = _traced_map(dataset, transform)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _traced_map(dataset: tf.data.Dataset, transform: Callable) -> tf.data.Dataset:
    """``dataset.map(transform)``, which traces the plugins' batch functions here, before any
    epoch. AutoGraph re-raises a plugin's failure while tracing as a StagingError naming no
    plugin; the :class:`PluginCallError` it wraps is raised instead."""
    try:
        return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    except Exception as error:
        failure = error
        while failure is not None and not isinstance(failure, PluginCallError):
            failure = failure.__cause__ or failure.__context__
        if failure is None:
            raise
        raise failure from None


# --- trainability ----------------------------------------------------------------------------


def set_trainable(built: BuiltModel, which: str, train_batchnorm: bool) -> None:
    """``head``: only the new layers train. ``all``: everything, BatchNorm kept in inference mode
    unless ``train_batchnorm`` (the Keras transfer-learning guide's advice for small data)."""
    head = {id(layer) for layer in built.head}
    for layer in all_layers(built.model)[1:]:
        if which == "head":
            layer.trainable = id(layer) in head
        else:
            layer.trainable = train_batchnorm or not isinstance(layer, keras.layers.BatchNormalization)


# --- progress --------------------------------------------------------------------------------


class ProgressCallback(keras.callbacks.Callback):
    """Feeds a progress display (a rich ``Progress`` or :class:`feph_finetune.execution.job.ProgressEvents`)
    with the stage (number ``stage_number`` of ``stages``), the epoch within it (Keras counts
    across stages, from ``first_epoch``), batch and loss."""

    def __init__(self, progress, task, stage: str, epochs: int, first_epoch: int, stage_number: int, stages: int):
        super().__init__()
        self.progress, self.task, self.stage = progress, task, stage
        self.epochs, self.first_epoch = epochs, first_epoch
        self.stage_number, self.stages = stage_number, stages

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch - self.first_epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", float("nan")))
        where = epoch_words(self.stage, self.epoch, self.epochs, self.stage_number, self.stages)
        self.progress.update(
            self.task, advance=1, description=f"{where} batch {batch + 1} loss {loss:.3f}",
            stage=self.stage, stage_number=self.stage_number, stages=self.stages, epoch=self.epoch, epochs=self.epochs, loss=loss,
        )


class EpochEnd(keras.callbacks.Callback):
    """Calls ``on_epoch(stage, epoch, logs)`` after each epoch: the epoch counted from 1 across
    stages, the logs as floats (what ``history.json`` records), for the tracking plugins."""

    def __init__(self, on_epoch: Callable[[str, int, dict[str, float]], None], stage: str):
        super().__init__()
        self.on_epoch, self.stage = on_epoch, stage

    def on_epoch_end(self, epoch, logs=None):
        self.on_epoch(self.stage, epoch + 1, {key: float(value) for key, value in (logs or {}).items()})


class BestEpoch(keras.callbacks.Callback):
    """Remembers the weights of the epoch with the best validation accuracy, across stages."""

    def __init__(self, model):
        super().__init__()
        self.target, self.best, self.weights = model, -math.inf, None

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is not None and accuracy > self.best:
            self.best, self.weights = accuracy, self.target.get_weights()


# --- training --------------------------------------------------------------------------------


def train_stages(run: Run, built: BuiltModel, stages: list[TrainingStage], data: RunData, optimizer_plugin: str, progress, on_epoch=None) -> TrainingOutcome:
    """Train ``built`` stage by stage, epochs numbered across stages; keep the best epoch if
    validating; ``on_epoch(stage, epoch, logs)`` is told each epoch's end (:class:`EpochEnd`)."""
    batch_size = run.config["batch_size"]
    train = make_dataset(data.train, data, batch_size, run.seed, training=True)
    validation = None if data.val is None else make_dataset(data.val, data, batch_size, run.seed, training=False)
    best = BestEpoch(built.model) if validation is not None else None
    outcome = TrainingOutcome(y_prob=np.empty(0))
    epoch = 0
    schedule = [stage for stage in stages if stage.epochs > 0]
    for number, stage in enumerate(schedule, 1):
        set_trainable(built, stage.trainable, run.config["train_batchnorm"])
        task = progress.add_task(stage.name, total=math.ceil(len(data.train) / batch_size) * stage.epochs) if progress else None
        callbacks = [keras.callbacks.TerminateOnNaN()] + ([ProgressCallback(progress, task, stage.name, stage.epochs, epoch, number, len(schedule))] if progress else []) + ([best] if best else []) + ([EpochEnd(on_epoch, stage.name)] if on_epoch else [])
        on_features = run.config["head_features"] and head_features.applies(built, stage, random_augmentation=bool(data.augmentations))
        started = time.perf_counter()
        if on_features:
            history = _train_head_on_features(built, stage, data, validation, run.seed, batch_size, callbacks, epoch)
        else:
            trained = _stage_model(built.model, stage, optimizer_plugin)
            compile_for_stage(trained, stage.optimizer)
            refuse_known_faults(trained, len(data.train), batch_size, stage.name)
            history = trained.fit(train, validation_data=validation, epochs=epoch + stage.epochs, initial_epoch=epoch, class_weight=data.class_weight, callbacks=callbacks, shuffle=False, verbose=0).history
        outcome.stage_seconds[stage.name] = outcome.stage_seconds.get(stage.name, 0.0) + time.perf_counter() - started
        if progress:
            progress.remove_task(task)
        _record_history(outcome, stage, epoch, history, on_features, optimizer_plugin)
        epoch += stage.epochs
    if best is not None and best.weights is not None:
        built.model.set_weights(best.weights)
    return outcome


def _stage_model(model, stage: TrainingStage, optimizer_plugin: str):
    """The model ``stage`` compiles and fits: ``stage.wrap(model)``, checked
    (:func:`feph_finetune.hook_results.wrap_problem`), or ``model`` itself; a wrap that fails or
    breaks its promise is the optimizer plugin's failure, before the stage trains."""
    if stage.wrap is None:
        return model
    with plugin_code(optimizer_plugin, "optimizer_schedule"):
        wrapped = stage.wrap(model)
    if problem := wrap_problem(model, wrapped):
        raise PluginCallError(optimizer_plugin, "optimizer_schedule", PluginError(f"stage {stage.name!r}: {problem}"))
    return wrapped


def _train_head_on_features(built: BuiltModel, stage: TrainingStage, data: RunData, validation, seed: int, batch_size: int, callbacks: list, initial_epoch: int) -> dict[str, list]:
    """The stage through :mod:`feph_finetune.training.head_features`: the frozen base sees each image once."""
    return head_features.train_head_on_features(
        built,
        stage,
        make_dataset(data.train, data, batch_size, seed, training=False),
        data.train.labels,
        batch_size=batch_size,
        seed=seed,
        class_weight=data.class_weight,
        validation=None if validation is None else (validation, data.val.labels),
        callbacks=callbacks,
        initial_epoch=initial_epoch,
    )


def _record_history(outcome: TrainingOutcome, stage: TrainingStage, first_epoch: int, history: dict[str, list], on_features: bool, optimizer_plugin: str) -> None:
    """Append one entry per epoch; a non-finite loss fails the run, attributed to the schedule."""
    for offset, values in enumerate(zip(*history.values())):
        entry = {"stage": stage.name, "stage_label": stage.label or stage.name, "epoch": first_epoch + offset + 1, "head_features": on_features, **{key: float(value) for key, value in zip(history, values)}}
        outcome.history.append(entry)
        if not math.isfinite(entry.get("loss", 0.0)):
            raise PluginCallError(optimizer_plugin, "optimizer_schedule", FloatingPointError(f"loss became {entry['loss']} in stage {stage.name!r}, epoch {entry['epoch']}"))


def predict(model, examples: Examples, data: RunData, batch_size: int) -> np.ndarray:
    dataset = make_dataset(examples, data, batch_size, seed=0, training=False)
    return np.asarray(predict_traced_once(model, dataset, batch_size), dtype=np.float64)


#: How far a row of a pretrained model's outputs may be from probabilities: a float32 softmax
#: over K classes rounds each of its K terms and their sum (relative error about K * 6e-8, so
#: below 1e-6 for K <= 16); 1e-3 allows that many times over, while logits miss by far more.
PROBABILITY_TOLERANCE = 1e-3


def probability_rows_problem(outputs: np.ndarray) -> str | None:
    """What makes ``outputs`` (N x K) not rows of probabilities, or None: a value below 0 or a row
    whose sum is not 1, within :data:`PROBABILITY_TOLERANCE`."""
    if not len(outputs):
        return None
    if not np.all(np.isfinite(outputs)):
        return "some are not finite"
    low = outputs.min()
    if low < -PROBABILITY_TOLERANCE:
        return f"one is {low:.4g}, below 0"
    sums = outputs.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > PROBABILITY_TOLERANCE:
        return f"the outputs for test image {worst} sum to {sums[worst]:.4g}, not 1"
    return None


def pretrained_probabilities(built: BuiltModel, model_plugin: str, data: RunData, batch_size: int, classes=CLASSES, notes: list[str] | None = None) -> np.ndarray:
    """No-FT: the pretrained model's own predictions, one column per dataset class in ``classes``'
    order, matched by name (:func:`feph_finetune.data.class_mapping.map_classes`, the rule the
    configuration check applies).

    Outputs whose class the dataset lacks (Contempt, in HSEmotion's 8-class models) are dropped
    and the remaining probabilities divided by their sum, so each row sums to 1 again and the
    argmax is the most probable class of the dataset; ``notes`` receives a sentence saying so for
    the run's results. A dataset class the model lacks fails the run (the configuration check
    refuses it first), and so do outputs that are not rows of probabilities
    (:func:`probability_rows_problem`: logits from a file whose plugin was not told ``outputs =
    "logits"``), which the mapping would otherwise turn into wrong results without a word.
    """
    if built.pretrained is None or not built.pretrained_classes:
        raise PluginCallError(model_plugin, "build_model", PluginError("No-FT needs a pretrained expression model (weights = a whole-model file with a classifier top, or a converted file)"))
    try:
        mapping = map_classes(list(built.pretrained_classes), classes)
    except ValueError as error:
        raise PluginCallError(model_plugin, "build_model", PluginError(str(error))) from None
    if mapping.missing:
        raise PluginCallError(model_plugin, "build_model", PluginError(
            f"the pretrained model has no class {', '.join(map(repr, mapping.missing))} of the dataset (its classes: {', '.join(map(repr, built.pretrained_classes))})"))
    raw = predict(built.pretrained, data.test, data, batch_size)
    problem = probability_rows_problem(raw)
    if problem:
        advice = ("the model file is damaged or its weights overflowed" if not np.all(np.isfinite(raw)) else
                  f"if its last layer gives raw scores (logits), set options.{model_plugin}.outputs = \"logits\"")
        raise PluginCallError(model_plugin, "build_model", PluginError(f"No-FT: the pretrained model's outputs are not probabilities ({problem}); {advice}"))
    mapped = raw[:, list(mapping.columns)]
    dropped = mapping.dropped
    if not dropped:
        return mapped
    kept = mapped.sum(axis=1, keepdims=True)
    if np.any(kept <= 0):
        raise PluginCallError(model_plugin, "build_model", PluginError(
            f"No-FT: for {int(np.sum(kept <= 0))} of {len(kept)} test images the pretrained model gives all its probability to "
            f"{', '.join(map(repr, dropped))}, which the dataset lacks: no class of the dataset can be predicted for them"))
    if notes is not None:
        notes.append(
            f"No-FT: the pretrained model's output{'s' if len(dropped) > 1 else ''} {', '.join(dropped)} "
            f"{'have' if len(dropped) > 1 else 'has'} no class in the dataset; dropped, and the probabilities of the "
            f"dataset's {len(classes)} classes divided by their sum"
        )
    return mapped / kept


def train_and_predict(run: Run, plugins: Plugins, data: RunData, context_for: Callable[[str], RunContext], progress=None, on_epoch=None,
                      on_prediction: Callable[[], None] = lambda: None) -> TrainingOutcome:
    """Build the model, fine-tune it stage by stage (unless No-FT), and predict the test split;
    ``on_epoch(stage, epoch, logs)`` is called after each epoch (:class:`EpochEnd`),
    ``on_prediction()`` as the prediction of the test split begins."""
    config = run.config
    keras.backend.clear_session()  # drop the previous run's models; layer names start afresh (memory: see README, "Executors")
    use_threads(config["threads"])
    seed_everything(run.seed, config["deterministic"])
    model_plugin = config["model"]
    built = plugins.call(model_plugin, "build_model", context=context_for(model_plugin))  # a BuiltModel: Plugins.call checks it
    normalizing = [name for name, step in data.batch_steps if step.normalizes]
    if built.normalizes_input and normalizing:
        raise PluginCallError(
            normalizing[0], "preprocess", PluginError(f"the model from {model_plugin!r} normalises its input itself; remove {normalizing[0]!r} from this experiment's preprocess list")
        )
    if not config["fine_tune"]:
        notes: list[str] = []
        on_prediction()
        return TrainingOutcome(y_prob=pretrained_probabilities(built, model_plugin, data, config["batch_size"], run.classes, notes), notes=notes)
    optimizer_plugin = config["optimizer"]
    stages = list(plugins.call(optimizer_plugin, "optimizer_schedule", context=context_for(optimizer_plugin)))
    outcome = train_stages(run, built, stages, data, optimizer_plugin, progress, on_epoch)
    on_prediction()
    outcome.y_prob = predict(built.model, data.test, data, config["batch_size"])
    outcome.model = built.model
    return outcome


def environment() -> dict[str, Any]:
    """What the results depend on beyond the configuration: library versions, the device, and
    the CPU cores TensorFlow's threads (0: one per core) ran on."""
    devices = [device.device_type for device in tf.config.list_physical_devices()]
    threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(), "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "devices": devices, "threads": threads, "cpu_count": os.cpu_count()}
