"""The public objects that hook implementations receive and return.

Plugins, built-in or third-party, import these from ``feph_finetune`` and nothing else from the
core. None of them imports TensorFlow: a plugin that builds models imports Keras itself, inside its
hook implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: The seven FePh classes, in the order of every label index, prediction column and report column.
CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")


class PluginError(Exception):
    """A plugin refuses its input or options; the run fails with this message and the plugin's name."""


@dataclass
class RunContext:
    """What a hook implementation may know about the run it serves.

    ``options`` are the plugin's own options from the TOML (its defaults filled in); ``config`` is
    the whole resolved configuration of the run, for plugins that need to look around (read-only).
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
        """Add ``n`` to a named counter; counters are stored with the run's results."""
        self.counters[name] = self.counters.get(name, 0) + n


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
      ``numpy.savez`` (no pickling: numeric or string dtypes only). A step with ``fit`` but
      without ``state`` cannot be saved in a bundle.
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
      ``CLASSES``.
    - ``head``: the layers that are new (the replaced top); phase 1 trains only these.
    - ``pretrained``: the pretrained model with its own top, for the No-FT baseline; None when the
      weights carry no expression classifier (random or ImageNet weights).
    - ``pretrained_classes``: the FePh class of each output of ``pretrained``, in its order; a name
      that is not a FePh class marks an output FePh lacks (``contempt``), which No-FT drops.
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
    - ``seed``: the run's seed; ``config``: its resolved configuration (JSON-serialisable, the
      content of ``config.json``'s ``config``); ``variant``: the values its experiment's
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
    - ``epochs``: how many epochs this stage runs.
    - ``optimizer``: a fresh Keras optimizer instance.
    - ``wrap``: optional; turns the model into the model that is compiled and fitted for this stage
      (a custom ``train_step`` such as SAM's). It must share the given model's weights.
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
