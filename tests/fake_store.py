"""A fake results store of the paper's matrix, written without TensorFlow, for report tests and docs.

Every run's numbers are drawn at random around a per-configuration level, but each is internally
consistent: the confusion matrix is sampled first (test images per class as in the authors'
split), and accuracy, sensitivities and their average are computed from it, as the
``paper_metrics`` plugin would. Fine-tuned runs get a ``history.json`` with the stages of their
schedule. Nothing here is a result: it only exercises the reports.

    python tests/fake_store.py OUTDIR     # write the store (then: python -m feph_finetune report OUTDIR ...)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

CLASSES = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
#: Test images per class of one split (the authors' 507-image test set, SPEC section 2).
TEST_IMAGES = [132, 31, 57, 19, 42, 59, 167]
FOLDS = 5

#: experiment: (model, label, cv_label, baseline, level of the diagonal, stages or None)
MOBILENET_STAGES = [("head", 3), ("adam", 5), ("sgd", 2)]
EFFICIENTNET_STAGES = [("head", 3), ("sam_adam", 6)]
#: The built-in schedules' stage labels (``TrainingStage.label``), recorded as ``stage_label``.
STAGE_LABELS = {"head": "head only (base frozen), Adam", "adam": "all layers, Adam", "sgd": "all layers, SGD",
                "sam_adam": "all layers, SAM around Adam", "sam_sgd": "all layers, SAM around SGD"}
MATRIX = {
    "M0": ("mobilenet", "No-FT", "M0", True, 0.42, None),
    "M-FT": ("mobilenet", "FT", "", False, 0.62, MOBILENET_STAGES[:2]),
    "M-FT-SGD": ("mobilenet", "FT-SGD", "", False, 0.63, MOBILENET_STAGES),
    "M1": ("mobilenet", "FT-SGD + IP + HF + CW", "M1", False, 0.55, MOBILENET_STAGES),
    "M2": ("mobilenet", "FT-SGD + IP + HF", "M2", False, 0.64, MOBILENET_STAGES),
    "E0": ("efficientnet", "No-FT", "E0", True, 0.44, None),
    "E1": ("efficientnet", "FT + SAM + HF + CW", "E1", False, 0.60, EFFICIENTNET_STAGES),
    "E2": ("efficientnet", "FT + SAM + HF", "E2", False, 0.63, EFFICIENTNET_STAGES),
    "E-FT-SGD-SAM-HF": ("efficientnet", "FT-SGD + SAM + HF", "", False, 0.61, [("head", 3), ("sam_adam", 3), ("sam_sgd", 3)]),
}


def sample_confusion(level: float, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Counts per (true, predicted): each true class right with a probability near ``level``."""
    matrix = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    for true, images in enumerate(TEST_IMAGES):
        images = max(1, round(images * scale))
        right = float(np.clip(level + rng.normal(0, 0.12), 0.02, 0.98))
        wrong = rng.dirichlet(np.ones(len(CLASSES) - 1)) * (1 - right)
        probabilities = np.insert(wrong, true, right)
        matrix[true] = rng.multinomial(images, probabilities / probabilities.sum())
    return matrix


def metrics_of(confusion: np.ndarray) -> dict:
    support = confusion.sum(axis=1)
    sensitivity = {name: float(confusion[i, i] / support[i]) for i, name in enumerate(CLASSES)}
    return {
        "accuracy": float(np.trace(confusion) / confusion.sum()),
        "sensitivity": sensitivity,
        "avg_sensitivity": float(np.mean(list(sensitivity.values()))),
        "confusion": confusion.tolist(),
    }


def history_of(stages: list[tuple[str, int]], final: float, rng: np.random.Generator) -> list[dict]:
    total = sum(epochs for _, epochs in stages)
    history, epoch = [], 0
    for stage, epochs in stages:
        for _ in range(epochs):
            epoch += 1
            progress = epoch / total
            accuracy = float(np.clip(0.25 + (final + 0.15 - 0.25) * progress ** 0.6 + rng.normal(0, 0.015), 0, 1))
            loss = float(1.95 * (1 - 0.65 * progress ** 0.7) + rng.normal(0, 0.03))
            history.append({"stage": stage, "stage_label": STAGE_LABELS.get(stage, stage), "epoch": epoch, "head_features": stage == "head", "accuracy": accuracy, "loss": loss})
    return history


def record(experiment: str, order: int, phase: str, fold: int | None, metrics: dict, seconds: float) -> dict:
    model, label, cv_label, baseline, _, _ = MATRIX[experiment]
    where = "x" if fold is None else f"cv{fold}"
    return {
        "id": f"{experiment}-{where}-fake",
        "experiment": experiment, "label": label, "cv_label": cv_label, "model": model, "baseline": baseline,
        "order": order, "phase": phase, "fold": fold, "seed": 1234, "variant": {}, "status": "done", "error": None,
        "metrics": metrics, "classes": CLASSES, "timing": {"total_s": seconds, "stages": {}}, "counters": {"face_fallback": 2},
    }


def write_fake_store(root: Path, seed: int = 0, experiments: list[str] | None = None) -> list[dict]:
    """Write the fake matrix (or the named ``experiments`` of it) under ``root``; return the run records."""
    rng = np.random.default_rng(seed)
    records = []
    for order, (experiment, (model, _, cv_label, baseline, level, stages)) in enumerate(MATRIX.items()):
        if experiments is not None and experiment not in experiments:
            continue
        cells = [("exploratory", None)] + ([("cv", fold) for fold in range(FOLDS)] if cv_label else [])
        for phase, fold in cells:
            confusion = sample_confusion(level, rng)
            metrics = metrics_of(confusion)
            seconds = (40.0 if model == "mobilenet" else 50.0) * (0.2 if baseline else 1.0) + rng.uniform(0, 5)
            run = record(experiment, order, phase, fold, metrics, seconds)
            folder = root / run["id"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "result.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
            history = history_of(stages, metrics["accuracy"], rng) if stages else []
            (folder / "history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
            class_weights = "class_weights" if "CW" in MATRIX[experiment][1] else ""
            (folder / "config.json").write_text(json.dumps({"run": {"id": run["id"]}, "config": {"model": model, "class_weights": class_weights}}), encoding="utf-8")
            records.append(run)
    return records


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/fake_store.py OUTDIR")
    written = write_fake_store(Path(sys.argv[1]))
    print(f"wrote {len(written)} fake runs to {sys.argv[1]}")
