"""Which files of a folder of frames are frames, and which frame number each one is.

- A name starting with ``.`` is hidden and never a frame: macOS writes an AppleDouble companion
  ``._fn000000.png`` (4 KB of metadata, no image) beside each file it copies to a foreign disk,
  and ``.DS_Store`` into every folder; sorted first, they would shift every real frame. They are
  skipped and counted, as other tools skip them.
- Where every frame's name carries a number in the same place (``fn000019.png``: the same text
  before and after the last run of digits, each number once), the number is the frame's: frame
  ``(number - first) / step``, ``step`` the numbers' common step (1, or 5 for every 5th frame
  extracted). A file missing from the sequence is then a gap (:func:`gap_problems`), and the later
  frames keep their numbers, as a video's do. Other names number the frames by their position.
"""

from __future__ import annotations

import math
import re
from typing import Iterator

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


def gap_problems(name: str, numbers: list[int], files: list[str]) -> Iterator[tuple[int, str]]:
    """``(frame, problem)`` for each place where the frame numbers skip (files missing): the first
    :data:`~feph_finetune.printable.NAMED_AT_MOST` places named, the rest counted in one line."""
    places, unnamed, last = 0, 0, numbers[-1] if numbers else 0
    for (before, earlier), (after, later) in zip(zip(numbers, files), zip(numbers[1:], files[1:])):
        if after == before + 1:
            continue
        places += 1
        first, missing = before + 1, after - before - 1
        if places <= NAMED_AT_MOST:
            which = f"frame {first} has" if missing == 1 else f"frames {first}-{after - 1} have"
            yield first, (f"{name}: {which} no file (the file names number the frames, and none is numbered between {earlier} and {later}): "
                          "left out; later frames keep their numbers")
        else:
            unnamed += missing
    if unnamed:
        yield last, f"{name}: {counted(unnamed, 'more frame')} in {counted(places - NAMED_AT_MOST, 'more place')} have no file (left out)"
