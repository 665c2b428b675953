"""What the optimizer-schedule plugins (adam, adam_sgd, sam, sam_sgd) share.

Not a plugin itself: it implements no hook. It reads and checks the plugins' options, builds the
Keras optimizers (importing Keras only when a schedule is actually built, never when a plugin
module is imported) and the phase-1 stage that all four schedules begin with.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Mapping

from feph_finetune import PluginError, TrainingStage

#: The options of the phase-1 stage (base frozen, only the new head trains), the same in every
#: schedule: the paper trains the head for 3 epochs with Adam at lr 1e-3.
HEAD_OPTIONS: dict[str, Any] = {"head_epochs": 3, "head_lr": 1e-3}


class OptionReader:
    """One plugin's options, defaults filled in, handed out only after a check of their value.

    The core already checks option names and types against the defaults; this refuses values
    that would make a meaningless schedule (a negative epoch count, a zero learning rate), with
    a message naming the plugin and the option.
    """

    def __init__(self, plugin: str, defaults: Mapping[str, Any], options: Mapping[str, Any]):
        self.plugin = plugin
        self.values = {**defaults, **options}

    def epochs(self, key: str) -> int:
        """A whole number of epochs, 0 or more (a 0-epoch stage is skipped by the core)."""
        value = self.values[key]
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            self._refuse(key, "a whole number >= 0")
        return int(value)

    def positive(self, key: str) -> float:
        """A finite number > 0: a learning rate, SAM's radius rho."""
        value = self.values[key]
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            self._refuse(key, "a finite number > 0")
        return float(value)

    def momentum(self, key: str) -> float:
        """An SGD momentum in [0, 1): 0 is plain SGD, 1 would never forget a gradient."""
        value = self.values[key]
        if not _is_number(value) or not 0 <= value < 1:
            self._refuse(key, "a number in [0, 1)")
        return float(value)

    def _refuse(self, key: str, requirement: str) -> None:
        raise PluginError(
            f"plugin {self.plugin!r}: option {key!r} must be {requirement}, not {self.values[key]!r}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def adam(learning_rate: float) -> Any:
    """A fresh Keras Adam optimizer (Keras defaults apart from the learning rate)."""
    import keras

    return keras.optimizers.Adam(learning_rate=learning_rate)


def sgd(learning_rate: float, momentum: float = 0.0) -> Any:
    """A fresh Keras SGD optimizer; the paper's SGD has no momentum."""
    import keras

    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)


def head_stage(options: OptionReader) -> TrainingStage:
    """Phase 1: only the new head trains, with Adam (options ``head_epochs`` and ``head_lr``)."""
    return TrainingStage(
        name="head",
        trainable="head",
        epochs=options.epochs("head_epochs"),
        optimizer=adam(options.positive("head_lr")),
    )
