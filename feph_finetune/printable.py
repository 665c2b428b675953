"""Text from data (class names, labels, experiment, file and folder names, command-line values)
made safe to show.

Names come from folder names, CSV cells, TOML keys, command-line arguments and hand-edited
``result.json`` files, so they may hold any character. Some act instead of showing: an ESC (or a
C1 CSI, ``\\x9b``) starts a terminal escape sequence (colours, a moved cursor, a changed title, a
cleared screen); ``\\r`` returns to the start of the line and lets the rest overwrite it; ``\\n``
starts a new line, so a file name ``a\\nall runs done`` would print a line the program never wrote;
a right-to-left override (U+202E) makes the text after it display reversed, so a name can look
like another ("Trojan Source", CVE-2021-42574); a zero-width character hides a difference between
two names.

:func:`printable` writes each such character as Python writes it in a string literal (``\\x1b``,
``\\r``, ``\\n``, ``\\u202e``) and leaves every other character, of any script, as it is. Escaped:

- control characters (Unicode category ``Cc``: C0, DEL, C1), ``\\t`` and ``\\n`` included;
- the line and paragraph separators U+2028 and U+2029 (categories ``Zl``, ``Zp``), which end a
  line in editors and some terminals;
- format characters (category ``Cf``): all bidirectional controls (U+061C, U+200E, U+200F,
  U+202A-U+202E, U+2066-U+2069), zero-width space U+200B, word joiner U+2060, byte order mark
  U+FEFF, soft hyphen U+00AD, tag characters (which can carry a hidden ASCII text; the price:
  a subdivision flag such as Scotland's shows its tags escaped); all invisible, none needed in a
  name. One exception:
  the zero-width joiner U+200D and non-joiner U+200C are kept *between two visible non-ASCII
  characters*, where they do their work: emoji sequences (👩‍💻 is 👩 U+200D 💻, measured as one
  picture), Indic conjuncts, Persian words. Anywhere else (next to ASCII, a space, another
  escaped character, or at either end) they join nothing and could only hide a difference, so
  they are escaped;
- lone surrogates (category ``Cs``): the bytes of a file name that is not valid UTF-8 (Python
  decodes them as U+DC80-U+DCFF), which a UTF-8 terminal cannot even be sent; each is shown
  as the byte it stands for (``\\xff``), as ``ls -b`` shows it, so the name can be found.

Where the rule is applied: once, at the output, rather than at each place a value is put into a
message: a place that forgets is silent, while a console that is not an escaping one fails a
test. Every console this program prints on is an
:class:`EscapingConsole` (``tests/test_printable.py`` fails when a module makes a plain rich
``Console``), which

1. escapes every string handed to :meth:`~EscapingConsole.print` or :meth:`~EscapingConsole.log`
   as one line, ``\\n`` included: a message is one line, so a value interpolated into it (a file
   name, an experiment name, ``--only`` or ``--set`` values, a path, a plugin's error) can never
   start a line of its own. A message of several lines is several strings
   (:func:`feph_finetune.errors.print_error` takes a list) or a rich renderable the program
   builds;
2. escapes every text segment that rich renders (tables, the live progress view, ``Text``),
   keeping only the line ends rich made: even a table cell that forgot :func:`printable` cannot
   move the cursor or reverse text. Tables still pass names through :func:`printable` where they
   are built, so that widths are measured on what is shown and a ``\\n`` in a name does not split
   its cell.

Machine-readable output printed with :meth:`~EscapingConsole.out` (CSV, JSON, markdown) keeps its
own line breaks and, on a terminal, gets the second step only; to a pipe or a file it is written
as it is (a program reads it; CSV quotes what needs quoting, JSON escapes these characters
itself), all but lone surrogates, which cannot be encoded and are written escaped. The two
messages that do not go through a console are escaped as one line where they are made:
argparse's error line (``feph_finetune.cli.ArgumentParser``, the same test fails on a plain
``argparse.ArgumentParser``) and the Python API's default warning (:func:`warnings.warn`, which
prints its text raw). Files the program writes (``report.md``, figures) escape names where they
are built, as tables do. A console a library user passes to
:class:`~feph_finetune.session.Session` prints as it was made to. Like
``ls`` on a terminal and git's ``core.quotePath``, the rule is never to let a name act on the
terminal; unlike git's default it leaves non-ASCII text alone, since labels in any script are
expected.
"""

from __future__ import annotations

import functools
import re
import time
import unicodedata
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.segment import Segment

#: The narrowest console (display cells): a width below it (``COLUMNS=0`` or ``1``, which rich
#: takes as given) is taken as this one. At 0 rich prints nothing at all, error messages
#: included; at 1 one character a line. The tables and messages are laid out for 80 and still
#: read at 40.
MIN_WIDTH = 40

#: Categories escaped wherever they stand (see the module docstring).
_ESCAPED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}

#: Format characters kept between two visible non-ASCII characters: the zero-width joiner and
#: non-joiner of emoji sequences and of Indic and Persian writing.
_JOINERS = {"\u200c", "\u200d"}

#: Lone surrogates: the bytes of a name that is not UTF-8, which no UTF-8 output can encode.
_SURROGATES = re.compile("[\ud800-\udfff]")

#: A string that matches nothing here is printable ASCII only: nothing to escape (the common case).
_MAYBE_ESCAPED = re.compile(r"[^\x20-\x7e]")


def printable(text: Any) -> str:
    """``str(text)`` with every control, format (but joining), surrogate and line-separator
    character written as Python writes it in a string literal (``\\x1b``, ``\\t``, ``\\n``,
    ``\\u202e``); all other characters, any script, unchanged. Idempotent: the result holds no
    character it would escape."""
    return _escaped(str(text), keep="")


def reading_key(text: str) -> str:
    """What two names share when they read the same on screen: ``text`` in Unicode compatibility
    form (NFKC) with its white space trimmed and runs of it made one space. ``"FTé"`` typed on
    Linux (NFC) and written by macOS (NFD, ``e`` + U+0301), ``"ＦＴ"`` (fullwidth) and ``"FT"``,
    ``"ﬁ"`` and ``"fi"``, ``"FT x "`` and ``"FT  x"`` each share a key. Every comparison of
    names a user tells apart by eye uses it: experiments whose report rows would read the same
    (``--dry-run``), the report's rows and column headers, ``report --confusion NAME``. Case is
    kept: ``FT`` and ``ft`` read differently."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def counted(number: int, noun: str) -> str:
    """``number`` with ``noun``, plural but for one: ``1 run``, ``2 runs``, ``0 runs``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


#: The items a message names one by one (:func:`few_named`); the rest are counted.
NAMED_AT_MOST = 5


def few_named(items: list[str], separator: str = "; ") -> str:
    """The first :data:`NAMED_AT_MOST` of ``items`` joined by ``separator``, then ``and N more``
    for the rest: a message about 200 unreadable files stays a few lines, not 10,000 characters."""
    shown = separator.join(items[:NAMED_AT_MOST])
    return shown if len(items) <= NAMED_AT_MOST else f"{shown}{separator}and {len(items) - NAMED_AT_MOST} more"


def shortened(value: Any, length: int = 40) -> str:
    """``str(value)`` as a message quotes a user's value: at most ``length`` characters (the
    first ``length - 20``, ``…``, the last 8), so that a value of kilobytes leaves the message one
    readable line (the message says what was wrong with it, e.g. "an integer of 401 digits")."""
    text = str(value)
    return text if len(text) <= length else f"{text[:length - 20]}…{text[-8:]}"


def _escaped(text: str, keep: str) -> str:
    """``text`` escaped as :func:`printable` says, except the characters in ``keep``."""
    if not _MAYBE_ESCAPED.search(text):
        return text
    return "".join(
        character if character in keep or not _acts(text, index) else _escape(character)
        for index, character in enumerate(text))


def _escape(character: str) -> str:
    """``character`` as Python writes it in a string literal; a byte of a name that is not UTF-8
    (held by Python as U+DC80-U+DCFF) as that byte, ``\\xff``, the way ``ls -b`` and git show it."""
    if "\udc80" <= character <= "\udcff":
        return f"\\x{ord(character) - 0xDC00:02x}"
    return repr(character)[1:-1]


def _acts(text: str, index: int) -> bool:
    """Whether ``text[index]`` is a character :func:`printable` escapes where it stands."""
    character = text[index]
    if unicodedata.category(character) not in _ESCAPED_CATEGORIES:
        return False
    if character not in _JOINERS:
        return True
    before, after = text[index - 1 : index], text[index + 1 : index + 2]
    return not (_joinable(before) and _joinable(after))


def _joinable(character: str) -> bool:
    """A character a joiner may join: visible and not ASCII (empty at either end of the text)."""
    return bool(character) and not character.isascii() and not character.isspace() and unicodedata.category(character) not in _ESCAPED_CATEGORIES


#: The time of a log line written to a file or a pipe (the progress log's and the demo's alike).
LOG_TIME = "%H:%M:%S"


class EscapingConsole(Console):
    """A rich console that shows text from data with :func:`printable`'s escapes (module
    docstring, "Where the rule is applied"): strings given to :meth:`print` and :meth:`log` are
    escaped whole, ``\\n`` included; every rendered text segment is escaped but its line ends.

    Rich markup is off by default (``markup=False``): a string is shown as it is, never read as
    markup, wherever rich meets it (printed, a table cell, title or caption, a log line). A name
    such as ``mk[/]`` or a class ``[red]x`` is data; read as markup the first would raise
    ``MarkupError`` and the second would lose its brackets. Styling is asked for where the
    program writes it: ``print(..., markup=True)`` with every value inside passed through
    :func:`rich.markup.escape`, or a :class:`rich.text.Text` with a style. rich's emoji codes are
    off too (``emoji=False``): a name holding ``:smile:`` or ``A:B:`` is shown as written, never
    as a picture; the program's own text uses none."""

    def __init__(self, *args: Any, markup: bool = False, emoji: bool = False, **options: Any) -> None:
        super().__init__(*args, markup=markup, emoji=emoji, **options)

    @property
    def size(self) -> ConsoleDimensions:
        """rich's size, its width at least :data:`MIN_WIDTH` cells: every width the console uses
        (``width``, ``options``) is read from here."""
        width, height = super().size
        return ConsoleDimensions(max(width, MIN_WIDTH), height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)

    def print(self, *objects: Any, **options: Any) -> None:
        super().print(*map(_as_line, objects), **options)

    def log(self, *objects: Any, _stack_offset: int = 1, **options: Any) -> None:
        """A log line. Not to a terminal (a log file, a pipe), the progress log's plain format
        (``HH:MM:SS message``, :data:`LOG_TIME`), one line however long and unpadded: rich's own
        (``[HH:MM:SS]``, wrapped under an indent and padded with blanks to the width) would mix
        two formats in one file and leave trailing blanks for ``grep`` to trip on."""
        if not self.is_terminal:
            options.pop("log_locals", None)
            options.setdefault("highlight", False)
            self.print(time.strftime(LOG_TIME), *objects, soft_wrap=True, **options)
            return
        # one frame deeper: the line's source column names the caller, not this method
        super().log(*map(_as_line, objects), _stack_offset=_stack_offset + 1, **options)

    def out(self, *objects: Any, sep: str = " ", end: str = "\n", style: Any = None, highlight: bool | None = None) -> None:
        """Text in a machine-readable format (CSV, JSON, markdown). To a terminal, as rich's
        ``out`` prints it with its own line breaks kept and all else escaped. Not to a
        terminal (a pipe, a file), written as it is: a program reads it, and a class ``cr\\rOVER``
        must stay that name in a CSV header (the format quotes what needs quoting), as ``ls``
        quotes names only on a terminal."""
        text = sep.join(str(item) for item in objects)
        if not self.is_terminal:
            text = _SURROGATES.sub(lambda match: printable(match.group()), text)
            if not self.quiet:
                self.file.write(text + end)
                self.file.flush()
            return
        # escaped before rich sees it: rich drops a "\r" from text it renders, unseen by render()
        super().print(_segment_text(text), style=style, highlight=highlight, emoji=False,
                      markup=False, no_wrap=True, overflow="ignore", crop=False, end=end)

    def render(self, renderable: Any, options: Any = None):
        """rich's segments with their text escaped; control segments (rich's own cursor moves)
        pass as they are. Nested renderables come through here again: escaping is idempotent."""
        for segment in super().render(renderable, options):
            if segment.control or not _MAYBE_ESCAPED.search(segment.text):
                yield segment
            else:
                yield Segment(_segment_text(segment.text), segment.style, segment.control)


@functools.lru_cache(maxsize=4096)  # a table repeats its borders and cells on every nesting level
def _segment_text(text: str) -> str:
    return _escaped(text, keep="\n")


def _as_line(item: Any) -> Any:
    return printable(item) if isinstance(item, str) else item
