"""Read a PyTorch EfficientNet (B0, B2): a state_dict of a timm EfficientNet, or a whole pickled model.

Savchenko's ``enet_b0_7.pt`` is a whole timm 0.4.5 ``tf_efficientnet_b0_ns`` (the same network as
``tf_efficientnet_b0``) pickled with ``torch.save(model)`` after his training notebook replaced
its classifier by ``nn.Sequential(nn.Linear(1280, n))``: its state keys are
``classifier.0.weight``/``.bias`` (SPEC section 3); ``enet_b2_8.pt`` is the same for
``tf_efficientnet_b2_ns``. A classifier that is a ``Linear``, or a ``Sequential`` holding one
``Linear`` (and dropout), is read. Unpickling a whole model runs code named in it, so it is done
only when the user says the file is trusted (``trust_pickle``); a state_dict holds only tensors
and loads with ``weights_only=True``. Classes a newer timm moved or removed
(``timm.models.layers`` became ``timm.layers``) are looked up under their new names, and where
there is none replaced by empty stand-ins: the weights are still read, that code is never run.

A state_dict records neither padding nor BatchNorm epsilon: it is run, for the verification, as
the timm architecture the user names (``architecture``), by default the ``tf_`` variant its
shapes fit, and the verification says so.

``torch`` and ``timm`` import only here, so that ONNX users need neither.
"""

from __future__ import annotations

import pickle
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from feph_finetune.convert.keras_target import VARIANTS
from feph_finetune.convert.source import BatchNorm, ConversionError, SourceConv, SourceModel, missing_package, source_input

#: The timm architecture of Savchenko's EfficientNet-B0 models (``tf_efficientnet_b0_ns`` in
#: timm 0.4.5 is this network with other pretrained weights).
TIMM_ARCHITECTURE = VARIANTS["b0"].timm

#: Modules older timm versions had, under their current names.
TIMM_RENAMES = (("timm.models.layers", "timm.layers"), ("timm.models.efficientnet_blocks", "timm.models._efficientnet_blocks"),
                ("timm.models.efficientnet_builder", "timm.models._efficientnet_builder"))

#: ``classifier.0.weight`` (a Sequential's Linear) -> index 0.
SEQUENTIAL_KEY = re.compile(r"^classifier\.(\d+)\.(weight|bias)$")


def read_torch(path: Path, trust_pickle: bool, report=print, architecture: str | None = None) -> SourceModel:
    """The convolutions, classifier and a runner of a ``.pt``/``.pth`` file; ConversionError if refused.

    ``architecture``: the timm architecture a state_dict is run as (default: the ``tf_`` variant
    whose classifier width the file has); refused for a whole model, which records its own.
    """
    torch, timm = _import_torch()
    loaded, stand_ins = _load(path, trust_pickle, torch)
    if isinstance(loaded, torch.nn.Module):
        pickled, state = loaded, loaded.state_dict()
    elif isinstance(loaded, Mapping):
        pickled, state = None, _state_dict(loaded, path, torch)
    else:
        raise ConversionError(f"{path}: holds a {type(loaded).__name__}, neither a state_dict nor a PyTorch model")
    if pickled is not None and architecture:
        raise ConversionError(f"{path}: --architecture is for state_dicts; this file is a whole model, which records its own architecture")
    state, layout = _classifier_state(state, path)
    outputs, features = (int(n) for n in state["classifier.weight"].shape)
    architecture = architecture or _default_architecture(features)
    reference = _create(timm, architecture, outputs, path)
    _compare(state, reference.state_dict(), path, architecture)
    reference.load_state_dict(state, strict=False)
    notes = []
    if layout != "Linear":
        notes.append(f"classifier {layout}, read as its Linear")
    if stand_ins:
        notes.append(f"not in timm {timm.__version__} (weights read, code not run): {', '.join(sorted(stand_ins))}")
    if pickled is None:
        notes.append(f"a state_dict does not record padding or BatchNorm epsilon: run as timm's {architecture} (--architecture)")
        model, verified_against = reference, f"timm's {architecture} carrying the file's weights"
    else:
        model, verified_against = _runnable(pickled, reference, torch, notes, architecture)
    convolutions = _convolutions(pickled if pickled is not None else reference)
    _check_padding(convolutions, path, architecture)
    for note in notes:
        report(f"note: {note}")
    return SourceModel(
        kind="pickled PyTorch model" if pickled is not None else "PyTorch state_dict",
        convolutions=convolutions,
        classifier_weight=_array(state["classifier.weight"]),
        classifier_bias=_array(state["classifier.bias"]),
        probabilities=_runner(model, torch),
        verified_against=verified_against,
        notes=notes,
    )


def _classifier_state(state: Mapping, path: Path) -> tuple[dict[str, Any], str]:
    """The state with the classifier under ``classifier.weight``/``.bias``, and its layout in words.

    timm's own classifier is a Linear (``classifier.weight``); Savchenko's is
    ``Sequential(Linear)`` (``classifier.0.weight``), possibly with Dropout before it (then
    ``classifier.1.weight``). A Sequential with more than one layer that has weights is refused.
    """
    if "classifier.weight" in state:
        return dict(state), "Linear"
    indices = sorted({int(match.group(1)) for key in state if (match := SEQUENTIAL_KEY.match(key))})
    others = [key for key in state if key.startswith("classifier.") and not SEQUENTIAL_KEY.match(key)]
    if not indices:
        raise ConversionError(f"{path}: no classifier.weight or classifier.0.weight: not a timm EfficientNet classifier ({_first_keys(state)})")
    if len(indices) > 1 or others or f"classifier.{indices[0]}.bias" not in state or state[f"classifier.{indices[0]}.weight"].dim() != 2:
        layers = sorted({".".join(key.split(".")[:2]) for key in state if key.startswith("classifier.")})
        raise ConversionError(
            f"{path}: the classifier holds {', '.join(layers)}; only a Linear, alone or in a Sequential "
            "with dropout (Savchenko's Sequential(Linear)), can be converted"
        )
    index = indices[0]
    renamed = {key: value for key, value in state.items() if not key.startswith("classifier.")}
    renamed["classifier.weight"] = state[f"classifier.{index}.weight"]
    renamed["classifier.bias"] = state[f"classifier.{index}.bias"]
    return renamed, "Sequential(Linear)" if index == 0 else f"Sequential, its Linear at index {index}"


def _default_architecture(features: int) -> str:
    """The ``tf_`` EfficientNet whose classifier reads ``features`` features (B0 for any other
    width: the comparison of the weights then names what differs)."""
    return next((v.timm for v in VARIANTS.values() if v.features == features), TIMM_ARCHITECTURE)


def _create(timm: Any, architecture: str, outputs: int, path: Path) -> Any:
    """timm's ``architecture`` with random weights; ``_ns`` names (timm 0.4-0.6) are the same networks."""
    name = architecture.removesuffix("_ns")
    try:
        return timm.create_model(name, pretrained=False, num_classes=outputs).eval()
    except Exception as error:
        raise ConversionError(f"{path}: --architecture {architecture}: timm {timm.__version__} cannot build it ({type(error).__name__}: {error})") from error


def _import_torch() -> tuple[Any, Any]:
    """torch and timm; refused after TensorFlow, which would crash the process.

    Importing timm (through torchvision, ``torch._dynamo``) after TensorFlow ends the process with
    a segmentation fault (seen with torch 2.14.1 and TensorFlow 2.21); the other order works. The
    command line reads the source before building the Keras model, so it never meets this.
    """
    if "tensorflow" in sys.modules and "timm" not in sys.modules:
        raise ConversionError(
            "PyTorch sources need timm imported before TensorFlow in one process (the other order crashes "
            "it): run `python -m feph_finetune convert`, or import timm first"
        )
    try:
        import torch
    except ImportError as error:
        raise missing_package("torch", "convert-torch") from error
    try:
        import timm
    except ImportError as error:
        raise missing_package("timm", "convert-torch") from error
    return torch, timm


def _load(path: Path, trust_pickle: bool, torch: Any) -> tuple[Any, set[str]]:
    """Tensors only unless trusted; a refused whole model gets a message saying what to do."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True), set()
    except pickle.UnpicklingError as error:
        if not trust_pickle:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
            raise ConversionError(
                f"{path}: holds pickled Python objects, not only tensors (a whole model saved with "
                "torch.save(model), as Savchenko's enet_b0_7.pt is). Loading it runs code the file names, "
                "so a malicious file could do anything on this machine. If you trust where it comes from, "
                "run again with --trust-pickle." + (f" (It names {found.group(1)}.)" if found else "")
            ) from error
    except Exception as error:
        raise ConversionError(f"{path}: not a readable PyTorch file, or a truncated one ({type(error).__name__}: {error})") from error
    stand_ins: set[str] = set()
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_compat_pickle(stand_ins, torch)), stand_ins
    except Exception as error:
        raise ConversionError(f"{path}: cannot unpickle ({type(error).__name__}: {error})") from error


def _compat_pickle(stand_ins: set[str], torch: Any) -> types.ModuleType:
    """A pickle module whose Unpickler finds classes of older timm versions (see module docstring)."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                pass
            for old, new in TIMM_RENAMES:
                if module.startswith(old):
                    try:
                        return super().find_class(new + module[len(old):], name)
                    except (ImportError, AttributeError):
                        break
            if not module.startswith("timm"):
                raise ImportError(f"the file names {module}.{name}, which is not installed")
            stand_ins.add(f"{module}.{name}")
            return type(name, (torch.nn.Module,), {"__module__": module})

    compat = types.ModuleType("feph_finetune_compat_pickle")
    compat.Unpickler = Unpickler
    compat.load = lambda file, **kwargs: Unpickler(file, **kwargs).load()
    return compat


def _state_dict(loaded: Mapping, path: Path, torch: Any) -> dict[str, Any]:
    """A plain state_dict, or one inside a checkpoint's ``state_dict``/``model`` entry; ``module.`` stripped."""
    for key in ("state_dict", "model"):
        if isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not all(torch.is_tensor(value) for value in loaded.values()):
        raise ConversionError(f"{path}: a mapping whose values are not all tensors: not a state_dict ({_first_keys(loaded)})")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _first_keys(state: Mapping) -> str:
    keys = list(state)
    return "keys: " + ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")


def _module_of(key: str) -> str:
    """``blocks.1.2.conv_dw.weight`` -> ``blocks.1.2``; ``conv_stem.weight`` -> ``conv_stem``."""
    parts = key.split(".")
    return ".".join(parts[:3]) if parts[0] == "blocks" else parts[0]


def _compare(state: Mapping, expected: Mapping, path: Path, architecture: str) -> None:
    """Refuse weights that do not fit timm's ``architecture``, naming the modules that differ."""
    short = _short_name(architecture)
    keys = {key for key in state if not key.endswith("num_batches_tracked")}
    wanted = {key for key in expected if not key.endswith("num_batches_tracked")}
    problems = []
    extra = sorted({_module_of(key) for key in keys - wanted})
    missing = sorted({_module_of(key) for key in wanted - keys})
    if extra:
        problems.append(f"it has {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}, which {short} lacks")
    if missing:
        problems.append(f"it lacks {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    shapes = [key for key in sorted(keys & wanted) if tuple(state[key].shape) != tuple(expected[key].shape)]
    if shapes:
        problems.append("shapes differ: " + "; ".join(f"{key} {tuple(state[key].shape)}, {short} {tuple(expected[key].shape)}" for key in shapes[:4]))
    if problems:
        raise ConversionError(f"{path}: not an {_long_name(architecture)} (timm {architecture}): " + "; ".join(problems))


def _short_name(architecture: str) -> str:
    """``tf_efficientnet_b2_ns`` -> ``B2``; other timm names unchanged."""
    match = re.search(r"efficientnet_(b\d+)", architecture)
    return match.group(1).upper() if match else architecture


def _long_name(architecture: str) -> str:
    """``tf_efficientnet_b0`` -> ``EfficientNet-B0``."""
    short = _short_name(architecture)
    return f"EfficientNet-{short}" if short != architecture else architecture


def _runnable(pickled: Any, reference: Any, torch: Any, notes: list[str], architecture: str) -> tuple[Any, str]:
    """The pickled model itself when its own code runs here; else timm's network with its weights,
    said so; with what the verification then compares against, in words."""
    probe = torch.zeros(1, 3, 224, 224)
    try:
        with torch.no_grad():
            pickled.eval()(probe)
        return pickled, "the pickled model's own forward"
    except Exception as error:
        notes.append(
            f"the pickled model's own forward fails with this timm ({type(error).__name__}: {error}); the conversion "
            f"is verified against timm's {architecture} carrying the pickled weights instead"
        )
        return reference, f"timm's {architecture} carrying the pickled weights"


def _padding(module: Any) -> str:
    """"same" (TensorFlow), "symmetric" (PyTorch) or "none", from a convolution module's attributes."""
    kernel = tuple(module.weight.shape[2:])
    stride = tuple(getattr(module, "stride", (1, 1)))
    padding = getattr(module, "padding", (0, 0))
    if type(module).__name__ == "Conv2dSame" or padding == "same":
        return "same"
    padding = tuple(padding)
    if stride == (1, 1) and padding == tuple(k // 2 for k in kernel):
        return "same"
    return "symmetric" if any(padding) else "none"


def _convolutions(model: Any) -> list[SourceConv]:
    """Convolutions in registration (= forward) order, each with the BatchNorm registered after it.

    Recognised by their tensors, not their classes, so that stand-ins of classes a newer timm lacks
    work too: a module with a 4-d ``weight`` is a convolution, one with ``running_mean`` a BatchNorm.
    """
    convolutions: list[dict[str, Any]] = []
    for name, module in model.named_modules():
        parameters, buffers = module._parameters, module._buffers
        weight = parameters.get("weight")
        if "running_mean" in buffers and convolutions and convolutions[-1]["batchnorm"] is None and convolutions[-1]["bias"] is None:
            convolutions[-1]["batchnorm"] = BatchNorm(*(_array(t) for t in (parameters["weight"], parameters["bias"], buffers["running_mean"], buffers["running_var"])), float(module.eps))
        elif weight is not None and weight.dim() == 4:
            bias = parameters.get("bias")
            convolutions.append({
                "name": name, "weight": _array(weight), "bias": None if bias is None else _array(bias), "batchnorm": None,
                "groups": int(getattr(module, "groups", 1)), "strides": tuple(int(s) for s in getattr(module, "stride", (1, 1))),
                "padding": _padding(module),
            })
    return [SourceConv(**conv) for conv in convolutions]


def _check_padding(convolutions: list[SourceConv], path: Path, architecture: str) -> None:
    """Refuse PyTorch's padding before building anything: Keras' EfficientNet pads as TensorFlow."""
    name = _long_name(architecture)
    for conv in convolutions:
        if conv.padding != "same":
            raise ConversionError(
                f"{path}: convolution {conv.name} (stride {conv.strides[0]}) uses {conv.padding} padding, as "
                f"timm's {architecture.removeprefix('tf_')} does; Keras' {name} pads as TensorFlow's 'same', like timm's "
                f"tf_{architecture.removeprefix('tf_')} (Savchenko's models): the two cannot give the same outputs"
            )


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def _runner(model: Any, torch: Any):
    def probabilities(images: np.ndarray, classes: int) -> np.ndarray:
        with torch.no_grad():
            logits = model.eval()(torch.from_numpy(source_input(images)))
        return torch.softmax(logits[:, :classes].double(), dim=1).numpy()

    return probabilities
