"""The numeric flags of the commands outside the matrix, each declared once as an :class:`Option`.

``predict``, ``synth`` and ``data`` take numbers that no TOML holds; their ranges are declared
here with the same :class:`~feph_finetune.config.options.Option` the settings use, so that their
``--help`` and their checks come from one place. argparse only turns the text into an ``int``
(refusing ``1e20`` or ``x`` itself; :func:`~feph_finetune.config.options.integer`: digits past
Python's limit too); :func:`flag_problems_of` then checks every declared flag in
one pass, so that a command reports all its bad numbers at once, each named ``--FLAG VALUE``,
before any work (exit 2).

The upper bounds are there so that an absurd value is refused before it allocates or loops; each
says why it is where it is. No TensorFlow here.
"""

from __future__ import annotations

import argparse
from typing import Mapping

from feph_finetune.config.options import Option, describe, integer
from feph_finetune.config.reading import Problem, flag_problems
from feph_finetune.config.schema import DATASET_OPTIONS, SEED_MAXIMUM, TOP_LEVEL_OPTIONS

#: Most images ``synth`` (and the demo) draws: about 10 ms and 10 KB each, so a million is hours
#: and gigabytes; more is a typo.
SYNTH_IMAGES_MAXIMUM = 1_000_000


def _odd(frames: int) -> str | None:
    return None if frames % 2 else f"must be odd (the window is centred on each frame), not {frames}"


#: ``predict``. ``--batch-size``: the frames of one model call, as float32 after the batch steps:
#: 4,096 frames of 224 px take 2.5 GB before the model's own activations (and a short batch is
#: padded only to the next power of two, :meth:`feph_finetune.predict.apply.Predictor.probabilities`).
#: ``--every``: a million frames is 9 hours of 30 fps video. ``--smooth``: a window of 10,001
#: frames is over 5 minutes at 30 fps.
PREDICT_NUMBERS: dict[str, Option] = {
    "--every": Option(1, "keep every K-th frame of videos and folders: 0, K, 2K...", minimum=1, maximum=1_000_000),
    "--smooth": Option(1, "add smooth_<class> columns: centred moving average over N frames (N odd), cut short at the ends", minimum=1, maximum=10_001, check=_odd),
    "--batch-size": Option(32, "frames per model call", minimum=1, maximum=4096),
}

#: ``synth``. Seeds feed NumPy's generator, which takes 0 to 2**32 - 1.
SYNTH_NUMBERS: dict[str, Option] = {
    "--images": Option(300, "number of valid images", minimum=1, maximum=SYNTH_IMAGES_MAXIMUM),
    "--seed": Option(0, "random seed", minimum=0, maximum=SEED_MAXIMUM),
}

#: ``data``: the settings of a TOML that its flags set, with their declarations.
DATA_NUMBERS: dict[str, Option] = {
    "--folds": DATASET_OPTIONS["folds"],
    "--seed": TOP_LEVEL_OPTIONS["seed"],
    "--test-fraction": DATASET_OPTIONS["test_fraction"],
}


def add_flag(parser: argparse.ArgumentParser, flag: str, declarations: Mapping[str, Option], metavar: str | None = None) -> None:
    """Add ``flag`` as declared: parsed as its default's type, its default, and a help that ends
    with what it accepts (``integer, >= 1, <= 4096``)."""
    option = declarations[flag]
    parse = float if isinstance(option.default, float) else integer
    parser.add_argument(flag, type=parse, default=option.default, metavar=metavar, help=f"{option.help} ({describe(option)}; default {option.default})")


def flag_problems_of(args: argparse.Namespace, declarations: Mapping[str, Option]) -> list[Problem]:
    """Every declared flag of ``args`` checked against its declaration, in one pass."""
    return flag_problems([(flag, getattr(args, flag.lstrip("-").replace("-", "_")), option) for flag, option in declarations.items()])
