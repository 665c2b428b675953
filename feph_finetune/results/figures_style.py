"""The settings every figure is drawn under, whatever the user's matplotlibrc, style or plugins say.

matplotlib reads a ``matplotlibrc`` at import (``$MPLCONFIGDIR``, ``~/.config/matplotlib``) and
any imported code (a plugin) may change ``matplotlib.rcParams``. The report's figures and
``predict --plot`` are the project's, laid out for its own sizes: ``text.usetex`` without LaTeX
installed stopped every figure with a traceback, a font family that is not installed printed a
``findfont`` line for every text drawn (thousands), a ``font.size`` of 200 left the axes no room.
So they are drawn inside :func:`project_style`: matplotlib's shipped defaults, every text drawn
as plain text (no mathtext), fonts that have the labels' characters (:func:`fonts_for`), and
whatever matplotlib logs or warns while drawing folded into one warning line.

Plain text: every text in these figures (labels, c/v labels, class names, stage names, titles)
comes from data, and matplotlib reads a text holding two ``$`` as mathtext: ``lr $10^{-3$`` (a
typo) stopped every figure with a traceback, ``lr $10^{-3}$`` was drawn as math, unlike the tables.
``text.parse_math`` off is the default of every ``Text`` made inside the context (titles, tick
labels, legends), so no call site needs to escape ``$``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Iterable, Iterator

from feph_finetune.printable import printable

#: Fonts that draw a placeholder box for every character: never a fallback for missing glyphs.
_PLACEHOLDER_FONTS = ("Last Resort",)
#: The most characters of matplotlib's first message that the folded warning line quotes.
_QUOTED_MESSAGE = 160


@contextmanager
def project_style(texts: Iterable[str], warn: Callable[[str], None]) -> Iterator[None]:
    """Draw and save figures inside this context so that they look the same on every machine.

    Within it ``matplotlib.rcParams`` are matplotlib's shipped defaults (``rcdefaults``: the
    user's matplotlibrc, a style or a plugin's changes do not apply; restored on leaving), every
    text plain (``$`` is a dollar sign, not mathtext), with fallback fonts for the characters of
    ``texts`` (:func:`fonts_for`). The messages matplotlib logs (its ``findfont`` lines) and the
    Python warnings raised inside become one ``warn`` line, counting them and quoting the first.
    """
    import matplotlib

    with _folded_messages(warn), matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams["text.parse_math"] = False  # names from data are text, never mathtext
        with fonts_for(texts, warn):
            yield


class _Collected(logging.Handler):
    """The messages of the log records it receives, in order."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _folded_messages(warn: Callable[[str], None]) -> Iterator[None]:
    """Within the block, matplotlib's log records (warnings and worse, kept from the root
    logger's handlers and Python's last-resort stderr handler) and every Python warning raised
    are collected; after it, one ``warn`` line counts them and quotes the first."""
    import warnings

    logger, handler = logging.getLogger("matplotlib"), _Collected()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as raised:
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    messages = handler.messages + [str(warning.message) for warning in raised]
    if messages:
        first = printable(messages[0])
        first = first if len(first) <= _QUOTED_MESSAGE else first[: _QUOTED_MESSAGE - 1] + "…"
        warn(f"figures: matplotlib reported {len(messages)} problem(s) while drawing (the figures are written); the first: {first}")


@contextmanager
def fonts_for(texts: Iterable[str], warn: Callable[[str], None]) -> Iterator[None]:
    """Draw inside this context so that every character of ``texts`` has a glyph where a font has it.

    The characters the default font (DejaVu Sans) lacks, CJK labels for instance, are looked up
    in the fonts matplotlib finds on the system (``font_manager``), and the fonts that have them
    are added to ``font.family`` as fallbacks (matplotlib takes each glyph from the first font in
    the list that has it). Characters no font has get one ``warn`` line naming them, instead of
    matplotlib's "Glyph ... missing" warning for every label that holds one; they are drawn as boxes.
    """
    import warnings

    import matplotlib
    from matplotlib import font_manager

    family = list(matplotlib.rcParams["font.family"])
    wanted = dict.fromkeys(char for text in texts for char in str(text) if char.isprintable() and not char.isspace())
    missing = wanted.keys() - _charmap(font_manager.findfont(font_manager.FontProperties(family=family)))
    fallbacks: list[str] = []
    for entry in font_manager.fontManager.ttflist if missing else []:
        if entry.name.startswith(_PLACEHOLDER_FONTS) or entry.name in fallbacks or entry.style != "normal":
            continue
        covered = missing & _charmap(entry.fname)
        if covered:
            fallbacks.append(entry.name)
            missing -= covered
        if not missing:
            break
    if missing:
        shown = "".join([char for char in wanted if char in missing][:12]) + ("…" if len(missing) > 12 else "")
        warn(f"figures: no installed font has the characters {shown} of the labels; they are drawn as boxes "
             "(install a font that has them, e.g. Noto Sans CJK for Chinese, Japanese, Korean)")
    with matplotlib.rc_context({"font.family": family + fallbacks}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        yield


@lru_cache(maxsize=None)
def _charmap(path: str) -> frozenset[str]:
    """The characters a font file has glyphs for (its first face, for a collection)."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(chr(code) for code in FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file FreeType cannot read has no glyphs for us
        return frozenset()
