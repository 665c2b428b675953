"""The line a matrix command stopped early ends with says ``finished runs are saved`` only where a
selected run has finished (issue h11 #12: a Ctrl-C at ``[0/1]`` claimed it), the same way on
every path: an interrupt, a failed pre-training, a run that does not stop
(:mod:`feph_finetune.execution.continuation`). The full disk's line is tested in test_full_disk."""

from __future__ import annotations

import json

import pytest

from feph_finetune.cli import main
from feph_finetune.demo.protocol import PretrainingFailed
from feph_finetune.execution.executors import inline
from feph_finetune.execution.executors.inline import StuckRun
from feph_finetune.session import Session
from conftest import write_matrix
from test_report_configurations import result_of

TWO_RUNS = """
[experiments.A]
grid = { seed = [1, 2] }
"""

#: How each path stops the matrix once its runs are under way, with the exit code it gives.
STOPS = {"interrupt": (KeyboardInterrupt, 130), "pretraining": (lambda: PretrainingFailed("base mobilenet: its child exited with 1"), 1)}


@pytest.mark.parametrize("stop", sorted(STOPS))
@pytest.mark.parametrize("finished", [0, 1], ids=["none-finished", "one-finished"])
def test_a_stopped_matrix_says_finished_runs_are_saved_only_where_one_is(synthetic_feph, tmp_path, monkeypatch, capsys, stop, finished):
    path, outdir = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_RUNS), tmp_path / "runs"
    raised, code = STOPS[stop]

    def run(session):
        for planned in session.plan()[:finished]:  # as a run leaves its record, without training
            (outdir / planned.id).mkdir(parents=True)
            (outdir / planned.id / "result.json").write_text(json.dumps(result_of(planned, 0.5)), encoding="utf-8")
        raise raised()

    monkeypatch.setattr(Session, "run", run)
    assert main([str(path), "--output", str(outdir)]) == code
    said = " ".join(capsys.readouterr().err.split())
    continuing = f"to continue, run: python -m feph_finetune {path} --output {outdir}"
    saved = "finished runs are saved; " if finished else ""
    assert f"{'interrupted: ' if stop == 'interrupt' else ''}{saved}{continuing}" in said
    assert ("finished runs are saved" in said) == bool(finished)


class Ended(Exception):
    """What the stand-in for :func:`~feph_finetune.execution.executors.end_process` raises: the
    lines and exit code the command would have ended with."""


class Here:
    """A stand-in :class:`~feph_finetune.execution.executors.InProcess` whose ``end_command`` returns."""

    def end_command(self, lines, code):
        pass


@pytest.mark.parametrize("interrupted", [True, False], ids=["stop-signal", "past-timeout"])
@pytest.mark.parametrize("finished", [[], ["A-x-0123456789"]], ids=["none-finished", "one-finished"])
def test_a_run_that_does_not_stop_says_finished_runs_are_saved_only_where_one_is(monkeypatch, interrupted, finished):
    def end_process(lines, code):
        raise Ended(lines, code)

    monkeypatch.setattr(inline, "end_process", end_process)
    monkeypatch.setattr(StuckRun, "describe", lambda self, interrupted: [])
    monkeypatch.setattr(StuckRun, "record", lambda self: None)
    stuck = StuckRun(None, None, Here(), None, 0.0, "", continue_with="python -m feph_finetune m.toml", finished_runs=lambda: finished)
    with pytest.raises(Ended) as ended:
        stuck.end(interrupted)
    [line] = ended.value.args[0]
    saved = "finished runs are saved; " if finished else ""
    assert line == f"{'interrupted: ' if interrupted else ''}{saved}to continue, run: python -m feph_finetune m.toml"


# --- the continue line pastes back as the same command -------------------------------------------

#: Arguments a shell reads back wrongly from ``'...'`` when the console shows their characters
#: escaped, by what they hold (ids stable: named here).
ODD_ARGUMENTS = {
    "newline": ["--output", "runs\nx"],
    "tab-and-quote": ["--output", "it's\tA"],
    "escape-sequence": ["--output", "A\x1b[31mB"],
    "bidi-control": ["--output", "A\u202eB"],
    "non-utf8-byte": ["--output", "runs\udcff"],
    "backslash-n-text": ["--output", "runs\\nx"],
    "cjk-and-tab": ["--output", "手語\t", "--only", "A"],
}


def read_back_by_bash(command: str) -> list[str]:
    """The words bash reads from ``command`` (the program's name dropped), as Python holds them."""
    import os
    import subprocess

    words = command.removeprefix("python -m feph_finetune ")
    printed = subprocess.run(["bash", "-c", f"printf '%s\\0' {words}"], capture_output=True, check=True, env={**os.environ, "LC_ALL": "C.UTF-8"}).stdout
    return [os.fsdecode(word) for word in printed.split(b"\0")[:-1]]


@pytest.mark.parametrize("odd", sorted(ODD_ARGUMENTS))
def test_the_printed_continue_line_pastes_back_as_the_same_arguments(synthetic_feph, tmp_path, monkeypatch, capsys, odd):
    """What the console prints, pasted into bash, gives the arguments of the stopped command (the
    ``--force`` dropped): before, ``--output $'runs\\nx'`` was shown ``'runs\\nx'``, which bash
    reads as a backslash and an ``n``, so the pasted command started over in another folder."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_RUNS)
    monkeypatch.chdir(tmp_path)
    argv = [str(path), *ODD_ARGUMENTS[odd]]

    def run(session):
        raise KeyboardInterrupt

    monkeypatch.setattr(Session, "run", run)
    assert main([*argv, "--force"]) == 130
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "to continue, run: " in line]
    assert read_back_by_bash(line.split("to continue, run: ", 1)[1]) == argv


def test_a_suggested_matrix_command_pastes_back_folder_and_output_alike(tmp_path, monkeypatch):
    """``matrix_command`` (predict and export of a run without a model) quotes the same way, the
    ``cd`` to the recorded folder included, as the console shows it (:func:`printable`)."""
    from feph_finetune.invocation import matrix_command
    from feph_finetune.printable import printable

    folder = tmp_path / "made\nhere"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    record = {"config": str(folder / "m.toml"), "demo": False, "overrides": ["experiments.A.label=a\tb"], "cwd": str(folder)}
    command = printable(matrix_command(record, folder / "runs\x1b", ["A"]))
    enter, _, run = command.partition(" && ")
    assert read_back_by_bash(enter.replace("cd ", "", 1)) == [str(folder)]
    assert read_back_by_bash(run) == ["m.toml", "--only", "A", "--set", "experiments.A.label=a\tb", "--output", "runs\x1b"]
