"""The ``efficientnet`` backbone: EfficientNet-B0, the paper's second architecture.

Savchenko publishes his EfficientNet-B0 expression model only for PyTorch and ONNX, so this
backbone usually starts from Keras' ImageNet weights, or from a converted Keras file (see
:mod:`feph_finetune_plugins.backbones` for the ``weights`` option). Keras' EfficientNet rescales
raw 0-255 pixels inside the model, so no ``preprocess`` step may normalise them as well.
"""

from __future__ import annotations

from typing import Any

from feph_finetune import BuiltModel, RunContext, hookimpl
from feph_finetune_plugins.backbones import Backbone, build_backbone_model, common_options, weights_traits


def _make_base(input_size: int, weights: str | None) -> Any:
    import keras

    return keras.applications.EfficientNetB0(
        include_top=False,
        weights=weights,
        input_shape=(input_size, input_size, 3),
        pooling="avg",
    )


EFFICIENTNET_B0 = Backbone(
    plugin="efficientnet",
    description="EfficientNet-B0",
    make_base=_make_base,
    imagenet_file=lambda input_size: "efficientnetb0_notop.h5",
    normalizes_input=True,
)


@hookimpl
def plugin_options() -> dict[str, Any]:
    return common_options()


@hookimpl
def plugin_traits(options) -> set[str]:
    """Keras' EfficientNet rescales raw pixels inside the model: ``normalizes_input``."""
    return {"normalizes_input"} | weights_traits(options["weights"])


@hookimpl
def build_model(context: RunContext) -> BuiltModel:
    return build_backbone_model(context, EFFICIENTNET_B0)
