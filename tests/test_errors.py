"""One printer of user errors and one set of exit codes for every command."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from feph_finetune import errors
from feph_finetune.cli import main


def printed(problems, heading=None) -> tuple[int, str]:
    out = io.StringIO()
    code = errors.print_error(Console(file=out, width=300), problems, heading)
    return code, out.getvalue()


def test_one_problem_is_one_line_and_several_get_a_heading_with_their_count():
    assert printed("bad [red]value[/red]") == (2, "error: bad [red]value[/red]\n")  # no markup read from messages
    assert printed(["a", "b"]) == (2, "error: 2 problems\na\nb\n")
    assert printed(["a"], heading="1 of 3 inputs failed") == (2, "error: 1 of 3 inputs failed\na\n")


def test_the_exit_codes_are_the_readmes():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"Exit codes: 0 success, 1 some runs failed.*?, 2 a problem.*?, 130 interrupted", readme, re.S)
    assert stated is not None
    assert (errors.EXIT_OK, errors.EXIT_FAILED_RUNS, errors.EXIT_USAGE, errors.EXIT_INTERRUPTED) == (0, 1, 2, 130)


def test_a_command_prints_its_user_error_through_the_one_printer(tmp_path, capsys):
    code = main(["export", str(tmp_path / "missing"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == errors.EXIT_USAGE and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
