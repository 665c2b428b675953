"""Write sources laid out as Savchenko's real files, in a process of their own: ``python tests/timm_savchenko.py OUT``.

timm must be imported before TensorFlow (see ``tests/timm_sources.py``, whose random networks
this reuses). Savchenko's training notebook replaces timm's classifier by
``nn.Sequential(nn.Linear(features, n))`` before ``torch.save(model)`` (SPEC section 3), so:

- ``seq7.pt``: a whole pickled ``tf_efficientnet_b0`` with ``Sequential(Linear(1280, 7))``;
  ``seq8_sd.pt``: the state_dict of another with ``Sequential(Dropout, Linear(1280, 8))``
  (keys ``classifier.1.*``); ``b2_8.pt``: a whole pickled ``tf_efficientnet_b2`` with
  ``Sequential(Linear(1408, 8))``, as ``enet_b2_8.pt``.
- ``mtl10.onnx``: a ``tf_efficientnet_b0`` whose classifier has 10 outputs (8 expression logits,
  then valence and arousal, as ``enet_b0_8_va_mtl``), exported as HSEmotion's ONNX files are.
- ``pytorch_sd.pt``: the state_dict of timm's ``efficientnet_b0`` (PyTorch padding, BatchNorm
  epsilon 1e-5): shapes identical to the ``tf_`` network's, outputs not.
- ``<name>.probs.npy``: each source's softmax (over the 8 expression logits for ``mtl10``) on
  ``check_images(4, seed=99, size)`` at its variant's side.
- conversions of the PyTorch files (torch imported first, as the command line does):
  ``seq7.keras``, ``seq8_sd.weights.h5``, ``b2_8.keras``, ``pytorch_sd_default.keras``
  (converted as the default ``tf_efficientnet_b0``); refused: ``pytorch_sd.pt`` as
  ``--architecture efficientnet_b0`` (its padding), ``seq8_sd.pt`` as ``tf_efficientnet_b2`` (its
  shapes). ``log.json`` holds each conversion's report lines, or its error message.

Seeds: a random EfficientNet with perturbed BatchNorm amplifies float32 round-off, so for some
seeds even a correct conversion differs from PyTorch by up to 2e-4 (seen for seed 11 and 14),
above the converter's 1e-4. The seeds here give 7e-6 to 4e-5; a wrong layout (a classifier, a
padding or an epsilon) gives differences of 1e-2 and more, which the tests would still catch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import timm  # noqa: F401  (before TensorFlow: see above)
import torch

from timm_sources import IMAGE_SEED, export_onnx, random_b0
from feph_finetune.convert import ConversionError, check_images, convert
from feph_finetune.convert.source import source_input


def sequential(model: torch.nn.Module, dropout: bool = False) -> torch.nn.Module:
    """Savchenko's classifier: the trained Linear inside an ``nn.Sequential`` (after a Dropout)."""
    layers = [torch.nn.Dropout(0.2)] if dropout else []
    model.classifier = torch.nn.Sequential(*layers, model.classifier)
    return model.eval()


def probabilities(model: torch.nn.Module, size: int, classes: int) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.from_numpy(source_input(check_images(4, seed=IMAGE_SEED, size=size))))
    return torch.softmax(logits[:, :classes].double(), dim=1).numpy()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    seq7 = sequential(random_b0(7, seed=10))
    torch.save(seq7, out / "seq7.pt")
    np.save(out / "seq7.probs.npy", probabilities(seq7, 224, 7))
    seq8 = sequential(random_b0(8, seed=1), dropout=True)
    torch.save(seq8.state_dict(), out / "seq8_sd.pt")
    np.save(out / "seq8_sd.probs.npy", probabilities(seq8, 224, 8))
    b2 = sequential(random_b0(8, seed=12, architecture="tf_efficientnet_b2"))
    torch.save(b2, out / "b2_8.pt")
    np.save(out / "b2_8.probs.npy", probabilities(b2, 260, 8))
    mtl = random_b0(10, seed=13)
    export_onnx(mtl, out / "mtl10.onnx")
    np.save(out / "mtl10.probs.npy", probabilities(mtl, 224, 8))
    pytorch = random_b0(7, seed=0, architecture="efficientnet_b0")
    torch.save(pytorch.state_dict(), out / "pytorch_sd.pt")
    np.save(out / "pytorch_sd.probs.npy", probabilities(pytorch, 224, 7))

    log = {}
    for name, source, target, kwargs in (
        ("seq7", "seq7.pt", "seq7.keras", {"trust_pickle": True}),
        ("seq8_sd", "seq8_sd.pt", "seq8_sd.weights.h5", {}),
        ("b2_8", "b2_8.pt", "b2_8.keras", {"trust_pickle": True}),
        ("pytorch_sd_default", "pytorch_sd.pt", "pytorch_sd_default.keras", {}),
        ("pytorch_sd_named", "pytorch_sd.pt", "pytorch_sd_named.keras", {"architecture": "efficientnet_b0"}),
        ("b0_weights_as_b2", "seq8_sd.pt", "b0_weights_as_b2.keras", {"architecture": "tf_efficientnet_b2"}),
    ):
        lines: list[str] = []
        try:
            convert(out / source, out / target, report=lines.append, **kwargs)
            log[name] = {"lines": lines, "error": None}
        except ConversionError as error:
            log[name] = {"lines": lines, "error": str(error)}
    (out / "log.json").write_text(json.dumps(log, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
