"""``python -m feph_finetune convert``: Savchenko's EfficientNet-B0 models as Keras 3 files.

The paper's EfficientNet rows start from Savchenko's AffectNet model, published only for PyTorch
(``enet_b0_7.pt``) and ONNX (``enet_b0_8_best_afew.onnx``...). :func:`convert` reads such a
source (:mod:`.onnx_source`, :mod:`.torch_source`), puts its weights into Keras' EfficientNet-B0
(:mod:`.keras_target`), runs both on the same random images and writes the Keras file only when
their probabilities agree within :data:`TOLERANCE`. Next to the file, ``<file>.json`` records the
source's class names in its output order, which the ``efficientnet`` plugin maps to FePh's.

Nothing here imports TensorFlow, torch or ONNX at import time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from feph_finetune.convert.keras_target import ARCHITECTURE, INPUT_SIZE, efficientnet_b0_classifier
from feph_finetune.convert.source import ConversionError, SourceModel
from feph_finetune.quiet_tensorflow import import_tensorflow
from feph_finetune.results import atomic_path

__all__ = ["ConversionError", "ConvertedModel", "convert", "efficientnet_b0_classifier", "read_converted", "sidecar_path"]

#: Largest allowed difference between the source's and the Keras model's probabilities.
TOLERANCE = 1e-4
#: Random RGB images, 224x224, on which source and conversion are compared.
CHECK_IMAGES = 8
CHECK_SEED = 0

#: HSEmotion's output orders (HSE-asavchenko/face-emotion-recognition, README and
#: ``hsemotion`` package): the 7-class AffectNet models and the 8-class ones with Contempt.
HSEMOTION_CLASSES = {
    7: ("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise"),
    8: ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise"),
}

SIDECAR_FORMAT = "feph_finetune converted model 1"
OUTPUT_SUFFIXES = (".keras", ".weights.h5")


@dataclass(frozen=True)
class ConvertedModel:
    """What ``<file>.json`` says about a converted file.

    ``classes``: the source's class names in its output order. ``max_abs_difference``: the largest
    difference of probabilities between source and conversion on ``check_images`` random images.
    ``notes``: what the reader of the source had to assume or work around (see :mod:`.torch_source`).
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
    input: str = "RGB, float 0-255, (N, 224, 224, 3); x / 255, ImageNet mean and std are inside the model"
    format: str = SIDECAR_FORMAT


def sidecar_path(path: Path | str) -> Path:
    """``models/enet_b0_7.keras`` -> ``models/enet_b0_7.keras.json``."""
    return Path(str(path) + ".json")


def read_converted(path: Path | str) -> ConvertedModel | None:
    """The description of a converted file, or None when the file has no converter's sidecar.

    Raises ConversionError when the sidecar exists but cannot be read.
    """
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConversionError(f"{sidecar}: unreadable ({error})") from error
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        return None
    try:
        return ConvertedModel(**{**data, "classes": tuple(data["classes"]), "notes": tuple(data.get("notes", ()))})
    except (TypeError, KeyError) as error:
        raise ConversionError(f"{sidecar}: not a complete description of a converted model ({error})") from error


def convert(
    source: Path,
    out: Path,
    trust_pickle: bool = False,
    classes: Sequence[str] | None = None,
    report: Callable[[str], None] = print,
) -> ConvertedModel:
    """Convert ``source`` (``.onnx``, or ``.pt``/``.pth``) to ``out`` (``.keras`` or ``.weights.h5``).

    ``classes``: the source's class names in output order; by default HSEmotion's for 7 or 8
    classes. Raises ConversionError, having written nothing, when the source is unreadable, not an
    EfficientNet-B0, or its conversion differs by more than :data:`TOLERANCE`.
    """
    source, out = Path(source), Path(out)
    if not str(out).endswith(OUTPUT_SUFFIXES):
        raise ConversionError(f"{out}: the output must end in .keras (whole model) or .weights.h5 (weights only)")
    if not source.is_file():
        raise ConversionError(f"{source}: no such file")
    model_source = _read(source, trust_pickle, report)
    names = _class_names(classes, model_source.classes, source)
    import_tensorflow()  # after the source's torch or ONNX: timm after TensorFlow crashes
    keras_model = _build(model_source, source)
    report(f"read {source} ({model_source.kind}): {ARCHITECTURE}, {model_source.classes} classes: {', '.join(names)}")
    difference = _verify(model_source, keras_model)
    report(f"largest difference of probabilities, source vs Keras, on {CHECK_IMAGES} random images: {difference:.2e} (limit {TOLERANCE:g})")
    if not difference <= TOLERANCE:
        raise ConversionError(
            f"{source}: the Keras model's probabilities differ from the source's by {difference:.2e} (> {TOLERANCE:g}); "
            "nothing written. The source may compute something Keras' EfficientNet-B0 does not (another "
            "activation, padding or input size)"
        )
    info = ConvertedModel(
        architecture=ARCHITECTURE, classes=tuple(names), input_size=INPUT_SIZE, source=source.name,
        source_kind=model_source.kind, source_sha256=_sha256(source), max_abs_difference=float(difference), check_images=CHECK_IMAGES,
        notes=tuple(model_source.notes),
    )
    _write(keras_model, info, out)
    report(f"wrote {out} and {sidecar_path(out).name}")
    return info


def _read(source: Path, trust_pickle: bool, report: Callable[[str], None]) -> SourceModel:
    suffix = source.suffix.lower()
    if suffix == ".onnx":
        from feph_finetune.convert.onnx_source import read_onnx

        return read_onnx(source)
    if suffix in (".pt", ".pth", ".bin"):
        from feph_finetune.convert.torch_source import read_torch

        return read_torch(source, trust_pickle, report)
    raise ConversionError(f"{source}: unknown kind of file; the converter reads .onnx and PyTorch .pt/.pth files")


def _class_names(classes: Sequence[str] | None, count: int, source: Path) -> list[str]:
    if classes is None:
        if count not in HSEMOTION_CLASSES:
            raise ConversionError(f"{source}: {count} classes, not HSEmotion's 7 or 8: name them in output order with --classes")
        return list(HSEMOTION_CLASSES[count])
    names = [str(name).strip() for name in classes]
    if len(names) != count or len(set(n.lower() for n in names)) != count or not all(names):
        raise ConversionError(f"--classes names {len(names)} classes {names}; the source has {count} outputs: name each once, in output order")
    return names


def _build(model_source: SourceModel, source: Path):
    from feph_finetune.convert.keras_target import build_converted

    return build_converted(model_source, str(source))


def check_images(count: int = CHECK_IMAGES, seed: int = CHECK_SEED) -> np.ndarray:
    """The comparison inputs: float32 (count, 224, 224, 3) RGB 0-255, random but smooth.

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
        images.append(cv2.resize(grid, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR))
    return np.stack(images)


def _verify(model_source: SourceModel, keras_model) -> float:
    images = check_images()
    expected = model_source.probabilities(images)
    converted = np.asarray(keras_model.predict(images, batch_size=CHECK_IMAGES, verbose=0), dtype=np.float64)
    return float(np.max(np.abs(expected - converted)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(keras_model, info: ConvertedModel, out: Path) -> None:
    """Write the model and its sidecar next to each other, each renamed into place when complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".weights.h5" if str(out).endswith(".weights.h5") else ".keras"
    with atomic_path(out) as model_file, atomic_path(sidecar_path(out)) as sidecar:
        if suffix == ".keras":
            keras_model.save(model_file)
        else:
            keras_model.save_weights(model_file)
        sidecar.write_text(json.dumps({**asdict(info), "classes": list(info.classes), "notes": list(info.notes)}, indent=2) + "\n", encoding="utf-8")
