"""The exit codes of every command, and the one way a user error is printed.

Exit codes (README, "Exit codes"): :data:`EXIT_OK` 0, everything worked; :data:`EXIT_FAILED_RUNS`
1, some runs failed (the others finished, each failure is in its run's ``result.json``);
:data:`EXIT_USAGE` 2, a usage or configuration error, a bad input, or work that cannot start;
:data:`EXIT_INTERRUPTED` 130, Ctrl-C, SIGTERM or SIGHUP (128 + SIGINT, as shells report it);
:data:`EXIT_CLOSED_PIPE` 141, the output's reader went away (``... | head``), as a shell reports a
command SIGPIPE killed (128 + 13), distinct from 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # rich is imported where an error is printed: this module is imported before the stop-signal handlers are in place
    from rich.console import Console

EXIT_OK = 0
EXIT_FAILED_RUNS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141


class ProblemsError(Exception):
    """An error of one or more problems, one line each, kept apart in ``problems`` (``str`` joins
    them with newlines): :func:`print_error` prints each on its line, and a newline inside one
    (from a file name) stays escaped instead of starting a line (:mod:`feph_finetune.printable`)."""

    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def message_lines(error: BaseException) -> list[str]:
    """The lines :func:`print_error` shows for ``error``: its ``problems`` (a
    :class:`ProblemsError`, a configuration error) or its message."""
    problems = getattr(error, "problems", None)
    return [str(problem) for problem in problems] if problems else [str(error)]


def print_error(errors: Console, problems: str | Sequence[str], heading: str | None = None) -> int:
    """Print a user error on ``errors`` (stderr) and return :data:`EXIT_USAGE`.

    ``problems``: one message or a list of them, printed as given (no markup). One message and no
    ``heading`` gives the one line ``error: MESSAGE``; otherwise a red ``error: HEADING`` line
    (by default "N problems") and each message on its own line. A message is one line: on an
    :class:`~feph_finetune.printable.EscapingConsole` a newline or other control character in it
    is shown escaped (it came from data), so give several lines as several messages.
    """
    from rich.markup import escape

    lines = [problems] if isinstance(problems, str) else list(problems)
    if heading is None and len(lines) == 1:
        errors.print("[bold red]error:[/bold red] ", end="", markup=True)
        errors.print(lines[0], markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    errors.print(f"[bold red]error: {escape(heading or f'{len(lines)} problems')}[/bold red]", markup=True, highlight=False)
    for line in lines:
        errors.print(line, markup=False, highlight=False, soft_wrap=True)
    return EXIT_USAGE
