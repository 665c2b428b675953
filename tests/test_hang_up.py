"""A terminal that hangs up (a closed window, a dropped ``ssh`` session) while the command draws on
it is the stop: exit 130 and the command that continues, written wherever it can still be read,
never an I/O error in its place (:mod:`feph_finetune.hangup`)."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time

import pytest

from conftest import REPO, write_hang_distribution, write_matrix
from feph_finetune.cli import guarded
from feph_finetune.errors import EXIT_INTERRUPTED
from feph_finetune.printable import EscapingConsole

#: One run that hangs in preprocess while the marker exists (so the hang-up lands mid-run).
HUNG = """
[experiments.hung]
preprocess = ["hang"]
options.hang.marker = "{marker}"
options.hang.hook = "preprocess"
"""


def run_until_running_then_hang_up(command: list[str], env: dict) -> tuple[int, bytes]:
    """Run ``command`` on a new pseudo-terminal (its controlling terminal, as a shell gives it),
    wait until its live view shows a run under way, then close the terminal's master side: the
    kernel hangs the terminal up (SIGHUP, and EIO for every later write). Returns the exit code
    and what the terminal showed."""
    master, slave = os.openpty()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    shown, deadline = b"", time.monotonic() + 300
    while b"1 running" not in shown:
        assert time.monotonic() < deadline and process.poll() is None, shown.decode(errors="replace")
        if select.select([master], [], [], 0.2)[0]:
            shown += os.read(master, 65536)
    os.close(master)
    return process.wait(timeout=120), shown


def on_a_terminal(argv: list[str]) -> list[str]:
    """``argv`` with the pseudo-terminal made its controlling terminal (``start_new_session``
    gives it none): opening the terminal's device in a new session does so."""
    code = "import os, sys; fd = os.open(os.ttyname(1), os.O_RDWR); os.close(fd); os.execvp(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", code, *argv]


@pytest.mark.slow(40)
@pytest.mark.parametrize("stderr", ["terminal", "file"])
def test_a_terminal_that_hangs_up_mid_run_stops_the_command_with_130(synthetic_feph, tmp_path, stderr):
    env = {**os.environ, **write_hang_distribution(tmp_path / "site"), "COLUMNS": "100"}
    marker = tmp_path / "hang"
    marker.touch()
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, HUNG.format(marker=marker))
    argv = [sys.executable, "-m", "feph_finetune", str(path), "--output", str(tmp_path / "runs"), "--executor", "inline"]
    errors = tmp_path / "stderr.txt"
    if stderr == "file":
        argv = ["sh", "-c", 'exec "$@" 2>"$0"', str(errors), *argv]
    code, shown = run_until_running_then_hang_up(on_a_terminal(argv), env)
    assert code == EXIT_INTERRUPTED, shown.decode(errors="replace")
    if stderr == "file":
        said = errors.read_text()
        assert "interrupted: to continue, run: python -m feph_finetune" in said and "could not be written" not in said, said


def test_a_write_that_finds_the_terminal_hung_up_before_its_sighup_is_the_stop(tmp_path, monkeypatch):
    """The write's I/O error can come before the SIGHUP is handled (here none comes: the
    terminal is not this process's own): it is the stop all the same, not an output error."""
    master, slave = os.openpty()
    os.close(master)  # hung up
    monkeypatch.setattr(sys, "stdout", open(slave, "w", buffering=1))
    said = io.StringIO()

    def command(args, console):
        print("a line for the terminal")
        return 0

    code = guarded(command, None, None, EscapingConsole(file=said, stderr=True))
    assert code == EXIT_INTERRUPTED and "interrupted" in said.getvalue(), said.getvalue()
