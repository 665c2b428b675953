"""The ``efficientnet`` backbone: EfficientNet-B0 (the paper's second architecture) or -B2.

Savchenko publishes his EfficientNet expression models only for PyTorch and ONNX, so this backbone
usually starts from Keras' ImageNet weights, or from a converted Keras file (see
:mod:`feph_finetune_plugins.backbones` for the ``weights`` option). Keras' EfficientNet rescales
raw 0-255 pixels inside the model, so no ``preprocess`` step may normalise them as well.

Option ``variant``: ``"b0"`` or ``"b2"``; by default (``"auto"``) the variant a converted file's
``.json`` names, else B0. An experiment that does not set ``input_size`` runs at the variant's
native side (B0 224, B2 260: :data:`feph_finetune.EFFICIENTNET_VARIANTS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feph_finetune import EFFICIENTNET_VARIANTS, BuiltModel, ConversionError, Option, PluginError, RunContext, hookimpl, read_converted
from feph_finetune_plugins.backbones import Backbone, build_backbone_model, common_options, model_input_of, pretrained_class_names, weights_traits

AUTO = "auto"
DEFAULT_VARIANT = "b0"


@hookimpl
def plugin_options() -> dict[str, Any]:
    return {
        **common_options(),
        "variant": Option(AUTO, choices=(AUTO, *EFFICIENTNET_VARIANTS), check_with_options=variant_problem,
                          help=f"{', '.join(EFFICIENTNET_VARIANTS)}, or auto: a converted file's, else {DEFAULT_VARIANT}"),
    }


@hookimpl
def plugin_traits(options) -> set[str]:
    """Keras' EfficientNet rescales raw pixels inside the model: ``normalizes_input``."""
    return {"normalizes_input"} | weights_traits(options["weights"], options.get("pretrained_classes"))


@hookimpl
def model_input(options) -> dict[str, Any]:
    """A whole (not converted) model file's side, which it alone takes; else the variant's native
    side, a default only (EfficientNet and converted files take any side)."""
    side = model_input_of(options["weights"]) or {"size": EFFICIENTNET_VARIANTS[_variant(options)].input_size, "fixed": False}
    return {**side, "classes": pretrained_class_names(options["weights"], options["pretrained_classes"])}


@hookimpl
def build_model(context: RunContext) -> BuiltModel:
    options = {"weights": "none", "variant": AUTO, **context.options}
    problem = variant_problem(options["variant"], options)
    if problem:
        raise PluginError(f"efficientnet: option variant: {problem}")
    spec = EFFICIENTNET_VARIANTS[_variant(options)]
    backbone = Backbone(
        plugin="efficientnet",
        description=spec.architecture,
        make_base=lambda input_size, weights: _make_base(spec.application, input_size, weights),
        imagenet_file=lambda input_size: f"{spec.application.lower()}_notop.h5",
        normalizes_input=True,
    )
    return build_backbone_model(context, backbone)


def _make_base(application: str, input_size: int, weights: str | None) -> Any:
    import keras

    return getattr(keras.applications, application)(
        include_top=False,
        weights=weights,
        input_shape=(input_size, input_size, 3),
        pooling="avg",
    )


def _converted_variant(weights: Any) -> str | None:
    """The variant a converter's file records (None: not such a file, or unreadable: the run says why)."""
    try:
        converted = read_converted(Path(str(weights).strip()).expanduser())
    except ConversionError:
        return None
    variant = converted.variant if converted is not None else None
    return variant.name if variant is not None else None


def _variant(options: dict[str, Any]) -> str:
    if options.get("variant", AUTO) != AUTO:
        return options["variant"]
    return _converted_variant(options.get("weights", "none")) or DEFAULT_VARIANT


def variant_problem(variant: str, options: dict[str, Any]) -> str | None:
    """A variant named in the options that contradicts the converted file's."""
    converted = _converted_variant(options.get("weights", "none"))
    if variant == AUTO or converted is None or converted == variant:
        return None
    return f"{variant!r}, but {options['weights']} holds an EfficientNet-{converted.upper()}: remove the option or set it to {converted!r}"
