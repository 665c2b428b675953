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
from feph_finetune.convert import ConversionError, ConvertedModel, efficientnet_b0_classifier, read_converted
from feph_finetune.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "CLASSES",
    "Augmentation",
    "BuiltModel",
    "ConversionError",
    "ConvertedModel",
    "FrameResult",
    "PluginError",
    "Preprocessing",
    "RunContext",
    "TrainingStage",
    "efficientnet_b0_classifier",
    "hookimpl",
    "read_converted",
    "__version__",
]
