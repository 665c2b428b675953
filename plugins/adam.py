"""Plugin ``adam``: the paper's plain fine-tuning (FT).

Phase 1 trains the new head for 3 epochs with Adam at lr 1e-3; phase 2 unfreezes every layer and
trains 7 more epochs with Adam at lr 1e-3. Every number is an option.
"""

from __future__ import annotations

from feph_finetune import TrainingStage
from feph_finetune_plugins.schedules import HEAD_OPTIONS, adam, epochs, learning_rate, schedule_hooks

PLUGIN = "adam"
OPTIONS = {
    **HEAD_OPTIONS,
    "epochs": epochs(7, "epochs of phase 2 (all layers)"),
    "lr": learning_rate(1e-3, "Adam learning rate of phase 2"),
}


def later_stages(options: dict) -> list[TrainingStage]:
    """Phase 2, after :func:`~feph_finetune_plugins.schedules.head_stage`."""
    return [
        TrainingStage("adam", "all", int(options["epochs"]), adam(float(options["lr"])), label="all layers, Adam"),
    ]


plugin_options, optimizer_schedule = schedule_hooks(OPTIONS, later_stages)
