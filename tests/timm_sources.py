"""Write the converter's test sources, in a process of their own: ``python tests/timm_sources.py OUT``.

timm must be imported before TensorFlow in a process (the other order crashes it), and the test
session has usually imported TensorFlow already; so the PyTorch side of the converter's tests
runs here. Into OUT it writes:

- ``sd7.pt`` (state_dict) and ``whole7.pt`` (pickled whole model) of one timm ``tf_efficientnet_b0``
  with 7 classes, and ``m8.onnx``, another with 8 classes exported as HSEmotion's files are (eval
  mode, BatchNorm folded into the convolutions). Weights random; BatchNorm statistics measured on
  random images, then randomly perturbed, so that each network's outputs depend on its input.
- ``probs7.npy``, ``probs8.npy``: their softmax on ``check_images(4, seed=99)`` (not the images the
  converter checks itself on).
- sources the converter must refuse: ``b1.pt`` (tf_efficientnet_b1), ``pytorch_padding.pt``
  (timm's efficientnet_b0, PyTorch padding), ``tiny.onnx`` (a two-layer network).
- conversions through :func:`feph_finetune.convert.convert` (torch imported first, as the command
  line does): ``sd7.weights.h5`` and ``whole7.keras``; ``refusals.json`` holds the messages of the
  refused ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import timm  # before TensorFlow: see above
import torch

from feph_finetune.convert import ConversionError, check_images, convert
from feph_finetune.convert.source import source_input

IMAGE_SEED = 99


def random_b0(classes: int, seed: int, architecture: str = "tf_efficientnet_b0") -> torch.nn.Module:
    """A timm EfficientNet with random weights, its BatchNorm statistics randomised around real ones."""
    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=classes)
    generator = torch.Generator().manual_seed(seed)
    norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None  # cumulative average over the calibration batch
        norm.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(source_input(check_images(8, seed=seed + 100))))
        model.eval()
        for norm in norms:
            n = norm.num_features
            norm.running_mean.add_(torch.randn(n, generator=generator) * 0.1 * norm.running_var.sqrt())
            norm.running_var.mul_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            norm.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            norm.bias.copy_(torch.randn(n, generator=generator) * 0.1)
        logits = model(torch.from_numpy(source_input(check_images(8, seed=seed + 200))))
        scale = 2.0 / float((logits - logits.mean(1, keepdim=True)).std())  # spread, not saturated, probabilities
        model.classifier.weight.mul_(scale)
        model.classifier.bias.mul_(scale)
    return model


def probabilities(model: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(source_input(check_images(4, seed=IMAGE_SEED)))).double(), dim=1).numpy()


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), dynamo=False, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, do_constant_folding=True)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    b0_7 = random_b0(7, seed=0)
    torch.save(b0_7.state_dict(), out / "sd7.pt")
    torch.save(b0_7, out / "whole7.pt")
    np.save(out / "probs7.npy", probabilities(b0_7))
    b0_8 = random_b0(8, seed=1)
    export_onnx(b0_8, out / "m8.onnx")
    np.save(out / "probs8.npy", probabilities(b0_8))

    torch.save(timm.create_model("tf_efficientnet_b1", pretrained=False, num_classes=7).state_dict(), out / "b1.pt")
    torch.save(timm.create_model("efficientnet_b0", pretrained=False, num_classes=7).eval(), out / "pytorch_padding.pt")
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 7)).eval()
    export_onnx(tiny, out / "tiny.onnx")

    convert(out / "sd7.pt", out / "sd7.weights.h5")
    convert(out / "whole7.pt", out / "whole7.keras", trust_pickle=True)
    refusals = {}
    for name, trust in (("b1.pt", False), ("pytorch_padding.pt", True)):
        try:
            convert(out / name, out / f"{name}.keras", trust_pickle=trust)
            refusals[name] = None
        except ConversionError as error:
            refusals[name] = str(error)
    (out / "refusals.json").write_text(json.dumps(refusals, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
