"""Text from data (class names, labels, experiment and file names) made safe to show.

Names come from folder names, CSV cells and hand-edited ``result.json`` files, so they may hold
control characters: an ESC would reach the terminal as an escape sequence (colours, a moved
cursor, a changed title), a tab or newline would split a table's header or a markdown row. Every
table, legend and summary that shows such a name passes it through :func:`printable` (once, where
the table is built), so that the characters stay visible instead of acting.
"""

from __future__ import annotations

import unicodedata

#: Characters that are not control characters (category ``Cc``) yet end a line in a terminal
#: or an editor: shown escaped too.
_LINE_BREAKS = {"\u2028", "\u2029"}


def printable(text: str) -> str:
    """``text`` with every control character written as Python writes it in a string literal
    (``\\x1b``, ``\\t``, ``\\n``, ``\\u2028``); all other characters, any script, unchanged."""
    return "".join(_shown(character) for character in str(text))


def _shown(character: str) -> str:
    if unicodedata.category(character) == "Cc" or character in _LINE_BREAKS:
        return repr(character)[1:-1]
    return character
