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
