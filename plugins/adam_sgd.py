"""Plugin ``adam_sgd``: the paper's FT-SGD, fine-tuning that ends with plain SGD.

Phase 1 trains the new head for 3 epochs with Adam at lr 1e-3; phase 2 unfreezes every layer,
trains 5 epochs with Adam at lr 1e-3, then 2 epochs with SGD at lr 1e-4 (the paper's text). The
authors' code used Adam at 1e-4 and SGD at 1e-3 instead: set ``adam_lr = 1e-4`` and
``sgd_lr = 1e-3``. The paper also mentions three SGD epochs in one place: ``sgd_epochs = 3``.
"""

from __future__ import annotations

from feph_finetune import TrainingStage, hookimpl
from feph_finetune_plugins.schedules import HEAD_OPTIONS, OptionReader, adam, head_stage, sgd

PLUGIN = "adam_sgd"
OPTIONS = {
    **HEAD_OPTIONS,
    "adam_epochs": 5,
    "adam_lr": 1e-3,
    "sgd_epochs": 2,
    "sgd_lr": 1e-4,
    "momentum": 0.0,
}


@hookimpl
def plugin_options():
    return dict(OPTIONS)


@hookimpl
def optimizer_schedule(context):
    options = OptionReader(PLUGIN, OPTIONS, context.options)
    return [
        head_stage(options),
        TrainingStage("adam", "all", options.epochs("adam_epochs"), adam(options.positive("adam_lr"))),
        TrainingStage(
            "sgd",
            "all",
            options.epochs("sgd_epochs"),
            sgd(options.positive("sgd_lr"), options.momentum("momentum")),
        ),
    ]
