"""The paper's metrics: overall accuracy, sensitivity (recall) per class, their mean, and the
confusion matrix (rows: true class, columns: predicted class).

A class with no test example has no defined sensitivity: it is reported as None and left out of
the average, rather than counted as 0 or 1.
"""

from __future__ import annotations

import numpy as np

from feph_finetune import hookimpl


@hookimpl
def evaluate(y_true, y_prob, context):
    classes = len(context.classes)
    predicted = np.asarray(y_prob).argmax(axis=1)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (np.asarray(y_true, dtype=np.int64), predicted), 1)
    support = confusion.sum(axis=1)
    sensitivity = {
        name: (float(confusion[index, index] / support[index]) if support[index] else None) for index, name in enumerate(context.classes)
    }
    defined = [value for value in sensitivity.values() if value is not None]
    return {
        "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "sensitivity": sensitivity,
        "avg_sensitivity": float(np.mean(defined)) if defined else None,
        "confusion": confusion.tolist(),
    }
