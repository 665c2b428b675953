"""Plugin ``sam_sgd``: the paper's FT-SGD + SAM, Sharpness-Aware Minimization around plain SGD.

Phase 1 trains the new head for 3 epochs with Adam at lr 1e-3 (no SAM); phase 2 unfreezes every
layer and trains 6 epochs with SAM (radius rho 0.05) around SGD at lr 1e-4. The SAM model is
``sam``'s (:func:`feph_finetune_plugins.sam.sharpness_aware`).
"""

from __future__ import annotations

from feph_finetune import TrainingStage
from feph_finetune_plugins.sam import sam_stage
from feph_finetune_plugins.schedules import (
    HEAD_OPTIONS, epochs, learning_rate, momentum, rho, sgd, schedule_hooks,
)

PLUGIN = "sam_sgd"
OPTIONS = {
    **HEAD_OPTIONS,
    "epochs": epochs(6, "epochs of SAM around SGD on all layers"),
    "lr": learning_rate(1e-4, "SGD learning rate inside SAM"),
    "rho": rho(),
    "momentum": momentum(),
}


def later_stages(options: dict) -> list[TrainingStage]:
    """Phase 2, after :func:`~feph_finetune_plugins.schedules.head_stage`."""
    return [
        sam_stage(
            "sam_sgd",
            epochs=int(options["epochs"]),
            optimizer=sgd(float(options["lr"]), float(options["momentum"])),
            rho=float(options["rho"]),
            label="all layers, SAM around SGD",
        ),
    ]


plugin_options, optimizer_schedule = schedule_hooks(OPTIONS, later_stages)
