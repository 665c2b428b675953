"""Plugin ``adam``: the paper's plain fine-tuning (FT).

Phase 1 trains the new head for 3 epochs with Adam at lr 1e-3; phase 2 unfreezes every layer and
trains 7 more epochs with Adam at lr 1e-3. Every number is an option.
"""

from __future__ import annotations

from feph_finetune import TrainingStage, hookimpl
from feph_finetune_plugins.schedules import HEAD_OPTIONS, adam, epochs, head_stage, learning_rate, with_defaults

PLUGIN = "adam"
OPTIONS = {
    **HEAD_OPTIONS,
    "epochs": epochs(7, "epochs of phase 2 (all layers)"),
    "lr": learning_rate(1e-3, "Adam learning rate of phase 2"),
}


@hookimpl
def plugin_options():
    return dict(OPTIONS)


@hookimpl
def optimizer_schedule(context):
    options = with_defaults(OPTIONS, context.options)
    return [
        head_stage(options),
        TrainingStage("adam", "all", int(options["epochs"]), adam(float(options["lr"])), label="all layers, Adam"),
    ]
