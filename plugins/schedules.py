"""What the optimizer-schedule plugins (adam, adam_sgd, sam, sam_sgd) share.

Not a plugin itself: it implements no hook, it builds them. It declares the plugins' kinds of
options (epochs, learning rates, momentum, SAM's radius) with the values each accepts, builds the
Keras optimizers (importing Keras only when a schedule is actually built, never when a plugin module
is imported), the phase-1 stage that all four schedules begin with, and the two hooks every schedule
plugin implements (:func:`schedule_hooks`). The core checks option values against
these declarations before any work, so the schedules read ``context.options`` as given.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from feph_finetune import Option, TrainingStage, hookimpl

#: An upper bound on any stage's epochs, so that a typo cannot start a run that never ends: the
#: paper trains 10 epochs in all.
MAX_EPOCHS = 10_000
#: An upper bound on learning rates: Adam and SGD diverge well below 10 on these networks (the
#: paper's are 1e-3 and 1e-4), so a larger one is a typo (``1e3`` for ``1e-3``).
MAX_LEARNING_RATE = 10.0
#: An upper bound on SAM's radius: it is a distance in weight space, where 10 already steps far
#: outside any minimum (Foret et al. 2020 search 0.01 to 2).
MAX_RHO = 10.0


def epochs(default: int, help: str) -> Option:
    """A whole number of epochs, 0 (the stage is skipped) to :data:`MAX_EPOCHS`."""
    return Option(default, help=help, minimum=0, maximum=MAX_EPOCHS)


def learning_rate(default: float, help: str) -> Option:
    """A learning rate > 0, up to :data:`MAX_LEARNING_RATE`."""
    return Option(default, help=help, minimum=0, exclusive_minimum=True, maximum=MAX_LEARNING_RATE)


def momentum(default: float = 0.0) -> Option:
    """An SGD momentum in [0, 1): 0 is plain SGD (the paper's), 1 would never forget a gradient."""
    return Option(default, help="SGD momentum, in [0, 1)", minimum=0, maximum=1, exclusive_maximum=True)


def rho(default: float = 0.05) -> Option:
    """SAM's neighbourhood radius, > 0 up to :data:`MAX_RHO` (Foret et al. 2020 use 0.05)."""
    return Option(default, help="SAM radius rho, > 0", minimum=0, exclusive_minimum=True, maximum=MAX_RHO)


#: The options of the phase-1 stage (base frozen, only the new head trains), the same in every
#: schedule: the paper trains the head for 3 epochs with Adam at lr 1e-3.
HEAD_OPTIONS: dict[str, Option] = {
    "head_epochs": epochs(3, "epochs of phase 1 (only the new head trains)"),
    "head_lr": learning_rate(1e-3, "Adam learning rate of phase 1"),
}


def adam(learning_rate: float) -> Any:
    """A fresh Keras Adam optimizer (Keras defaults apart from the learning rate)."""
    import keras

    return keras.optimizers.Adam(learning_rate=learning_rate)


def sgd(learning_rate: float, momentum: float = 0.0) -> Any:
    """A fresh Keras SGD optimizer; the paper's SGD has no momentum."""
    import keras

    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)


def with_defaults(declarations: Mapping[str, Option], options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a run (checked by the core), any missing one at its declared default."""
    return {key: options.get(key, option.default) for key, option in declarations.items()}


def head_stage(options: Mapping[str, Any]) -> TrainingStage:
    """Phase 1: only the new head trains, with Adam (options ``head_epochs`` and ``head_lr``)."""
    return TrainingStage(
        name="head",
        trainable="head",
        epochs=int(options["head_epochs"]),
        optimizer=adam(float(options["head_lr"])),
        label="head only (base frozen), Adam",
    )


def schedule_hooks(
    declarations: Mapping[str, Option], later_stages: Callable[[dict[str, Any]], list[TrainingStage]]
) -> tuple[Callable[[], dict[str, Option]], Callable[[Any], list[TrainingStage]]]:
    """The ``plugin_options`` and ``optimizer_schedule`` hooks of a schedule plugin.

    ``declarations`` are the plugin's options (:data:`HEAD_OPTIONS` among them); the schedule is
    :func:`head_stage` followed by ``later_stages(options)``, the options at their defaults where
    the run sets none. A plugin module binds both to the hooks' names::

        plugin_options, optimizer_schedule = schedule_hooks(OPTIONS, later_stages)
    """

    @hookimpl
    def plugin_options() -> dict[str, Option]:
        return dict(declarations)

    @hookimpl
    def optimizer_schedule(context: Any) -> list[TrainingStage]:
        options = with_defaults(declarations, context.options)
        return [head_stage(options), *later_stages(options)]

    return plugin_options, optimizer_schedule
