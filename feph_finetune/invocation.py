"""The command that made a matrix's runs, and the commands the tool suggests from it.

A run's ``config.json`` records how it was asked for (``"invocation"``: the experiments TOML's
resolved path, or none for a configuration given as a dict; whether it was the synthetic demo; the
``--set`` overrides; the working folder it was made in). A suggestion to run a run again
(``predict`` and ``export`` of a run that saved no model; a finished matrix whose runs lack the
model they ask for) is built from that record, because a command that forgets one part cannot
work: without ``--demo`` the demo's data and bases are missing, without the overrides the runs get
other ids (overrides enter them), without ``--output`` they land in another results folder, and
from another folder the relative paths of the TOML and the overrides (``root = "data/FePh"``) name
other files, so a suggestion made elsewhere starts with ``cd`` to the recorded folder. A matrix
that stops is continued by its own command line without ``--force`` (:func:`continue_command`).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from feph_finetune.config.reading import dotted_key_parts
from feph_finetune.printable import printable

#: The key of ``config.json`` that holds the record.
RECORD_KEY = "invocation"
#: What a suggestion says for a run that recorded no experiments TOML (a dict configuration, or
#: a run written before the record existed).
UNKNOWN_CONFIG = "EXPERIMENTS.toml"


def program() -> str:
    """How the user started the tool: the ``feph-finetune`` script, else ``python -m feph_finetune``."""
    return "feph-finetune" if Path(sys.argv[0]).name == "feph-finetune" else "python -m feph_finetune"


def invocation_record(config: "str | Path | Mapping[str, Any]", overrides: Sequence[str], demo: bool) -> dict[str, Any]:
    """What a run's ``config.json`` records of the command that made it (see the module's
    docstring): the TOML's resolved path, and the working folder (``cwd``, None where it is gone),
    against which the TOML's and the overrides' relative paths were read."""
    path = None if isinstance(config, Mapping) else str(Path(config).resolve())
    return {"config": path, "demo": demo, "overrides": list(overrides), "cwd": _working_folder()}


def _working_folder() -> str | None:
    try:
        return str(Path.cwd())
    except OSError:  # removed while the command runs
        return None


def continue_command(argv: Sequence[str]) -> str:
    """The command that continues an interrupted matrix: the same one without ``--force``.

    ``--force`` set the selected runs' results aside before the first started, so without it the
    runs redone before the interrupt are skipped and the others run; with it, all would start over.
    Abbreviations that argparse accepts (``--for``) count as ``--force`` too.
    """
    kept = [arg for arg in argv if not (arg.startswith("--f") and "--force".startswith(arg))]
    return f"{program()} {shell_join(kept)}"


def shell_join(words: Sequence[str]) -> str:
    """``words`` as a shell command line that bash and zsh read back as exactly these words
    (:func:`shell_quote` each)."""
    return " ".join(shell_quote(word) for word in words)


def shell_quote(word: str) -> str:
    """``word`` quoted for bash and zsh, in a form that prints as it is: :func:`shlex.quote`, or
    for a word holding a character the console would escape (a control character such as ``\\n``
    or ``\\t``, a bidirectional control, a byte of a name that is not UTF-8: see
    :func:`~feph_finetune.printable.printable`), ANSI-C quoting, ``$'runs\\nx'``. Shown inside
    ``'...'`` such a character is printed as ``\\n``, which the shell reads as a backslash and an
    ``n``: the pasted command would name another folder."""
    if printable(word) == word:
        return shlex.quote(word)
    return "$'" + "".join(_ansi_c(character) for character in word) + "'"


#: The characters ANSI-C quoting (``$'...'``) writes with a letter.
_ANSI_C_LETTERS = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\x1b": "\\E"}


def _ansi_c(character: str) -> str:
    """``character`` inside ``$'...'``: a letter escape, ``\\xHH`` for another ASCII control or
    a byte of a name that is not UTF-8 (Python holds it as U+DC80-U+DCFF), ``\\uHHHH`` or
    ``\\UHHHHHHHH`` (always every digit: a hex digit after it is not read into it) for any
    other character :func:`~feph_finetune.printable.printable` escapes; else as it is."""
    if character in _ANSI_C_LETTERS:
        return _ANSI_C_LETTERS[character]
    if "\udc80" <= character <= "\udcff":
        return f"\\x{ord(character) - 0xDC00:02x}"
    if printable(character) == character:
        return character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def matrix_command(record: Any, output: Path, only: Sequence[str], phase: str | None = None,
                   settings: Sequence[str] = (), force: bool = False) -> str:
    """The command that runs the experiments ``only`` (in ``phase``, else both) of the runs made
    by ``record`` again, into ``output``, with the ``settings`` (``KEY=VALUE``, the key written by
    :func:`~feph_finetune.config.reading.dotted_key`) besides the recorded overrides; an override
    that sets one of those keys (or a table holding one, or a key inside one) or the results
    folder is left out, since both would be refused together. Made in another folder than the
    recorded one, it starts with ``cd`` to that folder (see the module's docstring).

    ``record``: a ``config.json``'s ``"invocation"``; anything else (an older run's missing
    record) gives :data:`UNKNOWN_CONFIG` and no overrides, for the user to complete.
    """
    record = record if isinstance(record, Mapping) else {}
    folder = _folder_to_enter(record.get("cwd"))
    output = _shown_path(str(Path(output).resolve()), folder) if folder else str(output)
    config = record.get("config")
    words = [_shown_path(config, folder) if isinstance(config, str) and config else UNKNOWN_CONFIG]
    if record.get("demo") is True:
        words.append("--demo")
    words += ["--only", *only] + (["--phase", phase] if phase else [])
    replaced = [_key(setting) for setting in settings] + [["output"]]
    overrides = record.get("overrides")
    for override in overrides if isinstance(overrides, list) else ():
        if isinstance(override, str) and not any(_overlaps(_key(override), key) for key in replaced):
            words += ["--set", override]
    for setting in settings:
        words += ["--set", setting]
    words += ["--output", output] + (["--force"] if force else [])
    command = f"{program()} {shell_join(words)}"
    return f"cd {shell_quote(folder)} && {command}" if folder else command


def _folder_to_enter(recorded: Any) -> str | None:
    """The recorded working folder where it is not the current one (None where it is, or where
    the record has none: a run made before runs recorded it)."""
    current = _working_folder()
    if not isinstance(recorded, str) or not recorded or current is None or Path(recorded) == Path(current):
        return None
    return recorded


def _shown_path(path: str, folder: str | None) -> str:
    """``path`` relative to the folder the command runs in (``folder``, else the working folder)
    where it lies inside it (``experiments.toml``), else whole."""
    try:
        return str(Path(path).relative_to(folder or Path.cwd()))
    except (ValueError, OSError):
        return path


def _key(assignment: str) -> list[str]:
    """The parts of the dotted key of a ``KEY=VALUE`` override (``experiments."A.b".seed``:
    ``experiments``, ``A.b``, ``seed``); the text itself, as one part, where it is no key."""
    key = assignment.partition("=")[0].strip()
    return dotted_key_parts(key) or [key]


def _overlaps(key: list[str], other: list[str]) -> bool:
    """Whether two dotted keys are the same setting, or one is a table holding the other."""
    shorter, longer = sorted((key, other), key=len)
    return longer[:len(shorter)] == shorter
