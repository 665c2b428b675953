"""Class weights, the paper's CW: weight of class i = size of the largest class / size of class i.

Computed on the training split only (the labels the core passes), so the largest class gets 1 and
rarer classes count more in the loss. A class absent from the training split gets weight 0: it
has no example to weight, and a finite value keeps the loss well defined.
"""

from __future__ import annotations

import numpy as np

from feph_finetune import PluginError, hookimpl


@hookimpl
def weight_classes(labels, context):
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(context.classes))
    if counts.sum() == 0:
        raise PluginError("cannot weight classes of an empty training split")
    largest = counts.max()
    return {index: float(largest / count) if count else 0.0 for index, count in enumerate(counts)}
