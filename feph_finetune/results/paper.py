"""The accuracies Deshpande, Nunnari & Avramidis (2022) published, for ``report --paper``.

Transcribed from the paper's Table 4 (exploratory phase: one grouped 80/20 split, accuracy in %)
and Table 5 (5-fold cross-validation: mean and standard deviation over the folds, in %), column
"acc." of each (the project's SPEC section 1 quotes the same numbers). They were measured on
the real FePh data with Savchenko's MobileNet-v1 and EfficientNet-B0: beside a run on synthetic
data (the demo) they are no target to reach.

A report row matches a published row when its backbone plugin is the paper's (``mobilenet`` for
MobileNet-v1, ``efficientnet`` for EfficientNet-B0) and its name is the paper's: the
configuration label (``label``, e.g. ``FT-SGD + IP + HF``) in the exploratory phase, the c/v
abbreviation (``cv_label``, e.g. ``M2``) in cross-validation. Names are compared ignoring case and
runs of spaces. Grid variants of a matching experiment match too: they are the same configuration
run several times (seeds) or with changed options, and the report shows their variant beside them.
"""

from __future__ import annotations

from typing import Any

#: Paper Table 4, column "acc.": backbone plugin -> configuration label -> accuracy in %.
TABLE_4_ACCURACY: dict[str, dict[str, float]] = {
    "mobilenet": {
        "No-FT": 52.0,
        "FT": 65.4,
        "FT-SGD": 65.7,
        "FT-SGD + CW": 54.0,
        "FT-SGD + HF": 64.7,
        "FT-SGD + IP": 65.3,
        "FT-SGD + IP + HF + CW": 63.7,
        "FT-SGD + IP + HF": 67.0,
    },
    "efficientnet": {
        "No-FT": 53.5,
        "FT + SAM + HF + CW": 63.9,
        "FT + SAM + HF": 66.5,
        "FT-SGD + SAM + HF": 63.9,
    },
}

#: Paper Table 5, column "acc. (std)": backbone plugin -> c/v label -> (mean, std) in %.
TABLE_5_ACCURACY: dict[str, dict[str, tuple[float, float]]] = {
    "mobilenet": {"M0": (44.1, 4.7), "M1": (51.7, 7.4), "M2": (62.4, 3.2)},
    "efficientnet": {"E0": (45.7, 4.7), "E1": (62.2, 2.4), "E2": (62.8, 4.7)},
}

SOURCE = "Deshpande, Nunnari & Avramidis (2022)"


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def published(model: str, phase: str, label: str, cv_label: str) -> dict[str, Any] | None:
    """The paper's accuracy for one report row, or None when the row is not one of the paper's.

    Returns ``{"accuracy": float, "accuracy_std": float | None, "table": "Table 4" | "Table 5"}``
    with accuracy and std as fractions (0.670 for 67.0 %), like every metric of the reports;
    ``accuracy_std`` is None in the exploratory phase (a single split has none).
    """
    if phase == "exploratory":
        table = {_key(name): value for name, value in TABLE_4_ACCURACY.get(model, {}).items()}
        accuracy = table.get(_key(label))
        if accuracy is None:
            return None
        return {"accuracy": round(accuracy / 100.0, 4), "accuracy_std": None, "table": "Table 4"}
    if phase == "cv":
        table = {_key(name): value for name, value in TABLE_5_ACCURACY.get(model, {}).items()}
        found = table.get(_key(cv_label)) if cv_label else None
        if found is None:
            return None
        mean, std = found
        return {"accuracy": round(mean / 100.0, 4), "accuracy_std": round(std / 100.0, 4), "table": "Table 5"}
    return None
