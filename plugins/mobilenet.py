"""The ``mobilenet`` backbone: MobileNet-v1, the paper's first architecture.

Random, ImageNet or file weights, or a whole pretrained expression classifier such as Savchenko's
``mobilenet_7.h5`` (see :mod:`feph_finetune_plugins.backbones` for the ``weights`` option). The
model takes raw 0-255 pixels and does not normalise them: that is the ``normalize`` plugin's job.
"""

from __future__ import annotations

from typing import Any

from feph_finetune import BuiltModel, Option, PluginError, RunContext, hookimpl
from feph_finetune_plugins.backbones import Backbone, build_backbone_model, common_options, model_input_of, pretrained_class_names, weights_traits

#: The widths for which Keras publishes ImageNet weights.
IMAGENET_ALPHAS = (0.25, 0.5, 0.75, 1.0)
#: The input sides for which Keras publishes ImageNet weights; other sides get the 224 ones.
IMAGENET_SIDES = (128, 160, 192, 224)


@hookimpl
def plugin_options() -> dict[str, Any]:
    return {**common_options(), "alpha": Option(1.0, help="width multiplier, > 0 (ImageNet weights: 0.25, 0.5, 0.75, 1)",
                                                minimum=0, exclusive_minimum=True, maximum=4)}  # memory grows as alpha squared


@hookimpl
def plugin_traits(options) -> set[str]:
    return weights_traits(options["weights"], options.get("pretrained_classes"))


@hookimpl
def model_input(options) -> dict | None:
    """A whole-model file's side, which it alone takes; else none (input_size applies)."""
    return {**(model_input_of(options["weights"]) or {}), "classes": pretrained_class_names(options["weights"], options["pretrained_classes"])}


@hookimpl
def build_model(context: RunContext) -> BuiltModel:
    alpha = float(context.options.get("alpha", 1.0))
    backbone = Backbone(
        plugin="mobilenet",
        description=f"MobileNet alpha={alpha}",
        make_base=lambda input_size, weights: _make_base(input_size, weights, alpha),
        imagenet_file=lambda input_size: _imagenet_file(input_size, alpha),
        normalizes_input=False,
    )
    return build_backbone_model(context, backbone)


def _make_base(input_size: int, weights: str | None, alpha: float) -> Any:
    import keras

    if weights == "imagenet" and alpha not in IMAGENET_ALPHAS:
        raise PluginError(f"mobilenet: ImageNet weights exist only for alpha in {IMAGENET_ALPHAS}, not {alpha}")
    return keras.applications.MobileNet(
        include_top=False,
        weights=weights,
        input_shape=(input_size, input_size, 3),
        alpha=alpha,
        pooling="avg",
    )


def _imagenet_file(input_size: int, alpha: float) -> str:
    """The name Keras caches the no-top ImageNet weights under (it falls back to 224 px ones)."""
    alpha_text = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}[alpha]
    side = input_size if input_size in IMAGENET_SIDES else 224
    return f"mobilenet_{alpha_text}_{side}_tf_no_top.h5"
