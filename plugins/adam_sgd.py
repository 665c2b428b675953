"""Plugin ``adam_sgd``: the paper's FT-SGD, fine-tuning that ends with plain SGD.

Phase 1 trains the new head for 3 epochs with Adam at lr 1e-3; phase 2 unfreezes every layer,
trains 5 epochs with Adam at lr 1e-3, then 2 epochs with SGD at lr 1e-4 (the paper's text). The
authors' code used Adam at 1e-4 and SGD at 1e-3 instead: set ``adam_lr = 1e-4`` and
``sgd_lr = 1e-3``. The paper also mentions three SGD epochs in one place: ``sgd_epochs = 3``.
"""

from __future__ import annotations

from feph_finetune import TrainingStage
from feph_finetune_plugins.schedules import (
    HEAD_OPTIONS, adam, epochs, learning_rate, momentum, sgd, schedule_hooks,
)

PLUGIN = "adam_sgd"
OPTIONS = {
    **HEAD_OPTIONS,
    "adam_epochs": epochs(5, "epochs of Adam on all layers"),
    "adam_lr": learning_rate(1e-3, "Adam learning rate on all layers"),
    "sgd_epochs": epochs(2, "epochs of SGD on all layers, after Adam"),
    "sgd_lr": learning_rate(1e-4, "SGD learning rate"),
    "momentum": momentum(),
}


def later_stages(options: dict) -> list[TrainingStage]:
    """Phase 2, after :func:`~feph_finetune_plugins.schedules.head_stage`."""
    return [
        TrainingStage("adam", "all", int(options["adam_epochs"]), adam(float(options["adam_lr"])), label="all layers, Adam"),
        TrainingStage("sgd", "all", int(options["sgd_epochs"]), sgd(float(options["sgd_lr"]), float(options["momentum"])), label="all layers, SGD"),
    ]


plugin_options, optimizer_schedule = schedule_hooks(OPTIONS, later_stages)
