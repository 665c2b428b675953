"""``python -m feph_finetune convert``: Savchenko's EfficientNet models as Keras 3 files.

The paper's EfficientNet rows start from Savchenko's AffectNet model, published only for PyTorch
(``enet_b0_7.pt``, ``enet_b2_8.pt``) and ONNX (``enet_b0_8_best_afew.onnx``...). :func:`convert`
reads such a source (:mod:`.onnx_source`, :mod:`.torch_source`), tells B0 from B2 by the width
of the features its classifier reads, puts its weights into Keras' EfficientNet of that variant
(:mod:`.keras_target`), runs both on the same random images at the variant's input side and
writes the Keras file only when their probabilities agree within :data:`TOLERANCE`. Next to the
file, ``<file>.json`` records the variant and the source's class names in its output order,
which the ``efficientnet`` plugin maps to FePh's.

HSEmotion's multi-task models (``enet_b0_8_va_mtl``) output 8 expression logits, then valence and
arousal: the Keras model keeps the softmax over the 8 expression logits only, and the sidecar
records the two regression outputs as dropped (:attr:`ConvertedModel.dropped_outputs`).

Nothing here imports TensorFlow, torch or ONNX at import time.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from feph_finetune.convert.keras_target import (
    INPUT_SIZE,
    VARIANTS,
    Variant,
    efficientnet_b0_classifier,
    efficientnet_classifier,
    supported,
    variant_by_architecture,
    variant_by_features,
)
from feph_finetune.convert.source import ConversionError, SourceModel
from feph_finetune.data.user_files import UnreadableFile, check_user_file, classify_path, read_json_file
from feph_finetune.training.quiet_tensorflow import import_tensorflow
from feph_finetune.results.store import atomic_path, output_target_problem, overwritten_input_problem

__all__ = [
    "ConversionError", "ConvertedModel", "VARIANTS", "convert", "efficientnet_b0_classifier", "efficientnet_classifier",
    "read_converted", "sidecar_path", "variant_by_architecture",
]

#: Largest allowed difference between the source's and the Keras model's probabilities.
TOLERANCE = 1e-4
#: Random RGB images, at the variant's input side, on which source and conversion are compared.
CHECK_IMAGES = 8
CHECK_SEED = 0

#: HSEmotion's output orders (HSE-asavchenko/face-emotion-recognition, README and
#: ``hsemotion`` package): the 7-class AffectNet models and the 8-class ones with Contempt.
HSEMOTION_CLASSES = {
    7: ("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise"),
    8: ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise"),
}
#: What HSEmotion's multi-task models (``*_va_mtl``) output after the 8 expression logits.
REGRESSION_OUTPUTS = ("valence", "arousal")

SIDECAR_FORMAT = "feph_finetune converted model 1"
OUTPUT_SUFFIXES = (".keras", ".weights.h5")


@dataclass(frozen=True)
class ConvertedModel:
    """What ``<file>.json`` says about a converted file.

    ``classes``: the source's class names in its output order. ``max_abs_difference``: the largest
    difference of probabilities between source and conversion on ``check_images`` random images.
    ``notes``: what the reader of the source had to assume or work around (see :mod:`.torch_source`).
    ``verified_against``: what computed the source's probabilities (the file itself, or a named
    timm architecture carrying its weights). ``dropped_outputs``: source outputs after the classes
    that the Keras model leaves out (valence, arousal). ``input_size``: the side the variant was
    trained at and the conversion checked at (the weights fit other sides too).
    ``model_sha256``: the hash of the file this describes, written after it, so that a sidecar
    left from an earlier conversion (one interrupted between the two files, or files mixed by
    hand) is told apart (:func:`read_converted`); empty in sidecars written before it was added.
    """

    architecture: str
    classes: tuple[str, ...]
    input_size: int
    source: str
    source_kind: str
    source_sha256: str
    max_abs_difference: float
    check_images: int
    notes: tuple[str, ...] = ()
    input: str = "RGB, float 0-255, (N, S, S, 3); x / 255, ImageNet mean and std are inside the model"
    verified_against: str = ""
    dropped_outputs: tuple[str, ...] = ()
    format: str = SIDECAR_FORMAT
    model_sha256: str = ""

    @property
    def variant(self) -> Variant | None:
        """The EfficientNet variant the file holds (None for an architecture this version lacks)."""
        return variant_by_architecture(self.architecture)


def sidecar_path(path: Path | str) -> Path:
    """``models/enet_b0_7.keras`` -> ``models/enet_b0_7.keras.json``."""
    return Path(str(path) + ".json")


def read_converted(path: Path | str) -> ConvertedModel | None:
    """The description of a converted file, or None when the file has no converter's sidecar.

    Raises ConversionError when the sidecar exists but cannot be read, holds a field of the wrong
    shape (:func:`_sidecar_problems`, one line each), or describes another file than the one
    beside it (its ``model_sha256`` differs).
    """
    sidecar = sidecar_path(path)
    try:
        data = read_json_file(sidecar)
    except UnreadableFile as error:
        if error.missing:
            return None
        raise ConversionError(f"{sidecar}: unreadable (it {error})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        return None
    problems = _sidecar_problems(data)
    if problems:
        raise ConversionError(*(f"{sidecar} {key}: {problem}" for key, problem in problems))
    try:
        info = ConvertedModel(**{**data, "classes": tuple(data["classes"]), "notes": tuple(data.get("notes", ())),
                                 "dropped_outputs": tuple(data.get("dropped_outputs", ()))})
    except (TypeError, KeyError) as error:
        raise ConversionError(f"{sidecar}: not a complete description of a converted model ({error})") from error
    if info.model_sha256 and Path(path).is_file() and _file_sha256(Path(path)) != info.model_sha256:
        raise ConversionError(f"{sidecar}: describes another file than {path} (its model_sha256 differs): a conversion was "
                              "interrupted between the two files, or they were mixed; convert the source again")
    return info


def _sidecar_problems(data: dict) -> list[tuple[str, str]]:
    """``(key, problem)`` for each field of a sidecar that a converter cannot have written: a
    hand-edited or truncated file must not be read as ``"classes": "abc"`` -> ``('a', 'b', 'c')``.
    ``classes``: distinct non-empty strings; ``model_sha256``, when present (sidecars written
    before it lack it): 64 hexadecimal digits; ``input_size``: a positive integer; the names and
    hashes texts; ``notes`` and ``dropped_outputs`` lists of texts. Missing keys are left to the caller."""
    problems = []
    classes = data.get("classes")
    if "classes" in data and not (isinstance(classes, list) and classes and all(isinstance(name, str) and name for name in classes)):
        problems.append(("classes", f"must be a list of non-empty class names, not {json.dumps(classes)[:60]}"))
    elif isinstance(classes, list) and len(set(classes)) != len(classes):
        problems.append(("classes", "repeats a class name"))
    sha = data.get("model_sha256")
    if "model_sha256" in data and not (isinstance(sha, str) and len(sha) == 64 and all(digit in "0123456789abcdef" for digit in sha.lower())):
        problems.append(("model_sha256", f"must be 64 hexadecimal digits, not {json.dumps(sha)[:80]}"))
    size = data.get("input_size")
    if "input_size" in data and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        problems.append(("input_size", f"must be a positive integer, not {json.dumps(size)[:40]}"))
    for key in ("architecture", "source", "source_kind", "source_sha256", "input", "verified_against"):
        if key in data and not isinstance(data[key], str):
            problems.append((key, f"must be a text, not {json.dumps(data[key])[:40]}"))
    for key in ("notes", "dropped_outputs"):
        if key in data and not (isinstance(data[key], list) and all(isinstance(item, str) for item in data[key])):
            problems.append((key, f"must be a list of texts, not {json.dumps(data[key])[:40]}"))
    return problems


def convert(
    source: Path,
    out: Path,
    trust_pickle: bool = False,
    classes: Sequence[str] | None = None,
    report: Callable[[str], None] = print,
    architecture: str | None = None,
) -> ConvertedModel:
    """Convert ``source`` (``.onnx``, or ``.pt``/``.pth``) to ``out`` (``.keras`` or ``.weights.h5``).

    ``classes``: the source's class names in output order; by default HSEmotion's for 7 or 8
    outputs, and for 10 its multi-task layout (8 classes, then valence and arousal, dropped).
    ``architecture``: the timm architecture a state_dict is run as for the verification (default:
    the ``tf_`` variant its shapes fit). Raises ConversionError, having written nothing, when the
    source is unreadable, not a supported EfficientNet, or its conversion differs by more than
    :data:`TOLERANCE`.
    """
    source, out = Path(source), Path(out)
    problems = _argument_problems(source, out, classes, architecture)
    if problems:
        raise ConversionError(*problems)
    model_source = _read(source, trust_pickle, report, architecture)
    names, dropped = _output_names(classes, model_source.outputs, source)
    variant = _variant(model_source, source)
    import_tensorflow()  # after the source's torch or ONNX: timm after TensorFlow crashes
    keras_model = _build(model_source, variant, len(names), source)
    report(f"read {source} ({model_source.kind}): {variant.architecture}, {len(names)} classes: {', '.join(names)}")
    if dropped:
        report(f"note: outputs {len(names) + 1}-{model_source.outputs} taken as {' and '.join(dropped)} (HSEmotion's multi-task layout); "
               "the Keras model outputs the softmax over the classes alone, without them")
    difference = _verify(model_source, keras_model, variant, len(names))
    report(f"verified against {model_source.verified_against}: largest difference of probabilities, source vs Keras, "
           f"on {CHECK_IMAGES} random {variant.input_size}x{variant.input_size} images: {difference:.2e} (limit {TOLERANCE:g})")
    if not difference <= TOLERANCE:
        raise ConversionError(
            f"{source}: the Keras model's probabilities differ from the source's by {difference:.2e} (> {TOLERANCE:g}); "
            f"nothing written. The source may compute something Keras' {variant.architecture} does not (another "
            "activation, padding or input size)"
        )
    notes = list(model_source.notes) + ([f"outputs {', '.join(dropped)} dropped: the model outputs the expression classes only"] if dropped else [])
    info = ConvertedModel(
        architecture=variant.architecture, classes=tuple(names), input_size=variant.input_size, source=source.name,
        source_kind=model_source.kind, source_sha256=_sha256(source), max_abs_difference=float(difference), check_images=CHECK_IMAGES,
        notes=tuple(notes), verified_against=model_source.verified_against, dropped_outputs=tuple(dropped),
    )
    info = _write(keras_model, info, out)
    report(f"wrote {out} and {sidecar_path(out).name}")
    return info


def _argument_problems(source: Path, out: Path, classes: Sequence[str] | None, architecture: str | None) -> list[str]:
    """Everything wrong with the arguments that is known before the source is read, all at once
    (one line each); what depends on the source (its number of outputs) is checked after."""
    problems = []
    if not str(out).endswith(OUTPUT_SUFFIXES):
        problems.append(f"{out}: the output must end in .keras (whole model) or .weights.h5 (weights only)")
    try:
        check_user_file(source)
    except UnreadableFile as error:
        problems.append(f"{source}: {'no such file' if error.missing else error}")
    else:
        if classify_path(source).status.st_size == 0:
            problems.append(f"{source}: is empty (0 bytes), not a model file")
    problems += [f"{target}: {problem}" for target in (out, sidecar_path(out)) if (problem := output_target_problem(target))]
    if problem := overwritten_input_problem(out, "convert", files=[source]):  # a link to the source: written through
        problems.append(f"{out}: {problem}")
    if architecture and source.suffix.lower() == ".onnx":
        problems.append(f"{source}: --architecture is for PyTorch state_dicts; an ONNX file records its own computation")
    if classes is not None:
        names = [str(name).strip() for name in classes]
        spellings: dict[str, list[str]] = {}
        for name in filter(None, names):
            spellings.setdefault(name.lower(), []).append(name)
        repeated = ["=".join(map(repr, same)) for same in spellings.values() if len(same) > 1]
        if repeated:
            problems.append(f"--classes repeats {', '.join(repeated)} (case aside): name each class once, in output order")
        if not all(names):
            problems.append(f"--classes has an empty name (at position {', '.join(str(i + 1) for i, name in enumerate(names) if not name)}): "
                            "name each class, comma-separated, in output order")
    return problems


def _read(source: Path, trust_pickle: bool, report: Callable[[str], None], architecture: str | None) -> SourceModel:
    suffix = source.suffix.lower()
    if suffix == ".onnx":
        from feph_finetune.convert.onnx_source import read_onnx

        return read_onnx(source)
    if suffix in (".pt", ".pth", ".bin"):
        from feph_finetune.convert.torch_source import read_torch

        return read_torch(source, trust_pickle, report, architecture)
    raise ConversionError(f"{source}: unknown kind of file; the converter reads .onnx and PyTorch .pt/.pth files")


def _output_names(classes: Sequence[str] | None, count: int, source: Path) -> tuple[list[str], list[str]]:
    """The class names of the source's first outputs, and the regression outputs after them.

    Without ``classes``: HSEmotion's 7 or 8 classes, or for 10 outputs its multi-task layout.
    ``classes`` may name all outputs, or all but the last two (then valence and arousal).
    """
    extra = len(REGRESSION_OUTPUTS)
    if classes is None:
        if count in HSEMOTION_CLASSES:
            return list(HSEMOTION_CLASSES[count]), []
        if count == len(HSEMOTION_CLASSES[8]) + extra:
            return list(HSEMOTION_CLASSES[8]), list(REGRESSION_OUTPUTS)
        raise ConversionError(
            f"{source}: {count} outputs, not HSEmotion's 7 or 8 classes, nor its 8 classes then valence and arousal: "
            "name the classes in output order with --classes"
        )
    names = [str(name).strip() for name in classes]  # each named once: _argument_problems
    if len(names) not in (count, count - extra):
        raise ConversionError(
            f"--classes names {len(names)} classes {names}; the source has {count} outputs: name each class once, in output "
            f"order (all {count} outputs, or the first {count - extra} when the last two are valence and arousal)"
        )
    return names, list(REGRESSION_OUTPUTS) if len(names) < count else []


def _variant(model_source: SourceModel, source: Path) -> Variant:
    """The variant the classifier's width names; for another width B0, whose check then names the
    first convolution that differs (the message adds which widths are supported)."""
    try:
        return variant_by_features(model_source.features, str(source))
    except ConversionError:
        return VARIANTS["b0"]


def _build(model_source: SourceModel, variant: Variant, classes: int, source: Path):
    from feph_finetune.convert.keras_target import build_converted

    try:
        return build_converted(model_source, variant, classes, str(source))
    except ConversionError as error:
        if model_source.features == variant.features:
            raise
        raise ConversionError(f"{error} (its classifier reads {model_source.features} features; the converter writes EfficientNet {supported()})") from error


def check_images(count: int = CHECK_IMAGES, seed: int = CHECK_SEED, size: int = INPUT_SIZE) -> np.ndarray:
    """The comparison inputs: float32 (count, size, size, 3) RGB 0-255, random but smooth.

    Each is a grid of 4x4 to 28x28 uniform random colours, enlarged bilinearly. Per-pixel noise
    would be a poor test: it drives a network's activations far beyond what photographs do, where
    float32 itself (in PyTorch alone, against float64) differs by 1e-3 on a randomly initialised
    EfficientNet-B0, so no conversion could be told from a correct one.
    """
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        cells = int(rng.integers(4, 29))
        grid = rng.integers(0, 256, (cells, cells, 3)).astype(np.float32)
        images.append(cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR))
    return np.stack(images)


def _verify(model_source: SourceModel, keras_model, variant: Variant, classes: int) -> float:
    images = check_images(size=variant.input_size)
    expected = model_source.probabilities(images, classes)
    converted = np.asarray(keras_model.predict(images, batch_size=CHECK_IMAGES, verbose=0), dtype=np.float64)
    return float(np.max(np.abs(expected - converted)))


def _file_sha256(path: Path) -> str:
    """:func:`_sha256` of a file, remembered while its size and modification time stay the same
    (the plugins read a converted file's sidecar several times while checking a configuration)."""
    status = path.stat()
    return _cached_sha256(str(path.resolve()), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return _sha256(Path(path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(keras_model, info: ConvertedModel, out: Path) -> ConvertedModel:
    """Write the model, then its sidecar with the model's hash, each renamed into place when
    complete; return the sidecar's description. An interrupt between the two leaves the new
    model beside the old sidecar, which :func:`read_converted` then refuses by the hash: a
    sidecar is never taken to describe a model it was not written for."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, follow_link=True) as model_file:
        if str(out).endswith(".weights.h5"):
            keras_model.save_weights(model_file)
        else:
            keras_model.save(model_file)
    info = replace(info, model_sha256=_sha256(out))
    with atomic_path(sidecar_path(out)) as sidecar:
        sidecar.write_text(json.dumps({**asdict(info), "classes": list(info.classes), "notes": list(info.notes)}, indent=2) + "\n", encoding="utf-8")
