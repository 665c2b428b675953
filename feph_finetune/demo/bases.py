"""The demo's base models shipped with the package, and the command that makes them.

Pre-training a base from scratch amplifies the last bits of float32 arithmetic, which differ
between CPU kernel paths (Eigen or oneDNN, AVX2 or AVX-512): the same recipe gave a MobileNet
base that classified 41%, 17% or 13% of the held-out generic faces on three kernel paths (chance
14%). So the demo does not pre-train when its settings are those the shipped bases were made
with: it installs them (:func:`install_shipped_base`), which gives the same weights, bit for bit,
on every machine, and skips the generic faces and about five minutes of pre-training.

Files (package data, ``feph_finetune/demo/data/``): ``demo_bases.json`` records, per backbone, the
settings the base was made with (:func:`base_settings`; the demo uses the base only when its own
are equal), its accuracy on the held-out generic faces, the SHA-256 of its weights file, and how
it was made (command, kernel path, threads, library versions); ``demo_<backbone>_base.npz``
holds the weights, in ``model.get_weights()`` order as ``w000``, ``w001``, ..., stored as
float16 to halve the package's size (EfficientNet-B0's 4 million parameters take 8 MB so).
Loading widens them to float32, which is exact, so the installed model is the same everywhere;
its held-out accuracy is measured on the float16-rounded weights, as shipped.

Make them again (about 5 minutes on 2 cores; writes the generic faces to the demo's cache)::

    python -m feph_finetune.demo.bases experiments.toml --set demo.defaults.threads=0

The ``--set`` options are those of the main command; the recorded ``made_with`` says what the
shipped files were made with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from feph_finetune.demo.protocol import PretrainingFailed
from feph_finetune.results.store import atomic_path

#: Where the shipped bases live: package data of ``feph_finetune``.
SHIPPED_DIR = Path(__file__).resolve().parent / "data"
RECORD = "demo_bases.json"

#: Part of the settings a base is matched on: raise it when the pre-training recipe changes
#: (:func:`feph_finetune.demo.protocol.pretrain_base_model`), so that old shipped files are not used.
BASE_RECIPE = 2

COMMAND = "python -m feph_finetune.demo.bases experiments.toml --set demo.defaults.threads=0"


class ShippedBaseError(PretrainingFailed):
    """A shipped base that the settings call for is missing or damaged (a broken installation)."""


def base_settings(settings: dict[str, Any], backbone: str) -> dict[str, Any]:
    """What a demo base of ``backbone`` depends on: the generic faces (count, seed), the input
    size, the pre-training seed, epochs and recipe, and MobileNet's width. Not the threads, the
    FePh-like images or the folds: those change the runs, not the base."""
    keys = {
        "backbone": backbone,
        "input_size": settings["input_size"],
        "generic_images": settings["generic_images"],
        "seed": settings["seed"],
        "base_epochs": settings["base_epochs"][backbone],
        "recipe": BASE_RECIPE,
    }
    if backbone == "mobilenet":
        keys["alpha"] = settings["alpha"]
    return keys


def shipped_records(folder: Path = SHIPPED_DIR) -> dict[str, Any]:
    """The shipped bases' records by backbone; ``{}`` when none are shipped."""
    path = folder / RECORD
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def shipped_base(settings: dict[str, Any], backbone: str, folder: Path = SHIPPED_DIR) -> dict[str, Any] | None:
    """The record of the shipped base made with these settings, or None (the demo pre-trains)."""
    record = shipped_records(folder).get(backbone)
    if record is None or record["settings"] != base_settings(settings, backbone):
        return None
    return record


def _weights_path(record: dict[str, Any], folder: Path) -> Path:
    return folder / record["weights"]


def read_shipped_weights(record: dict[str, Any], folder: Path = SHIPPED_DIR) -> list[np.ndarray]:
    """The shipped weights as float32 arrays, checked against the recorded SHA-256."""
    path = _weights_path(record, folder)
    if not path.is_file():
        raise ShippedBaseError(f"demo: the shipped base {path} is missing; reinstall feph_finetune, or make it: {COMMAND}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != record["sha256"]:
        raise ShippedBaseError(f"demo: the shipped base {path} is damaged (SHA-256 {digest[:12]}, recorded {record['sha256'][:12]}); reinstall feph_finetune")
    with np.load(path) as stored:
        return [stored[f"w{index:03d}"].astype(np.float32) for index in range(len(stored.files))]


def install_shipped_base(backbone: str, settings: dict[str, Any], record: dict[str, Any], path: Path, folder: Path = SHIPPED_DIR) -> None:
    """Write the shipped base of ``backbone`` as a whole Keras model at ``path`` (what the runs
    load), with its record beside it (``.json``, as a pre-trained base's). Runs in a child
    process of the demo: TensorFlow stays out of the command's own process."""
    from feph_finetune.demo.protocol import base_architecture, save_base

    weights = read_shipped_weights(record, folder)
    model = base_architecture(backbone, settings)
    model.set_weights(weights)
    save_base(model, path, {**record, "shipped": True})


def export_base(model_path: Path, backbone: str, settings: dict[str, Any], generic: Path, folder: Path) -> dict[str, Any]:
    """Round a pre-trained base's weights to float16, measure them on the held-out generic faces
    and write them to ``folder`` with their record; returns the record."""
    import keras
    import tensorflow as tf

    from feph_finetune.demo.protocol import base_model_input, generic_faces, held_out_mask

    model = keras.models.load_model(model_path)
    pretrained = json.loads(model_path.with_suffix(".json").read_text(encoding="utf-8"))
    weights = [weight.astype(np.float16) for weight in model.get_weights()]
    model.set_weights([weight.astype(np.float32) for weight in weights])
    images, labels = generic_faces(generic, settings["input_size"])
    held_out = held_out_mask(len(images), settings["seed"])
    predicted = model.predict(base_model_input(backbone, images[held_out]), batch_size=64, verbose=0).argmax(axis=1)
    name = f"demo_{backbone}_base.npz"
    path = folder / name
    with atomic_path(path) as temporary:
        np.savez_compressed(temporary, **{f"w{index:03d}": weight for index, weight in enumerate(weights)})
    return {
        "settings": base_settings(settings, backbone),
        "held_out_accuracy": float(np.mean(predicted == labels[held_out])),
        "held_out_images": int(held_out.sum()),
        "float32_held_out_accuracy": pretrained["held_out_accuracy"],
        "pretraining_seconds": round(pretrained["seconds"], 1),
        "weights": name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "made_with": {
            "command": COMMAND,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)"),
            "threads": pretrained["threads"],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
        },
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_shipped_bases(config: Path, overrides: list[str], folder: Path, console) -> dict[str, Any]:
    """Pre-train both demo bases at the TOML's ``[demo]`` settings (as the demo does, side by
    side in child processes, reusing bases already pre-trained in the demo's cache), export them
    to ``folder`` and write the record there; returns it."""
    from feph_finetune.config.reading import read_config
    from feph_finetune.demo.protocol import DEMO_BACKBONES, BasePretraining, demo_paths, demo_settings, write_demo_data

    settings = demo_settings(read_config(config, overrides))
    paths = demo_paths(settings, shipped=False)
    write_demo_data(settings, paths, console)
    missing = [name for name in DEMO_BACKBONES if not paths.base_models[name].is_file()]
    with BasePretraining(missing, settings, paths, console) as pretraining:
        while pretraining.running:
            pretraining.next_trained()
    folder.mkdir(parents=True, exist_ok=True)
    records = {name: export_base(paths.base_models[name], name, settings, paths.generic, folder) for name in DEMO_BACKBONES}
    with atomic_path(folder / RECORD) as temporary:
        temporary.write_text(json.dumps(records, indent=2), encoding="utf-8")
    for name, record in records.items():
        console.log(f"{name}: {record['held_out_accuracy']:.1%} of {record['held_out_images']} held-out generic faces as shipped (float16), {record['float32_held_out_accuracy']:.1%} in float32")
    return records


def main(argv: list[str] | None = None) -> int:
    from feph_finetune.cli import ArgumentParser, guarded, path_argument
    from feph_finetune.printable import EscapingConsole

    parser = ArgumentParser(prog="python -m feph_finetune.demo.bases", description="Pre-train the demo's base models and write them as the package's shipped bases.")
    parser.add_argument("config", type=path_argument, metavar="EXPERIMENTS.toml", help="the experiment file whose [demo] settings to use")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a dotted TOML key, as in the main command")
    parser.add_argument("--to", type=path_argument, default=SHIPPED_DIR, help=f"folder to write (default: the package's {SHIPPED_DIR})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return guarded(_make_command, args, EscapingConsole(), EscapingConsole(stderr=True))


def _make_command(args: argparse.Namespace, console) -> int:
    make_shipped_bases(args.config, args.overrides, args.to, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
