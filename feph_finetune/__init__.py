"""feph_finetune: fine-tune facial-expression CNNs on the FePh sign-language dataset.

The public API for plugins is what this module exports; nothing here imports TensorFlow.
"""

from feph_finetune.api import (
    CLASSES,
    Augmentation,
    BuiltModel,
    FrameResult,
    PluginError,
    Preprocessing,
    RunContext,
    TrainingStage,
)
from feph_finetune.hookspecs import hookimpl
from feph_finetune.options import Option

__version__ = "0.1.0"

__all__ = [
    "CLASSES",
    "Augmentation",
    "BuiltModel",
    "FrameResult",
    "Option",
    "PluginError",
    "Preprocessing",
    "RunContext",
    "TrainingStage",
    "hookimpl",
    "__version__",
]
