"""Read a PyTorch EfficientNet-B0: a state_dict of timm's ``tf_efficientnet_b0``, or a whole pickled model.

Savchenko's ``enet_b0_7.pt`` is a whole timm 0.4.5 ``tf_efficientnet_b0_ns`` (the same network as
``tf_efficientnet_b0``) pickled with ``torch.save(model)``. Unpickling such a file runs code named
in it, so it is done only when the user says the file is trusted (``trust_pickle``); a state_dict
holds only tensors and loads with ``weights_only=True``. Classes a newer timm moved or removed
(``timm.models.layers`` became ``timm.layers``) are looked up under their new names, and where
there is none replaced by empty stand-ins: the weights are still read, that code is never run.

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

from feph_finetune.convert.source import BatchNorm, ConversionError, SourceConv, SourceModel, missing_package, source_input

#: The timm architecture of Savchenko's EfficientNet-B0 models (``tf_efficientnet_b0_ns`` in
#: timm 0.4.5 is this network with other pretrained weights).
TIMM_ARCHITECTURE = "tf_efficientnet_b0"

#: Modules older timm versions had, under their current names.
TIMM_RENAMES = (("timm.models.layers", "timm.layers"), ("timm.models.efficientnet_blocks", "timm.models._efficientnet_blocks"),
                ("timm.models.efficientnet_builder", "timm.models._efficientnet_builder"))


def read_torch(path: Path, trust_pickle: bool, report=print) -> SourceModel:
    """The convolutions, classifier and a runner of a ``.pt``/``.pth`` file; ConversionError if refused."""
    torch, timm = _import_torch()
    loaded, stand_ins = _load(path, trust_pickle, torch)
    if isinstance(loaded, torch.nn.Module):
        pickled, state = loaded, loaded.state_dict()
    elif isinstance(loaded, Mapping):
        pickled, state = None, _state_dict(loaded, path, torch)
    else:
        raise ConversionError(f"{path}: holds a {type(loaded).__name__}, neither a state_dict nor a PyTorch model")
    if "classifier.weight" not in state:
        raise ConversionError(f"{path}: no classifier.weight: not a timm EfficientNet classifier ({_first_keys(state)})")
    classes = int(state["classifier.weight"].shape[0])
    reference = timm.create_model(TIMM_ARCHITECTURE, pretrained=False, num_classes=classes).eval()
    _compare(state, reference.state_dict(), path)
    reference.load_state_dict(state, strict=False)
    notes = []
    if stand_ins:
        notes.append(f"not in timm {timm.__version__} (weights read, code not run): {', '.join(sorted(stand_ins))}")
    if pickled is None:
        notes.append(f"a state_dict does not record padding or BatchNorm epsilon: taken to be timm {TIMM_ARCHITECTURE}'s")
        model = reference
    else:
        model = _runnable(pickled, reference, torch, notes)
    convolutions = _convolutions(pickled if pickled is not None else reference)
    _check_padding(convolutions, path)
    for note in notes:
        report(f"note: {note}")
    return SourceModel(
        kind="pickled PyTorch model" if pickled is not None else "PyTorch state_dict",
        convolutions=convolutions,
        classifier_weight=state["classifier.weight"].detach().cpu().numpy().astype(np.float32),
        classifier_bias=state["classifier.bias"].detach().cpu().numpy().astype(np.float32),
        probabilities=_runner(model, torch),
        notes=notes,
    )


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
        raise ConversionError(f"{path}: not a readable PyTorch file ({type(error).__name__}: {error})") from error
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


def _compare(state: Mapping, expected: Mapping, path: Path) -> None:
    """Refuse a state_dict that is not timm's tf_efficientnet_b0, naming the modules that differ."""
    keys = {key for key in state if not key.endswith("num_batches_tracked")}
    wanted = {key for key in expected if not key.endswith("num_batches_tracked")}
    problems = []
    extra = sorted({_module_of(key) for key in keys - wanted})
    missing = sorted({_module_of(key) for key in wanted - keys})
    if extra:
        problems.append(f"it has {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}, which B0 lacks")
    if missing:
        problems.append(f"it lacks {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    shapes = [key for key in sorted(keys & wanted) if tuple(state[key].shape) != tuple(expected[key].shape)]
    if shapes:
        problems.append("shapes differ: " + "; ".join(f"{key} {tuple(state[key].shape)}, B0 {tuple(expected[key].shape)}" for key in shapes[:4]))
    if problems:
        raise ConversionError(f"{path}: not an EfficientNet-B0 (timm {TIMM_ARCHITECTURE}): " + "; ".join(problems))


def _runnable(pickled: Any, reference: Any, torch: Any, notes: list[str]) -> Any:
    """The pickled model itself when its own code runs here; else timm's network with its weights, said so."""
    probe = torch.zeros(1, 3, 224, 224)
    try:
        with torch.no_grad():
            pickled.eval()(probe)
        return pickled
    except Exception as error:
        notes.append(
            f"the pickled model's own forward fails with this timm ({type(error).__name__}: {error}); the conversion "
            f"is verified against timm's {TIMM_ARCHITECTURE} carrying the pickled weights instead"
        )
        return reference


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


def _check_padding(convolutions: list[SourceConv], path: Path) -> None:
    """Refuse PyTorch's padding before building anything: Keras' EfficientNet-B0 pads as TensorFlow."""
    for conv in convolutions:
        if conv.padding != "same":
            raise ConversionError(
                f"{path}: convolution {conv.name} (stride {conv.strides[0]}) uses {conv.padding} padding, as "
                f"timm's efficientnet_b0 does; Keras' EfficientNet-B0 pads as TensorFlow's 'same', like timm's "
                f"{TIMM_ARCHITECTURE} (Savchenko's models): the two cannot give the same outputs"
            )


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def _runner(model: Any, torch: Any):
    def probabilities(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model.eval()(torch.from_numpy(source_input(images)))
        return torch.softmax(logits.double(), dim=1).numpy()

    return probabilities
