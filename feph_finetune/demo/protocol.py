"""The demo: the paper's protocol in miniature on synthetic data, runnable on a laptop CPU.

It writes a synthetic FePh-format dataset, takes a small base model per backbone pre-trained on
synthetic "generic faces" (standing in for Savchenko's AffectNet models), and points the matrix
at both, so that No-FT rows measure a real domain shift and fine-tuning has something to
improve. The bases are shipped with the package (:mod:`feph_finetune.demo.bases`) and installed
when the ``[demo]`` settings are theirs; at other settings the generic faces are written and the
bases pre-trained here. Everything is cached under the cache directory, keyed by its settings,
and built once.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from feph_finetune.api import CLASSES
from feph_finetune.config.flags import SYNTH_IMAGES_MAXIMUM
from feph_finetune.config.options import Option, option_problems
from feph_finetune.config.reading import ConfigError, Problem, RawConfig, check_section, deep_merge, valid_values
from feph_finetune.config.schema import DATASET_OPTIONS, EXPERIMENT_OPTIONS, SEED_MAXIMUM
from feph_finetune.data.frames import default_cache_dir
from feph_finetune.errors import ProblemsError
from feph_finetune.results.store import atomic_folder, atomic_path, write_model

#: The backbones the demo pre-trains, and how each is built (Keras application, extra arguments).
DEMO_BACKBONES = ("mobilenet", "efficientnet")

#: Pre-training's learning rate per backbone: Adam warmed up linearly over the first tenth of the
#: steps to this peak, then cosine decay to 0 (Loshchilov & Hutter 2017; Keras' ``CosineDecay``).
#: Measured on 3,600 generic faces at 64 px: EfficientNet-B0 reached 54% held-out accuracy in 5
#: epochs this way, against 46% after 5 of 10 epochs at a constant 1e-3 (62% after all 10).
#: MobileNet alpha 0.5 at a 3e-3 peak for 10 epochs was chaotic: 41%, 17% and 13% (chance 14%)
#: on three CPU kernel paths; at 1e-3 it gave 28.5% (Eigen) and 31.0% (oneDNN) in 10 epochs on
#: this project's 2-core AVX2 machine, and 40.5% (Eigen) in 20, the demo's setting. The demo
#: uses the shipped bases where its settings allow (:mod:`feph_finetune.demo.bases`).
BASE_PEAK_LR = {"mobilenet": 1e-3, "efficientnet": 3e-3}
BASE_BATCH_SIZE = 32
#: Far more seeds than a backbone plugin's layers draw (EfficientNet-B0: about 100).
MAX_BACKBONE_DRAWS = 100_000


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo's files go. ``base_models``: the whole-model file each backbone's runs
    load; ``shipped``: the records of the backbones whose base is installed from the package
    (:mod:`feph_finetune.demo.bases`) instead of pre-trained."""

    root: Path
    data: Path
    generic: Path
    base_models: dict[str, Path]
    shipped: dict[str, dict] = field(default_factory=dict)

    def needs_generic_faces(self) -> bool:
        """Whether a base is still to be pre-trained (only pre-training reads the generic faces)."""
        return any(not path.is_file() and name not in self.shipped for name, path in self.base_models.items())


def _demo_folds_problem(folds: int) -> str | None:
    """``[demo] folds``: 0 (keep ``[dataset] folds``), or a count within ``dataset.folds``' bounds."""
    if folds == 0:
        return None
    bounds = DATASET_OPTIONS["folds"]
    if option_problems(folds, bounds):
        return f"must be 0 (keep [dataset] folds), or {bounds.minimum} and more up to {bounds.maximum:,}, not {folds}"
    return None


#: Most pre-training epochs of a base: it trains on a few thousand synthetic faces, which 10,000
#: epochs have long overfitted.
BASE_EPOCHS_MAXIMUM = 10_000


#: The ``[demo]`` table. The demo declares it, not the core's schema: the demo is a client of the
#: core, which never imports it; the command line registers it with the check of every
#: configuration (``check_configuration(tables=...)``), so a typo in ``[demo]`` is reported with
#: or without ``--demo``. ``folds`` (0: ``[dataset] folds``) replaces the cross-validation folds
#: for the demo; ``base_epochs`` is per backbone (an EfficientNet epoch costs about three
#: MobileNet ones, so the two can be sized apart); ``defaults`` is laid over ``[defaults]``.
DEMO_OPTIONS: dict[str, Option] = {
    "folds": Option(0, "cross-validation folds of the demo (0: [dataset] folds)", maximum=DATASET_OPTIONS["folds"].maximum, check=_demo_folds_problem),
    "images": Option(300, "synthetic FePh-format images", minimum=1, maximum=SYNTH_IMAGES_MAXIMUM),
    "generic_images": Option(4000, "synthetic generic faces a base model is pre-trained on", minimum=1, maximum=SYNTH_IMAGES_MAXIMUM),
    "seed": Option(7, "seed of the synthetic data and of pre-training", minimum=0, maximum=SEED_MAXIMUM),
    "base_epochs": Option(
        {"mobilenet": 20, "efficientnet": 5}, "pre-training epochs per backbone",
        table={"mobilenet": Option(20, "MobileNet base's epochs", minimum=1, maximum=BASE_EPOCHS_MAXIMUM),
               "efficientnet": Option(5, "EfficientNet base's epochs", minimum=1, maximum=BASE_EPOCHS_MAXIMUM)},
    ),
    "defaults": Option({}, "experiment settings laid over [defaults] for the demo", table=EXPERIMENT_OPTIONS),
}


def demo_table(raw: RawConfig) -> dict[str, Any]:
    """The ``[demo]`` table's valid values, defaults filled in (invalid ones keep their
    defaults: the check of the configuration reports them)."""
    return valid_values(raw.data.get("demo", {}), DEMO_OPTIONS)


def demo_settings(raw: RawConfig, check: bool = True) -> dict[str, Any]:
    """The ``[demo]`` table with defaults, and the input size and width the base models need.

    ``check``: raise a ConfigError with the ``[demo]`` table's problems; False leaves them to the
    check of the whole configuration, which reports them with every other problem (invalid values
    keep their defaults here).
    """
    if check:
        problems: list[Problem] = []
        check_section(raw, raw.data.get("demo", {}), DEMO_OPTIONS, ("demo",), problems)
        if problems:
            raise ConfigError(problems)
    settings = demo_table(raw)
    defaults = deep_merge(valid_values(raw.data.get("defaults", {}), EXPERIMENT_OPTIONS), settings["defaults"])
    mobilenet = defaults["options"].get("mobilenet", {})
    return {
        "images": settings["images"],
        "generic_images": settings["generic_images"],
        "seed": settings["seed"],
        "base_epochs": settings["base_epochs"],
        "input_size": defaults["input_size"],
        "alpha": mobilenet.get("alpha", _plugin_default("mobilenet", "alpha")) if isinstance(mobilenet, dict) else _plugin_default("mobilenet", "alpha"),
        "threads": defaults["threads"],
    }


def _plugin_default(plugin: str, option: str) -> Any:
    """An option's default as the plugin declares it."""
    from feph_finetune.plugins import get_plugins

    return get_plugins().option_defaults(plugin)[option]


#: Part of the cache key: raise it when the demo's data or base models are made differently, so
#: that a cache written by an older version is not reused.
DEMO_FORMAT = 5


def demo_paths(settings: dict[str, Any], shipped: bool = True) -> DemoPaths:
    """The demo's cache folder for ``settings``. A backbone whose shipped base was made with these
    settings gets it (installed as ``<backbone>_shipped_base.keras``) unless ``shipped`` is False;
    the others a base pre-trained here (``<backbone>_base.keras``)."""
    from feph_finetune.demo.bases import shipped_base

    digest = hashlib.sha256(json.dumps({**settings, "format": DEMO_FORMAT}, sort_keys=True).encode()).hexdigest()[:12]
    root = default_cache_dir() / "demo" / digest
    records = {name: record for name in DEMO_BACKBONES if shipped and (record := shipped_base(settings, name)) is not None}
    models = {name: root / f"{name}_{'shipped_' if name in records else ''}base.keras" for name in DEMO_BACKBONES}
    return DemoPaths(root, root / "FePh", root / "generic", models, records)


def demo_jobs() -> int:
    """The demo's runs at once with the ``process`` executor, unless ``--jobs`` or
    ``[executor.process]`` says otherwise: one per CPU core, within the available memory
    (:func:`feph_finetune.execution.executors.process.runs_within_memory`). A demo run spends much of its
    time tracing TensorFlow graphs, which uses one core: two at once kept this project's 2-core
    machine 90% busy over the whole demo."""
    from feph_finetune.execution.executors.process import runs_within_memory

    return runs_within_memory(cores_per_run=1)


def write_demo_data(settings: dict[str, Any], paths: DemoPaths, console) -> None:
    """Write the demo's FePh-like dataset, and the generic faces if a base is to be pre-trained,
    where they are missing."""
    from feph_finetune.demo.synth import write_synthetic_dataset

    for folder, domain, images, seed in (
        (paths.data, "feph", settings["images"], settings["seed"]),
        (paths.generic, "generic", settings["generic_images"], settings["seed"] + 1),
    ):
        if domain == "generic" and not paths.needs_generic_faces():
            continue
        if not folder.is_dir():
            console.log(f"demo: writing {images} synthetic {domain} images to {folder}")
            with atomic_folder(folder) as temporary:
                write_synthetic_dataset(temporary, images=images, seed=seed, domain=domain)


def runs_as_bases_are_ready(runs: list, settings: dict[str, Any], paths: DemoPaths, console, is_done=lambda run_id: False) -> Iterator[list]:
    """The demo's runs in groups that can start: first those whose base model exists (or that
    ``is_done(run_id)`` says are finished), then the runs of each backbone whose base is
    pre-trained, in the order the bases finish, while the other bases keep training.

    The caller runs one group to its end before it asks for the next: so on a machine of a few
    cores the MobileNet runs use the cores the EfficientNet base's pre-training leaves idle, and
    the EfficientNet runs start once both that group and their base are done. Each group keeps the
    matrix's order. A base whose pre-training fails holds back only its own runs:
    :class:`PretrainingFailed` is raised after the others. Leaving the loop early (an error,
    Ctrl-C) stops the pre-training children.
    """
    waiting: dict[str, list] = {}
    for run in runs:
        backbone = run.config["model"]
        if backbone in paths.base_models and not paths.base_models[backbone].is_file() and not is_done(run.id):
            waiting.setdefault(backbone, []).append(run)
    shipped = [backbone for backbone in waiting if backbone in paths.shipped]
    if shipped:  # seconds: installed before any run, so that every run can start in one group
        with BasePretraining(shipped, settings, paths, console) as installing:
            while installing.running:
                installing.next_trained()
        for backbone in shipped:
            del waiting[backbone]
    ready = [run for run in runs if run.config["model"] not in waiting]
    failures: list[str] = []
    with BasePretraining(list(waiting), settings, paths, console) as pretraining:
        if ready:
            yield ready
        while pretraining.running:
            try:
                backbone = pretraining.next_trained()
            except PretrainingFailed as error:  # the other bases train on, and their runs run
                failures.append(str(error))
                continue
            yield waiting[backbone]
    if failures:
        raise PretrainingFailed(*failures)


class PretrainingFailed(ProblemsError, RuntimeError):
    """A base model's pre-training (or installing) child exited without writing its model;
    ``problems``: one line per base model that failed."""


class BasePretraining:
    """Pre-trains the base models of ``backbones``, each in a fresh child process, all at once;
    a backbone in ``paths.shipped`` gets its shipped base installed instead (a few seconds).

    Children keep TensorFlow out of the command's own process (its memory would stay there for the
    whole matrix) and train side by side. Each child seeds itself, so the weights do not depend on
    what runs beside it. Used as a context manager: leaving it stops the children still running.
    """

    def __init__(self, backbones: list[str], settings: dict[str, Any], paths: DemoPaths, console):
        from feph_finetune.demo.bases import read_shipped_weights
        from feph_finetune.execution.executors.forkserver import start_child

        self.paths, self.console = paths, console
        self.children: dict[str, Any] = {}
        try:
            for backbone in backbones:
                epochs = settings["base_epochs"][backbone]
                record = paths.shipped.get(backbone)
                if record is None:
                    console.log(f"demo: pre-training the {backbone} base model on synthetic generic faces ({epochs} epochs)")
                else:
                    read_shipped_weights(record)  # a missing or damaged file is named here, not in a child's log
                    console.log(f"demo: installing the {backbone} base model shipped with feph_finetune (made for these settings)")
                self.children[backbone] = start_child(
                    pretrain_quietly, (backbone, {**settings, "base_epochs": epochs}, paths.generic, paths.base_models[backbone], record, dict(os.environ)),
                    name=f"pretrain-{backbone}",
                )
        except BaseException:
            self.stop()
            raise

    @property
    def running(self) -> bool:
        return bool(self.children)

    def next_trained(self) -> str:
        """Wait for the next child to finish and return its backbone; :class:`PretrainingFailed`
        if it exited without its model (its output, a traceback say, stays in its log)."""
        from multiprocessing.connection import wait

        from feph_finetune.execution.executors.forkserver import exit_description

        finished = wait([child.sentinel for child in self.children.values()])
        backbone = next(name for name, child in self.children.items() if child.sentinel in finished)
        child = self.children.pop(backbone)
        child.join()
        model = self.paths.base_models[backbone]
        if child.exitcode != 0 or not model.is_file():
            raise PretrainingFailed(
                f"demo: pre-training the {backbone} base model failed: its process {exit_description(child.exitcode)}; its output is in "
                f"{pretraining_log(model)}. Run the command again to retry"
            )
        pretraining_log(model).unlink(missing_ok=True)
        report = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
        how = (
            f"shipped, pre-trained once with TF_ENABLE_ONEDNN_OPTS={report['made_with']['TF_ENABLE_ONEDNN_OPTS']}" if report.get("shipped")
            else f"pre-trained in {report['seconds']:.0f} s"
        )
        self.console.log(
            f"demo: the {backbone} base model classifies {report['held_out_accuracy']:.0%} of held-out generic faces "
            f"(chance: {1 / len(CLASSES):.0%}); {how}"
        )
        return backbone

    def stop(self) -> None:
        """Stop the children still running, as the ``process`` executor stops a run's child."""
        from feph_finetune.execution.executors.forkserver import stop_children

        stop_children(self.children.values())
        self.children.clear()

    def __enter__(self) -> "BasePretraining":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def pretrain_quietly(backbone: str, settings: dict[str, Any], generic: Path, path: Path, shipped: dict | None, environment: dict[str, str]) -> None:
    """:func:`pretrain_base_model` (or, given a ``shipped`` record,
    :func:`~feph_finetune.demo.bases.install_shipped_base`) in a child process of
    :func:`~feph_finetune.execution.executors.forkserver.process_context`, with the command's
    ``environment``. It ignores Ctrl-C, which the command handles by stopping it; its output
    (TensorFlow's notices, any traceback) goes to :func:`pretraining_log` instead of the console;
    and it dies with the command, so a killed command leaves no orphan training on."""
    from feph_finetune.execution.executors.forkserver import begin_child

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # stop() sends it: leave no temporary folder behind
    begin_child(pretraining_log(path), environment)
    if shipped is None:
        pretrain_base_model(backbone, settings, generic, path)
    else:
        from feph_finetune.demo.bases import install_shipped_base

        install_shipped_base(backbone, settings, shipped, path)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def pretraining_log(model: Path) -> Path:
    """Where a base model's pre-training child writes its output (removed when it succeeds)."""
    return model.with_suffix(".log")


def generic_faces(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The generic domain's images, resized to ``size``, and their class indices."""
    from feph_finetune.data.datasets import load_dataset
    from feph_finetune.data.frames import resize_square
    from feph_finetune.data.images import read_image

    dataset = load_dataset({"root": str(folder)})
    images = np.stack([resize_square(read_image(sample.path), size) for sample in dataset.samples])
    return images, dataset.labels()


def base_model_input(backbone: str, images: np.ndarray) -> np.ndarray:
    """The float32 input a demo base model takes, from uint8 RGB ``images`` of shape (N, S, S, 3).

    A backbone that rescales raw pixels itself (its plugin's trait ``normalizes_input``:
    EfficientNet) takes the raw 0-255 values; the others (MobileNet) the ``normalize`` plugin's
    default mode, RGB minus Savchenko's means with no channel flip, as Savchenko's MobileNet was
    trained: so in the demo, as in the paper, the experiments with that mode feed the base what it
    was trained on and the others do not.
    """
    from feph_finetune.api import RunContext
    from feph_finetune.plugins import get_plugins

    plugins = get_plugins()
    x = images.astype(np.float32)
    if "normalizes_input" in plugins.traits(backbone, {**plugins.option_defaults(backbone), "weights": "none"}):
        return x
    context = RunContext(run_id="demo-base-input", experiment="demo", phase="base", fold=None, seed=0, input_size=x.shape[1],
                         config={}, options=plugins.option_defaults("normalize"))
    return np.asarray(plugins.call("normalize", "preprocess", context=context).batch(x), dtype=np.float32)


def pretrain_base_model(backbone: str, settings: dict[str, Any], generic: Path, path: Path) -> float:
    """Train a backbone with a 7-way expression top (classes in Savchenko's order) and save it whole.

    ``settings``: ``input_size`` (pixels), ``seed``, ``alpha`` (MobileNet width), ``threads``
    (TensorFlow's, as the runs': :func:`~feph_finetune.training.stages.use_threads`) and ``base_epochs``
    (an int, for this backbone). A tenth of the generic faces is held out; the
    accuracy on it, returned and written next to the model (``.json``), says how much the base
    learned about expressions rather than memorised. Thousands of faces without augmentation
    learn fastest: measured at 64 px, MobileNet alpha 0.5 on 3,600 faces reached 40% held-out
    accuracy in 9 epochs, while with random shifts and brightness changes it often stayed at
    chance for 12. The input is :func:`base_model_input`; the optimizer Adam, its learning rate
    warmed up to :data:`BASE_PEAK_LR` and decayed.

    Deterministic: Python, NumPy and TensorFlow are seeded from ``settings["seed"]`` and
    TensorFlow's op determinism is switched on (for the rest of the process, as a demo run's
    ``deterministic = true`` does), so the same settings give the same weights, bit for bit, on
    machines with the same library versions, and the same CPU count unless ``threads`` is set.
    """
    import keras

    from feph_finetune.training.compiling import compile_for_stage
    from feph_finetune.training.stages import seed_everything, use_threads

    use_threads(settings["threads"])
    seed_everything(settings["seed"], deterministic=True)
    model = base_architecture(backbone, settings)
    started = time.perf_counter()
    images, labels = generic_faces(generic, settings["input_size"])
    held_out = held_out_mask(len(images), settings["seed"])
    steps = settings["base_epochs"] * -(-int((~held_out).sum()) // BASE_BATCH_SIZE)
    warmup = max(1, steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, steps - warmup), warmup_target=BASE_PEAK_LR[backbone], warmup_steps=warmup)
    compile_for_stage(model, keras.optimizers.Adam(schedule))
    model.fit(base_model_input(backbone, images[~held_out]), labels[~held_out], batch_size=BASE_BATCH_SIZE, epochs=settings["base_epochs"], shuffle=True, verbose=0)
    predicted = model.predict(base_model_input(backbone, images[held_out]), batch_size=64, verbose=0).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels[held_out]))
    save_base(model, path, {"held_out_accuracy": accuracy, "held_out_images": int(held_out.sum()), "seconds": time.perf_counter() - started, **settings})
    return accuracy


def held_out_mask(count: int, seed: int) -> np.ndarray:
    """Which of ``count`` generic faces pre-training holds out: a tenth (at least one), drawn from ``seed``."""
    return np.random.default_rng(seed).permutation(count) < max(1, count // 10)


def base_architecture(backbone: str, settings: dict[str, Any]):
    """A demo base, untrained: the backbone at ``settings["input_size"]`` (MobileNet of width
    ``settings["alpha"]``) with average pooling, a 64-unit ``feats`` layer and a 7-way softmax
    ``emotion_preds`` (classes in Savchenko's order), as Savchenko's models end.

    The backbone comes from its plugin's ``build_model`` (random weights, no dropout), as any
    run's does; the demo keeps the plugin's base and puts its own top on the pooled features.
    Its initial weights depend only on the seed: see :func:`_without_draws_of`.
    """
    import random

    import keras

    state = random.getstate()
    built = _plugin_classifier(backbone, settings)
    head = built.head[-1]
    _without_draws_of(head, state)
    features = keras.layers.Dense(64, activation="relu", name="feats")(head.input)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="emotion_preds")(features)
    model = keras.Model(built.model.input, outputs, name=f"demo_{backbone}_base")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9  # few steps: let the moving statistics converge, or inference mode is garbage
    return model


def _plugin_classifier(backbone: str, settings: dict[str, Any]):
    """The backbone plugin's classifier (:class:`~feph_finetune.BuiltModel`): random weights,
    the demo's input size and MobileNet width, no dropout, one new softmax layer on the pooled
    features."""
    from feph_finetune.api import RunContext
    from feph_finetune.plugins import get_plugins

    plugins = get_plugins()
    options = {**plugins.option_defaults(backbone), "weights": "none", "dropout": 0.0}
    if backbone == "mobilenet":
        options["alpha"] = settings["alpha"]
    size = settings["input_size"]
    context = RunContext(
        run_id=f"demo-{backbone}-base", experiment="demo", phase="base", fold=None, seed=settings["seed"],
        input_size=size, config={}, options=options,
    )
    return plugins.call(backbone, "build_model", context=context)


def _without_draws_of(head, state: tuple) -> None:
    """Put Python's random generator back where it stood before the plugin built ``head``, the
    new top the demo does not use; ``state`` is the generator's state before the plugin began.

    Keras draws a layer's initializer seed from Python's generator when the layer is made, so
    the unused top would shift the seeds of ``feats`` and ``emotion_preds`` by one draw: the
    same seed would then give other initial weights than the demo's earlier bases (the shipped
    ones were made before the backbones came from the plugins). The draws are replayed from
    ``state`` up to the one that gave the top its seed. RuntimeError if none did (a Keras that
    draws seeds otherwise): the bases would silently differ.
    """
    import random

    drawn = head.kernel_initializer.seed
    generator = random.Random()
    generator.setstate(state)
    for _ in range(MAX_BACKBONE_DRAWS):
        before = generator.getstate()
        if generator.randint(1, int(1e9)) == drawn:
            random.setstate(before)
            return
    raise RuntimeError(f"demo: the seed of the {head.name!r} layer is not among the first {MAX_BACKBONE_DRAWS} draws of Python's random generator")


def save_base(model, path: Path, record: dict[str, Any]) -> None:
    """Save a base model whole at ``path`` and ``record`` beside it (``.json``), each file
    appearing only once complete: the model last, as it is what says the base is ready."""
    with atomic_path(path.with_suffix(".json")) as temporary:
        temporary.write_text(json.dumps(record, indent=2), encoding="utf-8")
    write_model(path, model)
