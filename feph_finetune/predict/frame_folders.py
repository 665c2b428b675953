"""Which files of a folder of frames are frames, and which frame number each one is.

- A name starting with ``.`` is hidden and never a frame: macOS writes an AppleDouble companion
  ``._fn000000.png`` (4 KB of metadata, no image) beside each file it copies to a foreign disk,
  and ``.DS_Store`` into every folder; sorted first, they would shift every real frame. They are
  skipped and counted, as other tools skip them.
- Where every frame's name carries a number in the same place (``fn000019.png``: the same text
  before and after the last run of digits, each number once), the number is the frame's: frame
  ``(number - first) / step``, ``step`` the numbers' common step (1, or 5 for every 5th frame
  extracted). A file missing from the sequence is then a gap, said (:func:`gaps`), and the later
  frames keep their numbers, as a video's do. Other names number the frames by their position.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from feph_finetune.printable import NAMED_AT_MOST, counted

#: A name's text before its last run of digits, the digits, and the text after them.
_NUMBERED_NAME = re.compile(r"^(.*?)(\d+)(\D*)$", re.DOTALL)


def is_hidden(name: str) -> bool:
    """Whether a folder entry is hidden (``.DS_Store``, macOS's ``._`` companions): never a frame."""
    return name.startswith(".")


def frame_numbers(names: list[str]) -> list[int] | None:
    """Each frame's number from its name (module docstring), for names in natural order; None when
    the names do not number the frames (then the position does)."""
    matches = [_NUMBERED_NAME.match(name) for name in names]
    if len(names) < 2 or not all(matches) or len({(match[1], match[3]) for match in matches}) != 1:
        return None
    values = [int(match[2]) for match in matches]
    if len(set(values)) != len(values):  # fn1.png beside fn01.png: the numbers name no one frame
        return None
    step = math.gcd(*(later - earlier for earlier, later in zip(values, values[1:])))
    return [(value - values[0]) // step for value in values]


#: Numbers missing from a folder's names, per file present, up to which they are files lost (a
#: problem per place); beyond it the files are a sample of a video's frames (FePh keeps some
#: frames of each video), said in one note. Frames are numbered by their names either way.
SAMPLED_BEYOND = 1.0


class Gap(NamedTuple):
    """Frames missing from a folder's numbered names: said before ``frame`` as a problem, or as a note."""

    frame: int
    text: str
    problem: bool


def gaps(name: str, numbers: list[int], files: list[str]) -> list[Gap]:
    """What to say where the frame numbers skip: a problem per place (the first
    :data:`~feph_finetune.printable.NAMED_AT_MOST` named, the rest counted in one line), or one
    note for a sample of frames (:data:`SAMPLED_BEYOND`)."""
    missing = numbers[-1] + 1 - len(numbers) if numbers else 0
    if missing == 0:
        return []
    if missing > SAMPLED_BEYOND * len(numbers):
        return [Gap(0, f"{name}: the file names number the frames, and {missing} of the numbers between {files[0]} and {files[-1]} have no file "
                       f"(a sample of a video's frames): frames are numbered by their names, {files[0]} as frame 0", problem=False)]
    said, places, unnamed = [], 0, 0
    for (before, earlier), (after, later) in zip(zip(numbers, files), zip(numbers[1:], files[1:])):
        if after == before + 1:
            continue
        places += 1
        if places <= NAMED_AT_MOST:
            which = f"frame {before + 1} has" if after == before + 2 else f"frames {before + 1}-{after - 1} have"
            said.append(Gap(before + 1, f"{name}: {which} no file (the file names number the frames, and none is numbered between {earlier} and {later}): "
                                        "left out; later frames keep their numbers", problem=True))
        else:
            unnamed += after - before - 1
    if unnamed:
        said.append(Gap(numbers[-1], f"{name}: {counted(unnamed, 'more frame')} in {counted(places - NAMED_AT_MOST, 'more place')} have no file (left out)", problem=True))
    return said
