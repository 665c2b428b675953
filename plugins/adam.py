"""Plugin ``adam``: the paper's plain fine-tuning (FT).

Phase 1 trains the new head for 3 epochs with Adam at lr 1e-3; phase 2 unfreezes every layer and
trains 7 more epochs with Adam at lr 1e-3. Every number is an option.
"""

from __future__ import annotations

from feph_finetune import TrainingStage, hookimpl
from feph_finetune_plugins.schedules import HEAD_OPTIONS, OptionReader, adam, head_stage

PLUGIN = "adam"
OPTIONS = {**HEAD_OPTIONS, "epochs": 7, "lr": 1e-3}


@hookimpl
def plugin_options():
    return dict(OPTIONS)


@hookimpl
def optimizer_schedule(context):
    options = OptionReader(PLUGIN, OPTIONS, context.options)
    return [
        head_stage(options),
        TrainingStage("adam", "all", options.epochs("epochs"), adam(options.positive("lr"))),
    ]
