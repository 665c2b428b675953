"""Plugin ``sam_sgd``: the paper's FT-SGD + SAM, Sharpness-Aware Minimization around plain SGD.

Phase 1 trains the new head for 3 epochs with Adam at lr 1e-3 (no SAM); phase 2 unfreezes every
layer and trains 6 epochs with SAM (radius rho 0.05) around SGD at lr 1e-4. The SAM model is
``sam``'s (:func:`feph_finetune_plugins.sam.sharpness_aware`).
"""

from __future__ import annotations

from feph_finetune import hookimpl
from feph_finetune_plugins.sam import sam_stage
from feph_finetune_plugins.schedules import HEAD_OPTIONS, OptionReader, head_stage, sgd

PLUGIN = "sam_sgd"
OPTIONS = {**HEAD_OPTIONS, "epochs": 6, "lr": 1e-4, "rho": 0.05, "momentum": 0.0}


@hookimpl
def plugin_options():
    return dict(OPTIONS)


@hookimpl
def optimizer_schedule(context):
    options = OptionReader(PLUGIN, OPTIONS, context.options)
    return [
        head_stage(options),
        sam_stage(
            "sam_sgd",
            epochs=options.epochs("epochs"),
            optimizer=sgd(options.positive("lr"), options.momentum("momentum")),
            rho=options.positive("rho"),
        ),
    ]
