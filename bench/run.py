"""The performance benchmark: ``python bench/run.py`` (``--help`` for the options).

Measures, on synthetic FePh-format data written to a temporary folder (nothing downloads):

1. runner overhead: one fine-tuning run through ``MatrixRunner`` against the same model, data,
   batch size and epochs written inline with plain ``model.fit``;
2. the crop cache: face detections in a second pass, and cached-load against detection throughput;
3. phase 1 on precomputed features (:mod:`feph_finetune.training.head_features`) against plain-Keras
   phase 1 with the base frozen: time, and the head's test accuracy;
4. SAM: time per training step against the base optimizer alone;
5. peak resident memory of a whole MobileNet run of the CLI (``--executor inline``), in a subprocess;
6. training throughput (images/s) of MobileNet and EfficientNet-B0 at several input sizes;
7. the demo command's wall time and peak resident memory of its whole process tree (the command
   and its children, sampled from /proc) with the executors ``inline``, ``process --jobs 1`` and
   ``process --jobs 2``, after a first invocation (the README's command, measured too) that
   builds the demo's data and base models.

Every figure is a ratio of two timings taken in this one invocation, a count, or a measured
value; results and their targets go to BENCHMARKS.md. Item 5 runs first, before this process
imports TensorFlow: on Linux a child's peak RSS includes the parent's pages at the time it was
spawned, so the parent must be small then.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
ITEMS = (1, 2, 3, 4, 5, 6, 7)
CLASS_COUNT = 7

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# --- settings and results --------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How big each measurement is; ``--quick`` shrinks everything for a smoke test."""

    images: int = 300              # synthetic FePh images for item 2
    size: int = 96                 # input side of item 2 and the first SAM row
    run_images: int = 600          # synthetic FePh images for items 1, 3 and 5
    paper_size: int = 224          # the paper's input side: items 1, 3, 5 and the second SAM row
    alpha: float = 1.0             # MobileNet width
    batch_size: int = 32
    head_epochs: int = 3           # phase 1 (the paper's 3)
    head_lr: float = 1e-2          # item 3: enough for 3 short epochs to move the head off its start
    epochs: int = 1                # all-layers epochs of item 1's fine-tuning run
    repeats: int = 2               # timings of items 1 and 3: best of this many
    steps: int = 6                 # timed training steps per model in items 4 and 6
    generic_images: int = 480      # item 3's pre-training set (synthetic generic faces)
    base_epochs: int = 5           # item 3's pre-training epochs
    memory_images: int = 600       # item 5 (--full-memory: FePh's 2,531)
    throughput_sizes: tuple[int, ...] = (96, 224)
    seed: int = 1234
    demo_args: tuple[str, ...] = ()  # item 7: extra arguments of the demo command (none: the whole demo)


QUICK = dict(images=120, size=48, run_images=120, paper_size=64, alpha=0.25, repeats=1, steps=3, generic_images=160,
             base_epochs=2, memory_images=120, throughput_sizes=(48,),
             demo_args=("--only", "M0", "M1", "--phase", "exploratory", "--set", "demo.images=120", "--set", "demo.generic_images=300", "--set", "demo.base_epochs.mobilenet=1", "--set", "demo.base_epochs.efficientnet=1"))
FEPH_IMAGES = 2531  # the release after the paper's filter


@dataclass
class Row:
    """One line of the results table."""

    item: int
    measure: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Workspace:
    """The temporary folder: synthetic datasets, the crop cache (``FEPH_FINETUNE_CACHE``), outputs."""

    root: Path

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def dataset(self, images: int, domain: str = "feph", seed: int = 0) -> Path:
        """A synthetic dataset of ``images`` kept images, written on first use."""
        from feph_finetune.demo.synth import write_synthetic_dataset

        folder = self.root / f"{domain}-{images}-{seed}"
        if not folder.is_dir():  # written aside, then renamed: a kept workspace never holds half a dataset
            partial = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{folder.name}."))
            _, seconds = timed(lambda: write_synthetic_dataset(partial / "FePh", images=images, seed=seed, domain=domain))
            os.replace(partial / "FePh", folder)
            partial.rmdir()
            console.log(f"wrote {images} synthetic {domain} images in {seconds:.0f} s")
        return folder


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def alternating_best(repeats: int, sides: dict[str, Callable[[], Any]]) -> tuple[dict[str, Any], dict[str, float]]:
    """Call each side in turn, ``repeats`` rounds, so that all sides meet the same machine; return
    each side's last result and its shortest time (the one least disturbed by other work)."""
    results: dict[str, Any] = {}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, function in sides.items():
            results[name], seconds = timed(function)
            times[name].append(seconds)
    return results, {name: min(values) for name, values in times.items()}


# --- shared pieces: experiments through the core, plain Keras models -------------------------


def experiment_toml(ws: Workspace, root: Path, settings: Settings, table: str, options: str = "") -> Path:
    """A one-experiment TOML over ``root``: face crop, batch size and input size from ``settings``."""
    text = f"""
        seed = {settings.seed}
        output = {toml_string(ws.root / 'runs')}

        [dataset]
        root = {toml_string(root)}
        cache_dir = {toml_string(ws.cache)}

        [defaults]
        input_size = {settings.size}
        batch_size = {settings.batch_size}
        preprocess = ["face_crop"]
        seed = {settings.seed}
    """
    path = ws.root / f"experiment-{len(list(ws.root.glob('experiment-*.toml')))}.toml"
    path.write_text(textwrap.dedent(text) + textwrap.dedent(options) + textwrap.dedent(table), encoding="utf-8")
    return path


def toml_string(path: Path) -> str:
    """A path as a TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(path))


def quiet_runner(path: Path, ws: Workspace, source=None):
    """A runner of a bench TOML's matrix, through the library's session (runs in this process,
    results under the workspace's runs/, nothing printed), and its runs by experiment name."""
    from feph_finetune.session import Session

    session = Session(path, executor="inline", output=ws.root / "runs", console=Console(file=io.StringIO()))
    runs = {run.experiment: run for run in session.plan()}
    return session.runner(source=source), runs


def the_run(path: Path, ws: Workspace, source=None):
    """The runner of a one-experiment TOML (see :func:`quiet_runner`) and its only run."""
    runner, runs = quiet_runner(path, ws, source)
    (run,) = runs.values()
    return runner, run


def keras_base(backbone: str, size: int, alpha: float):
    """A Keras Applications base without top and with random weights, pooled to a vector."""
    import keras

    if backbone == "mobilenet":
        return keras.applications.MobileNet(include_top=False, weights=None, input_shape=(size, size, 3), alpha=alpha, pooling="avg")
    return keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")


def classifier(backbone: str, size: int, alpha: float, seed: int):
    """Base plus a 7-way softmax, as the backbone plugins build it; returns (model, base)."""
    import keras

    keras.utils.set_random_seed(seed)
    base = keras_base(backbone, size, alpha)
    outputs = keras.layers.Dense(CLASS_COUNT, activation="softmax")(base.output)
    return keras.Model(base.input, outputs), base


def train_all_but_batchnorm(model) -> None:
    """Phase 2 as the runner does it by default: every layer trains, BatchNorm statistics stay.

    Each layer is set on its own: Keras 3 ignores ``model.trainable = True`` on a model that is
    already trainable, so layers frozen one by one in phase 1 would stay frozen.
    """
    import keras

    for layer in all_layers(model):
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)


def all_layers(layer) -> list:
    """The layer and every layer nested in it."""
    return [layer] + [inner for child in getattr(layer, "layers", []) for inner in all_layers(child)]


def compile_for_training(model, optimizer) -> None:
    import keras

    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])


def image_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None, random_flip: bool = False):
    """The core's pipeline written out: uint8 slices, (shuffled) batches cast to float, prefetch."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
    if seed is not None:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def to_float(images, labels):
        images = tf.cast(images, tf.float32)
        if random_flip:
            flip = tf.random.uniform(tf.shape(images)[:1]) < 0.5
            images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
        return images, labels

    return dataset.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    probabilities = model.predict(x.astype("float32"), batch_size=batch_size, verbose=0)
    return float(np.mean(probabilities.argmax(axis=1) == y))


def median_step_seconds(model, x: np.ndarray, y: np.ndarray, steps: int) -> float:
    """Median wall time of one training step on one in-memory batch, after a warm-up that traces."""
    import keras
    import tensorflow as tf

    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=2, epochs=1, shuffle=False, verbose=0)
    durations: list[float] = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            durations.append(time.perf_counter() - self.started)

    model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0, callbacks=[StepTimer()])
    return statistics.median(durations)


def random_batch(size: int, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32"), rng.integers(0, CLASS_COUNT, batch_size).astype("int32")


def warm_up_tensorflow() -> None:
    """Pay TensorFlow's one-off start-up (thread pools, oneDNN) before anything is timed."""
    model, _ = classifier("mobilenet", 32, 0.25, seed=0)
    compile_for_training(model, "adam")
    x, y = random_batch(32, 8, seed=0)
    model.fit(x, y, epochs=1, verbose=0)


# --- 1. runner overhead ----------------------------------------------------------------------


def bench_runner_overhead(settings: Settings, ws: Workspace) -> list[Row]:
    """The paper's FT (head, then all layers, Adam) with a random flip per batch, so that both
    sides run the frozen base every epoch (the feature path of item 3 does not apply)."""
    from feph_finetune.data.preparation import DataSource, prepare

    settings = replace(settings, size=settings.paper_size)
    path = experiment_toml(ws, ws.dataset(settings.run_images), settings, """
        [experiments.overhead]
        model = "mobilenet"
        optimizer = "adam"
        augment = ["flip"]
        save_model = true
    """, options=f"""
        [defaults.options.mobilenet]
        weights = "none"
        alpha = {settings.alpha}

        [defaults.options.adam]
        head_epochs = {settings.head_epochs}
        epochs = {settings.epochs}

        [defaults.options.flip]
        mode = "random"
    """)
    runner, run = the_run(path, ws, DataSource())
    data = prepare(run, runner.plugins, runner.source, runner.context_factory(run, {}), runner.matrix.seed)  # the crops, once, untimed
    warm_up_tensorflow()

    def through_runner() -> None:
        checked_run(runner, run, 1)

    def inline() -> None:
        plain_fine_tuning(data, settings, ws.root / "plain.keras")

    _, best = alternating_best(settings.repeats, {"plain": inline, "runner": through_runner})
    plain, through = best["plain"], best["runner"]
    ratio = through / plain
    steps = settings.head_epochs + settings.epochs
    trained = base_was_trainable(run, runner.plugins, runner.context_factory(run, {}), runner.store.run_dir(run.id) / "model.keras")
    return [
        Row(1, "runner / plain model.fit, one FT run", f"{ratio:.3f} ({through:.1f} s / {plain:.1f} s)", "<= 1.05", ratio <= 1.05 and trained[0] == trained[1],
            f"MobileNet a={settings.alpha} {settings.size}px, {len(data.train)} train imgs, {steps} epochs, batch {settings.batch_size}, "
            f"random flip, both save the model, best of {settings.repeats}"),
        trained_row(1, trained),
    ]


def base_was_trainable(run, plugins, context_for, saved: Path) -> tuple[int, int]:
    """How many of the base's weighted layers (BatchNorm aside) the saved model marks trainable,
    of how many: the flags as the run's last stage, an all-layers one, left them.

    The flags are checked rather than the weights, because a random MobileNet's gradients vanish
    below float32 resolution, so its trained base keeps its initial weights bit for bit.
    """
    import keras

    built = plugins.call("mobilenet", "build_model", context=context_for("mobilenet"))
    head = {layer.name for layer in built.head}
    model = keras.models.load_model(saved, compile=False)
    base = [layer for layer in model.layers if layer.weights and layer.name not in head and not isinstance(layer, keras.layers.BatchNormalization)]
    return sum(layer.trainable for layer in base), len(base)


def trained_row(item: int, trainable: tuple[int, int]) -> Row:
    count, total = trainable
    return Row(item, "base layers trainable in the all-layers stage", f"{count} of {total}", f"{total} of {total}", count == total,
               "" if count == total else "the core trained the head only (Keras ignores model.trainable = True on a trainable model; see BENCHMARKS.md)")


def plain_fine_tuning(data, settings: Settings, path: Path) -> float:
    """Item 1's baseline, as a user would write it: build, phase 1 frozen, phase 2, predict, save."""
    import keras

    model, base = classifier("mobilenet", settings.size, settings.alpha, settings.seed)
    train = image_batches(data.train.pixels(), data.train.labels, settings.batch_size, settings.seed, random_flip=True)
    base.trainable = False
    compile_for_training(model, keras.optimizers.Adam(1e-3))
    model.fit(train, epochs=settings.head_epochs, shuffle=False, verbose=0)
    train_all_but_batchnorm(model)
    compile_for_training(model, keras.optimizers.Adam(1e-3))
    model.fit(train, initial_epoch=settings.head_epochs, epochs=settings.head_epochs + settings.epochs, shuffle=False, verbose=0)
    result = accuracy(model, data.test.pixels(), data.test.labels, settings.batch_size)
    model.save(path)
    return result


# --- 2. crop cache ---------------------------------------------------------------------------


def bench_crop_cache(settings: Settings, ws: Workspace) -> list[Row]:
    """Detect faces in every image into an empty cache, then load the same frames again."""
    from feph_finetune.data.datasets import load_dataset
    from feph_finetune.data.frames import CropCache, FrameStep, compute_frames

    dataset = load_dataset({"root": str(ws.dataset(settings.images))})
    detections = {"count": 0}
    crop = face_crop_step(settings)
    frame = crop.frame

    def counted(image):
        detections["count"] += 1
        return frame(image)

    steps = [FrameStep("face_crop", replace(crop, frame=counted))]
    cache = CropCache(ws.root / "crop-bench-cache")
    first, detect_seconds = timed(lambda: compute_frames(dataset, steps, settings.size, cache))
    first_count = detections["count"]
    second, load_seconds = timed(lambda: compute_frames(dataset, steps, settings.size, cache))
    second_count = detections["count"] - first_count
    same = bool(np.array_equal(first.images, second.images))
    speedup = detect_seconds / load_seconds
    n = len(dataset.samples)
    return [
        Row(2, "face detections, second pass", f"{second_count} (first pass {first_count})", "0", second_count == 0 and same,
            "second pass returns the same frames" if same else "second pass returned DIFFERENT frames"),
        Row(2, "cached load / detection throughput", f"{speedup:.1f}x ({n / load_seconds:.0f} vs {n / detect_seconds:.0f} img/s)", ">= 10x", speedup >= 10,
            f"{n} images, {settings.size}px frames"),
    ]


def face_crop_step(settings: Settings):
    """The ``face_crop`` plugin's Preprocessing with its default options."""
    from feph_finetune import RunContext
    from feph_finetune.plugins import get_plugins

    plugins = get_plugins()
    context = RunContext(run_id="bench", experiment="bench", phase="exploratory", fold=None, seed=settings.seed,
                         input_size=settings.size, config={}, options=plugins.option_defaults("face_crop"))
    return plugins.call("face_crop", "preprocess", context=context)


# --- 3. phase 1 on precomputed features ------------------------------------------------------


def bench_head_features(settings: Settings, ws: Workspace) -> list[Row]:
    """Phase 1 through the runner, with ``head_features`` on and off, at the paper's input size, on
    a base pre-trained on synthetic generic faces (a random base gives near-zero features, so its
    accuracy would mean nothing). The head stage's own time is compared, from ``result.json``."""
    from feph_finetune.data.preparation import DataSource, prepare

    paper = replace(settings, size=settings.paper_size)
    base_file = pretrained_base(paper, ws)
    path = experiment_toml(ws, ws.dataset(paper.run_images), paper, """
        [experiments.features]
        model = "mobilenet"
        optimizer = "adam"

        [experiments.plain]
        extends = "features"
        head_features = false
    """, options=f"""
        [defaults.options.mobilenet]
        weights = {toml_string(base_file)}

        [defaults.options.adam]
        head_epochs = {paper.head_epochs}
        head_lr = {paper.head_lr}
        epochs = 0
    """)
    runner, runs = quiet_runner(path, ws, DataSource())
    for run in runs.values():  # the crops and TensorFlow's start-up, untimed
        checked_run(runner, run, 3)
    train_images = len(prepare(runs["plain"], runner.plugins, runner.source, runner.context_factory(runs["plain"], {}), runner.matrix.seed).train)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(paper.repeats):
        for name, run in runs.items():
            checked_run(runner, run, 3)
            seconds[name].append(runner.store.result(run.id)["timing"]["stages"]["head"])
    plain, features = min(seconds["plain"]), min(seconds["features"])
    used = {entry["head_features"] for entry in json.loads((runner.store.run_dir(runs["features"].id) / "history.json").read_text())}
    truth, plain_probabilities = runner.store.predictions(runs["plain"].id)
    _, features_probabilities = runner.store.predictions(runs["features"].id)
    speedup = plain / features
    return [
        Row(3, "phase 1: plain fit / features once", f"{speedup:.2f}x ({plain:.1f} s / {features:.1f} s)", ">= 2x", speedup >= 2 and used == {True},
            f"the runner's head stage, head_features off / on; {paper.head_epochs} epochs, {train_images} train imgs, "
            f"MobileNet a={paper.alpha} {paper.size}px, best of {paper.repeats}" + ("" if used == {True} else "; THE RUNNER DID NOT USE FEATURES")),
        accuracy_row(plain_probabilities, features_probabilities, truth, paper.head_lr),
        Row(3, "with random per-batch augmentation", "not applicable", "", None,
            "features change every epoch, so the runner keeps plain fit (item 1 runs so)"),
    ]


def checked_run(runner, run, item: int) -> None:
    """Run one run through the core (again, if it ran before); a failure stops the item."""
    if runner.run_one(run) != "done":
        error = (runner.store.result(run.id) or {}).get("error") or {}
        raise RuntimeError(f"item {item}: run {run.id} failed in {error.get('plugin')} ({error.get('hook')}): {error.get('message')}")


def accuracy_row(plain: np.ndarray, features: np.ndarray, truth: np.ndarray, lr: float) -> Row:
    """Same accuracy 'within noise': the difference within two standard errors of a difference of
    two accuracies on the same test images; with how often and how closely the two heads agree."""
    n = len(truth)
    plain_accuracy, features_accuracy = (float(np.mean(p.argmax(axis=1) == truth)) for p in (plain, features))
    noise = 2 * math.sqrt((plain_accuracy * (1 - plain_accuracy) + features_accuracy * (1 - features_accuracy)) / n)
    difference = features_accuracy - plain_accuracy
    agreement = float(np.mean(plain.argmax(axis=1) == features.argmax(axis=1)))
    return Row(3, "head test accuracy: features vs plain", f"{features_accuracy:.3f} vs {plain_accuracy:.3f} (diff {difference:+.3f})", f"abs(diff) <= {noise:.3f}",
               abs(difference) <= noise,
               f"2 standard errors on {n} test images; same class for {agreement:.0%}, probabilities within {np.abs(plain - features).max():.1e}; "
               f"head lr {lr:g}; {len(np.unique(features.argmax(axis=1)))} classes predicted")


def pretrained_base(settings: Settings, ws: Workspace) -> Path:
    """The demo's stand-in for an AffectNet model: MobileNet pre-trained on synthetic generic faces."""
    from feph_finetune.demo.protocol import pretrain_base_model

    path = ws.root / f"mobilenet_base_{settings.size}.keras"
    if not path.is_file():
        generic = ws.dataset(settings.generic_images, domain="generic", seed=1)
        demo_settings = {"input_size": settings.size, "seed": settings.seed, "alpha": settings.alpha, "threads": 0, "base_epochs": settings.base_epochs}
        _, seconds = timed(lambda: pretrain_base_model("mobilenet", demo_settings, generic, path))
        console.log(f"pre-trained the item-3 base ({settings.size}px, {settings.base_epochs} epochs) in {seconds:.0f} s")
    return path


# --- 4. SAM ----------------------------------------------------------------------------------


def bench_sam(settings: Settings, ws: Workspace) -> list[Row]:
    """EfficientNet-B0 (the paper's SAM backbone), all layers, Adam alone and SAM around Adam, at
    the benchmark's size and at the paper's."""
    return [sam_row(size, settings) for size in dict.fromkeys((settings.size, settings.paper_size))]


def sam_row(size: int, settings: Settings) -> Row:
    import keras

    from feph_finetune_plugins.sam import sharpness_aware

    x, y = random_batch(size, settings.batch_size, settings.seed)
    model, _ = classifier("efficientnet", size, settings.alpha, settings.seed)
    train_all_but_batchnorm(model)
    compile_for_training(model, keras.optimizers.Adam(1e-4))
    plain = median_step_seconds(model, x, y, settings.steps)
    wrapped = sharpness_aware(model, rho=0.05)
    compile_for_training(wrapped, keras.optimizers.Adam(1e-4))
    sam = median_step_seconds(wrapped, x, y, settings.steps)
    keras.backend.clear_session()
    ratio = sam / plain
    return Row(4, f"SAM step / Adam step, {size}px", f"{ratio:.2f}x ({sam * 1000:.0f} / {plain * 1000:.0f} ms)", "<= 2.15x", ratio <= 2.15,
               f"EfficientNet-B0, batch {settings.batch_size}, median of {settings.steps} steps")


# --- 5. memory -------------------------------------------------------------------------------


def bench_memory(settings: Settings, ws: Workspace) -> list[Row]:
    """Peak RSS of ``python -m feph_finetune --executor inline`` running MobileNet FT (1 head + 1
    all epoch)."""
    if "tensorflow" in sys.modules:
        raise RuntimeError("item 5 must run before this process imports TensorFlow (a child's peak RSS counts the parent's pages)")
    path = experiment_toml(ws, ws.dataset(settings.memory_images), replace(settings, size=settings.paper_size), """
        [experiments.memory]
        model = "mobilenet"
        optimizer = "adam"
        save_model = true
    """, options="""
        [defaults.options.mobilenet]
        weights = "none"
        alpha = 1.0

        [defaults.options.adam]
        head_epochs = 1
        epochs = 1
    """)
    output = ws.root / "memory-runs"
    parent_peak = peak_rss_gb(resource.RUSAGE_SELF)
    # inline: the run in the command's own process, which this process waits for, so that
    # RUSAGE_CHILDREN sees it (a process executor's child is the fork server's, not ours).
    command = [sys.executable, "-m", "feph_finetune", str(path), "--output", str(output), "--force", "--executor", "inline"]
    completed, seconds = timed(lambda: subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, "FEPH_FINETUNE_CACHE": str(ws.cache)}))
    if completed.returncode != 0:
        raise RuntimeError(f"item 5: {' '.join(command)} exited {completed.returncode}:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    peak = peak_rss_gb(resource.RUSAGE_CHILDREN)
    full = settings.memory_images >= FEPH_IMAGES and settings.paper_size >= 224
    runner, run = the_run(path, ws)
    trained = base_was_trainable(run, runner.plugins, runner.context_factory(run, {}), output / run.id / "model.keras")
    return [
        Row(5, "peak RSS, whole MobileNet run (CLI)", f"{peak:.2f} GB", "<= 1.5 GB" if full else "(<= 1.5 GB at full size)", peak <= 1.5 if full else None,
            f"{settings.memory_images} images at {settings.paper_size}px, a=1.0, batch {settings.batch_size}, {seconds:.0f} s; "
            f"parent {parent_peak:.2f} GB at spawn" + ("" if full else "; --full-memory for 2,531 at 224px")),
        trained_row(5, trained),
    ]


def peak_rss_gb(who: int) -> float:
    """Peak resident memory in GB (10^9 bytes, the target's unit); Linux reports KiB."""
    return resource.getrusage(who).ru_maxrss * 1024 / 1e9


# --- 7. the demo per executor ----------------------------------------------------------------

#: Item 7's executors, as command-line arguments.
DEMO_EXECUTORS = {"inline": ("--executor", "inline"), "process --jobs 1": ("--executor", "process", "--jobs", "1"), "process --jobs 2": ("--executor", "process", "--jobs", "2")}
SAMPLE_S = 0.2


def bench_demo_executors(settings: Settings, ws: Workspace) -> list[Row]:
    """The demo command's wall time and the peak of its process tree's summed RSS, per executor.

    The first invocation, the README's command with an empty cache, writes the demo's data and
    pre-trains its base models beside the first runs; the next ones find both cached, so each does
    the same work: the matrix, into a fresh output folder.
    """
    base = [sys.executable, "-m", "feph_finetune", str(REPO / "experiments.toml"), "--demo", *settings.demo_args]
    what = " ".join(settings.demo_args) or "the whole demo"
    first, first_seconds, first_biggest = tree_peak(base + ["--output", str(ws.root / "demo-first")])
    rows = [
        Row(7, "demo, first time (data, base models, runs): wall time", f"{first_seconds / 60:.1f} min", "< 10 min", first_seconds < 600 if not settings.demo_args else None,
            f"{what}; the README's command: process, one run per core ({os.cpu_count()} cores), bases pre-trained beside the runs"),
        Row(7, "demo, first time: peak RSS, command + children", f"{first:.2f} GB", "", None, f"largest single process {first_biggest:.2f} GB; sampled every {SAMPLE_S} s"),
    ]
    for name, arguments in DEMO_EXECUTORS.items():
        peak, seconds, biggest = tree_peak(base + ["--output", str(ws.root / f"demo-{name.replace(' ', '')}"), *arguments])
        rows.append(Row(7, f"demo with {name}: wall time", f"{seconds / 60:.1f} min", "", None, f"{what}: its runs only (data and bases cached)"))
        rows.append(Row(7, f"demo with {name}: peak RSS, command + children", f"{peak:.2f} GB", "", None, f"largest single process {biggest:.2f} GB; sampled every {SAMPLE_S} s"))
    return rows


def tree_peak(command: list[str]) -> tuple[float, float, float]:
    """Run ``command``; return the peak of the summed RSS of it and its descendants (GB), its wall
    time (s) and the largest RSS of a single process (GB), sampling /proc every SAMPLE_S."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # the cache: run_items' FEPH_FINETUNE_CACHE
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
    reader.start()
    peak = biggest = 0.0
    while process.poll() is None:
        sizes = [rss_gb(pid) for pid in descendants(process.pid)]
        peak, biggest = max(peak, sum(sizes)), max([biggest, *sizes])
        time.sleep(SAMPLE_S)
    reader.join()
    if process.returncode != 0:
        raise RuntimeError(f"item 7: {' '.join(command)} exited {process.returncode}:\n{b''.join(output).decode(errors='replace')[-2000:]}")
    return peak, time.perf_counter() - started, biggest


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc ``children`` lists)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                stack += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return 0.0


# --- 6. throughput ---------------------------------------------------------------------------


def bench_throughput(settings: Settings, ws: Workspace) -> list[Row]:
    """Training images/s of each backbone, all layers training (BatchNorm frozen), one batch."""
    import keras

    rows = []
    for backbone in ("mobilenet", "efficientnet"):
        for size in settings.throughput_sizes:
            x, y = random_batch(size, settings.batch_size, settings.seed)
            model, _ = classifier(backbone, size, 1.0, settings.seed)
            train_all_but_batchnorm(model)
            compile_for_training(model, keras.optimizers.Adam(1e-4))
            seconds = median_step_seconds(model, x, y, settings.steps)
            name = "MobileNet a=1.0" if backbone == "mobilenet" else "EfficientNet-B0"
            rows.append(Row(6, f"training throughput {name} {size}px", f"{settings.batch_size / seconds:.1f} img/s", "", None,
                            f"CPU float32, batch {settings.batch_size}, median of {settings.steps} steps"))
            keras.backend.clear_session()
    rows.append(Row(6, "mixed precision, XLA, whole paper matrix", "not measured", "", None, "needs a GPU machine; none was available"))
    return rows


# --- the command -----------------------------------------------------------------------------

BENCHMARKS: dict[int, Callable[[Settings, Workspace], list[Row]]] = {
    1: bench_runner_overhead, 2: bench_crop_cache, 3: bench_head_features, 4: bench_sam, 5: bench_memory, 6: bench_throughput,
    7: bench_demo_executors,
}
#: Memory first: see the module docstring.
EXECUTION_ORDER = (5, 7, 2, 1, 3, 4, 6)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Benchmark feph_finetune on synthetic data (items 1-7 of BENCHMARKS.md). Nothing downloads; everything is written to a temporary folder.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of every item (about 2 minutes)")
    parser.add_argument("--only", nargs="+", type=int, choices=ITEMS, metavar="N", help="run only these items (1-7)")
    parser.add_argument("--size", type=int, help="input side of item 2 and the first SAM row (default 96)")
    parser.add_argument("--paper-size", type=int, help="input side of items 1, 3, 5 and the second SAM row (default 224, the paper's)")
    parser.add_argument("--images", type=int, help="synthetic images of items 1, 3 and 5 (default 600)")
    parser.add_argument("--full-memory", action="store_true", help=f"item 5 at FePh's size: {FEPH_IMAGES} images at 224 px (about 2 minutes more)")
    parser.add_argument("--markdown", action="store_true", help="print the results as a Markdown table for BENCHMARKS.md")
    parser.add_argument("--keep", type=Path, help="use this folder instead of a temporary one, and keep it")
    parser.add_argument("--demo-args", metavar="ARGS", help='item 7: arguments added to the demo command, e.g. "--only M1 E2 --phase cv" (default: the whole demo)')
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings(**QUICK) if args.quick else Settings()
    overrides = {key: value for key, value in (("size", args.size), ("paper_size", args.paper_size), ("run_images", args.images), ("memory_images", args.images)) if value}
    if args.full_memory:
        overrides.update(memory_images=FEPH_IMAGES, paper_size=224)
    if args.demo_args is not None:
        overrides.update(demo_args=tuple(shlex.split(args.demo_args)))
    return replace(settings, **overrides)


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": str(os.cpu_count()), "python": platform.python_version(), "date": dt.date.today().isoformat()}


def run_items(items: list[int], settings: Settings, ws: Workspace) -> list[Row]:
    os.environ["FEPH_FINETUNE_CACHE"] = str(ws.cache)
    rows: list[Row] = []
    for item in [number for number in EXECUTION_ORDER if number in items]:
        console.rule(f"item {item}")
        try:
            found, seconds = timed(lambda: BENCHMARKS[item](settings, ws))
        except Exception as error:  # one failing item must not hide the others' results
            found, seconds = [Row(item, "failed", f"{type(error).__name__}", "", False, str(error)[:300])], 0.0
        for row in found:
            console.log(f"{row.measure}: {row.value}  target {row.target or '-'}  {verdict(row.met)}  {row.note}")
        console.log(f"item {item} took {seconds:.0f} s")
        rows += found
    return sorted(rows, key=lambda row: row.item)


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT MET", None: "-"}[met]


def print_results(rows: list[Row], info: dict[str, str], markdown: bool, seconds: float) -> None:
    header = f"{info['date']}, {info['cpu']}, {info['cores']} cores, Python {info['python']}, total {seconds / 60:.1f} min"
    if markdown:
        print(f"\n{header}\n\n| item | measure | value | target | met | conditions |\n|---|---|---|---|---|---|")
        for row in rows:
            print(f"| {row.item} | {row.measure} | {row.value} | {row.target or '-'} | {verdict(row.met)} | {row.note} |")
        return
    table = Table(title=header)
    for column in ("item", "measure", "value", "target", "met", "conditions"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row.item), row.measure, row.value, row.target or "-", verdict(row.met), row.note)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    items = sorted(args.only or ITEMS)
    started = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows = run_items(items, settings, Workspace(args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="feph-bench-") as folder:
            rows = run_items(items, settings, Workspace(Path(folder)))
    print_results(rows, machine(), args.markdown, time.perf_counter() - started)
    return 1 if any(row.measure == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
