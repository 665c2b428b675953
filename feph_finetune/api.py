"""The public objects that hook implementations receive and return.

Plugins, built-in or third-party, import these from ``feph_finetune`` and nothing else from the
core. None of them imports TensorFlow: a plugin that builds models imports Keras itself, inside its
hook implementation.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: FePh's seven classes in label order: the ``feph`` format's classes, and the names pretrained
#: expression classifiers (Savchenko's) are matched against. Other formats take theirs from the data.
CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")


class PluginError(Exception):
    """A plugin refuses its input or options; the run fails with this message and the plugin's name."""


class DatasetError(Exception):
    """A dataset's layout is unusable (no labels file, a missing column, a listed class without images).

    Raised by a ``load_dataset`` implementation; shown as a configuration error (exit 2), not as a
    failed run. ``hint`` is ``(phrase, setting)`` when setting a ``[dataset]`` key would fix it,
    e.g. ``("choose one with", "labels")``: the core spells the setting the way the user set it
    (``dataset.labels`` in a TOML, ``--labels FILE`` for the ``data`` command). ``setting`` is
    the ``[dataset]`` key whose value is at fault (``"labels"`` for a labels file that is a link
    loop), so that the error is reported where that value was given (its TOML line, or ``--set
    dataset.labels=...``); None: the dataset as a whole (reported at ``dataset.root``).
    """

    def __init__(self, message: str, hint: tuple[str, str] | None = None, setting: str | None = None):
        super().__init__(message)
        self.hint = hint
        self.setting = setting


@dataclass(frozen=True)
class Sample:
    """One kept image of a dataset.

    - ``path``: the image file (resolved, inside the dataset's root).
    - ``label``: index into :attr:`Dataset.classes`.
    - ``groups``: the grouping keys the format offers, ``{key: group}`` (FePh: ``sequence`` and
      ``signer``); ``[dataset] group_by`` picks one, so that a group never straddles a split.
    - ``frame``: the frame's index in its video when the file name says so, else None.
    - ``split``: ``"train"`` or ``"test"`` when the data comes split already (a ``folders``
      dataset with ``train/`` and ``test/``): the exploratory phase then uses this split.
    """

    path: Path
    label: int
    groups: Mapping[str, str] = field(default_factory=dict)
    frame: int | None = None
    split: str | None = None


@dataclass(frozen=True)
class DroppedEntry:
    """An entry of the data that did not become a sample, so that a user can look it up.

    ``entry`` is what the data calls it (a CSV row's ID, a file's path relative to the root),
    ``line`` the line of the labels file (None for files found on disk), ``reason`` a key of
    :attr:`Dataset.drop_reasons`.
    """

    line: int | None
    entry: str
    reason: str


@dataclass
class Dataset:
    """What a ``load_dataset`` implementation returns: the kept samples and everything dropped.

    - ``classes``: the class names in label order (the model's outputs, the report's columns).
    - ``dropped_entries``: every entry that is no sample, with its reason, in the data's order.
    - ``drop_reasons``: every reason the format can give, ``{reason: meaning}`` in display order,
      so that the ``data`` command lists zeros too.
    - ``fingerprint``: a short hex digest that changes when a label or an image changes (part of
      every run's id, so that results of changed data are never reused).
    - ``notes``: what a user should know about how the data was read (a folder skipped).
    """

    root: Path
    samples: list[Sample]
    classes: tuple[str, ...]
    dropped_entries: list[DroppedEntry] = field(default_factory=list)
    drop_reasons: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> dict[str, int]:
        """How many entries were dropped for each reason, every declared reason included."""
        counts = {reason: 0 for reason in self.drop_reasons}
        for entry in self.dropped_entries:
            counts[entry.reason] = counts.get(entry.reason, 0) + 1
        return counts

    @property
    def group_keys(self) -> tuple[str, ...]:
        """The grouping keys every sample offers (``[dataset] group_by`` may name one)."""
        keys = [set(sample.groups) for sample in self.samples]
        return tuple(sorted(set.intersection(*keys))) if keys else ()

    @property
    def presplit(self) -> bool:
        """True when the data says which samples are for training and which for testing."""
        return any(sample.split is not None for sample in self.samples)

    def labels(self) -> np.ndarray:
        """Class index of every sample, in sample order (int64, N)."""
        return np.array([sample.label for sample in self.samples], dtype=np.int64)

    def groups(self, key: str = "sequence") -> np.ndarray:
        """Grouping key ``key`` of every sample (str, N); ValueError for a key the data lacks."""
        if self.samples and key not in self.group_keys:
            raise ValueError(f"unknown grouping key {key!r}: this data offers {', '.join(map(repr, self.group_keys)) or 'none'}")
        return np.array([sample.groups[key] for sample in self.samples], dtype=str)


@dataclass
class RunContext:
    """What a hook implementation may know about the run it serves.

    ``options`` are the plugin's own options from the TOML (its defaults filled in); ``config`` is
    the whole resolved configuration of the run, for plugins that need to look around: a
    read-only mapping of key to value (a :class:`feph_finetune.RunConfig`, whose keys are also
    attributes; a plain dict where the core has no run, as in ``predict``).
    """

    run_id: str
    experiment: str
    phase: str
    fold: int | None
    seed: int
    input_size: int
    config: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = CLASSES
    cache_dir: Path | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a named counter; counters are stored with the run's results. Raises
        ValueError for an ``n`` that is not a whole number from 0 (a count; a fraction would be
        summed into a count that reads whole), in the calling plugin's hook, which it fails."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"context.count({name!r}, n): n must be a whole number from 0 (a count), got {n!r}")
        self.counters[name] = self.counters.get(name, 0) + int(n)


@dataclass(frozen=True)
class FrameResult:
    """One image after a ``Preprocessing.frame`` step.

    - ``image``: the result, uint8 RGB (H, W, 3).
    - ``fallback``: None for the usual result, else why it is not (``"no_face"``: no face was
      found and a fixed region was used instead).
    - ``box``: optional; the region the step found, ``(x, y, w, h)`` in integer pixels of the image
      the step received (the face detector's box, before any margin). ``predict`` reports it per
      frame; the crop cache does not keep it.
    """

    image: np.ndarray
    fallback: str | None = None
    box: tuple[int, int, int, int] | None = None


@dataclass
class Preprocessing:
    """What a ``preprocess`` implementation contributes to the input pipeline.

    Every part is optional:

    - ``frame(image) -> FrameResult``: deterministic work on one uint8 RGB image (H, W, 3) that
      depends only on the image and the options (face cropping). The core caches its result on
      disk, keyed by the image's content and ``cache_key``, and resizes it to the run's input size.
    - ``fit(images)``: called once per run with the training split (uint8, N x S x S x 3) after the
      frame steps, to learn statistics (a training-set mean). Never sees test images.
    - ``batch(x)``: applied to every float32 batch (B x S x S x 3, values 0-255 on entry) of both
      training and test data inside the model's input pipeline; use operations that accept
      TensorFlow tensors (arithmetic, slicing).
    - ``normalizes``: True when ``batch`` normalises pixel values, so that the core can refuse to
      normalise twice with a backbone that normalises inside the model.
    - ``state() -> dict[str, np.ndarray]`` and ``restore(state)``: for a step with ``fit``, what
      it learned and how to set it again. A run that saves its model stores ``state()`` (after
      ``fit``) in the model bundle; ``predict`` builds the step anew from the same options and
      calls ``restore`` with the stored arrays instead of ``fit``, so that new frames are
      prepared exactly as the training and test images were. The arrays are saved with
      ``numpy.savez`` (no pickling: numeric, bool or string dtypes only; a run that saves its
      model checks ``state()`` right after ``fit`` and fails, naming the plugin, otherwise). A
      step with ``fit`` but without ``state`` cannot be saved in a bundle.
    """

    frame: Callable[[np.ndarray], FrameResult] | None = None
    fit: Callable[[np.ndarray], None] | None = None
    batch: Callable[[Any], Any] | None = None
    cache_key: str = ""
    normalizes: bool = False
    state: Callable[[], dict[str, np.ndarray]] | None = None
    restore: Callable[[Mapping[str, np.ndarray]], None] | None = None


@dataclass
class Augmentation:
    """What an ``augment`` implementation contributes; applied to training data only.

    - ``expand(images, labels) -> (images, labels)``: a deterministic enlargement of the training
      split, done once per run on uint8 arrays (the paper's flipped copies).
    - ``batch(x, seed) -> x``: a random change of each float32 training batch, different every
      epoch; ``seed`` is a shape-(2,) int tensor for stateless random operations, distinct per
      batch and reproducible from the run's seed.
    """

    expand: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    batch: Callable[[Any, Any], Any] | None = None


@dataclass
class BuiltModel:
    """A classifier ready to fine-tune, from a ``build_model`` implementation.

    - ``model``: a Keras model mapping float32 images (B x S x S x 3) to softmax probabilities over
      ``context.classes`` (the dataset's).
    - ``head``: the layers that are new (the replaced top); phase 1 trains only these.
    - ``pretrained``: the pretrained model with its own top, for the No-FT baseline, giving
      probabilities (B x K, rows summing to 1: No-FT fails the run otherwise); None when the
      weights carry no expression classifier (random or ImageNet weights).
    - ``pretrained_classes``: the class name of each output of ``pretrained``, in its order (any
      distinct names: :func:`feph_finetune.class_names_problem`); No-FT maps them to the dataset's
      classes by name, ignoring case, and drops an output the dataset lacks (``contempt``).
    - ``normalizes_input``: True when the model normalises raw 0-255 pixels itself (Keras'
      EfficientNet does), so no ``preprocess`` step may normalise as well.
    """

    model: Any
    head: Sequence[Any]
    pretrained: Any = None
    pretrained_classes: Sequence[str] | None = None
    normalizes_input: bool = False


@dataclass(frozen=True)
class TrackedRun:
    """What the tracking hooks (``track_run_start``, ``track_epoch``, ``track_run_end``) say about
    the run they report, so that a tracking plugin can name and tag it in its backend.

    - ``id``: the run id (``E1-cv0-ce82c1f710``), the name of its folder in the results store;
      stable across invocations, so a backend can find a run it logged before.
    - ``experiment``, ``label``, ``cv_label``: the experiment's name and its report labels.
    - ``phase``: ``"exploratory"`` or ``"cv"``; ``fold``: the fold index, None for the single split.
    - ``seed``: the run's seed; ``config``: its resolved configuration, a read-only mapping (a
      :class:`feph_finetune.RunConfig`; ``config.to_json()`` is the content of ``config.json``'s
      ``config``); ``variant``: the values its experiment's
      ``grid`` gave it (empty without a grid); ``data``: the data's fingerprint. Runs with the
      same experiment, variant and data are the folds of one configuration.
    - ``run_dir``: the run's folder (its files are there once the run ends).
    - ``matrix``: the configuration's name (the TOML file's name without ``.toml``).
    - ``version``: feph_finetune's version; ``git_commit``: the commit of its source tree, when
      it runs from a git checkout (else None).
    """

    id: str
    matrix: str
    experiment: str
    label: str
    cv_label: str
    variant: Mapping[str, Any]
    phase: str
    fold: int | None
    data: str
    seed: int
    config: Mapping[str, Any]
    run_dir: Path
    version: str
    git_commit: str | None = None


@dataclass
class TrainingStage:
    """One stretch of training with one optimizer, from an ``optimizer_schedule`` implementation.

    - ``name``: shown in progress and history (``head``, ``adam``, ``sgd``...).
    - ``trainable``: ``"head"`` (base frozen) or ``"all"``.
    - ``epochs``: how many epochs this stage runs (a whole number from 0).
    - ``optimizer``: a fresh Keras optimizer instance.
    - ``wrap``: optional; turns the model into the model that is compiled and fitted for this stage
      (a custom ``train_step`` such as SAM's): a Keras model that holds all of the given model's
      weights (checked when the stage begins).
    - ``label``: optional; the stage in words for people (learning-curve figures), e.g. ``"all
      layers, SAM around SGD"``; recorded in ``history.json`` as ``stage_label``. Default: ``name``.
    """

    name: str
    trainable: str
    epochs: int
    optimizer: Any
    wrap: Callable[[Any], Any] | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.trainable not in ("head", "all"):
            raise PluginError(f"TrainingStage {self.name!r}: trainable must be 'head' or 'all', not {self.trainable!r}")
        if self.epochs < 0:
            raise PluginError(f"TrainingStage {self.name!r}: epochs must be >= 0")
