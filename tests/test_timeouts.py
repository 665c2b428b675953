"""A run's ``timeout``: every executor stops a run that takes too long, records where it was, goes
on with the matrix, and the next invocation runs it again."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from feph_finetune.cli import main
from feph_finetune.config.reading import read_config
from feph_finetune.execution.executors.inline import InlineExecutor
from feph_finetune.config.matrix import build_matrix
from feph_finetune.plugins import get_plugins
from feph_finetune.results.store import RunStore

from conftest import run_cli, write_distribution, write_hang_distribution, write_matrix
from test_executors import quiet_runner

#: A run that hangs in the hook ``{hook}`` while ``{marker}`` exists, then one that does not.
HUNG_THEN_LATER = """
[experiments.hung]
timeout = {timeout}
preprocess = ["face_crop", "hang"]
evaluate = ["paper_metrics", "hang"]
options.hang.marker = "{marker}"
options.hang.hook = "{hook}"
options.adam.head_epochs = 0
options.adam.epochs = 0

[experiments.later]
options.adam.head_epochs = 0
options.adam.epochs = 0
"""


def hung_matrix(tmp_path, synthetic_feph, hook: str, timeout: float):
    marker = tmp_path / "hang"
    marker.touch()
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, HUNG_THEN_LATER.format(timeout=timeout, marker=marker, hook=hook))
    return path, marker


def by_experiment(outdir) -> dict[str, dict]:
    return {record["experiment"]: record for record in RunStore(outdir).records()}


@pytest.mark.slow(30)
def test_a_hung_run_of_the_process_executor_is_stopped_recorded_and_retried_next_time(synthetic_feph, tmp_path):
    env = write_hang_distribution(tmp_path / "site")
    path, marker = hung_matrix(tmp_path, synthetic_feph, "preprocess", 2)
    outdir = tmp_path / "runs"
    first = run_cli(str(path), "--output", str(outdir), "--jobs", "1", env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    records = by_experiment(outdir)
    assert records["later"]["status"] == "done", "the matrix goes on after a run that timed out"
    error = records["hung"]["error"]
    assert error["type"] == "TimedOut" and error["message"] == "timed out after 2 s in plugin 'hang' (preprocess)"
    assert any("hang_while_marked" in line for line in error["stderr_tail"]), "the run's Python stack is kept"
    assert "timed out after 2 s in plugin 'hang' (preprocess)" in first.stdout
    assert records["hung"]["timing"]["total_s"] < 60

    marker.unlink()  # the same run, now without a limit (a timeout is not part of its id)
    second = run_cli(str(path), "--output", str(outdir), "--set", "experiments.hung.timeout=0", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "skipped 1 finished run " in second.stdout
    assert by_experiment(outdir)["hung"]["status"] == "done"


@pytest.mark.slow(55)
def test_a_run_hung_in_evaluate_says_so(synthetic_feph, tmp_path):
    """The stopped run names the hook it was in, after the training that preceded it (the timeout
    leaves the training of a tiny run ample time on a loaded machine)."""
    env = write_hang_distribution(tmp_path / "site")
    path, _ = hung_matrix(tmp_path, synthetic_feph, "evaluate", 45)
    outdir = tmp_path / "runs"
    result = run_cli(str(path), "--output", str(outdir), "--only", "hung", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert by_experiment(outdir)["hung"]["error"]["message"] == "timed out after 45 s in plugin 'hang' (evaluate)"


@pytest.fixture
def hang_plugin(tmp_path, monkeypatch):
    """The ``hang`` plugin, installed for this process."""
    site = tmp_path / "site"
    write_hang_distribution(site)
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("feph_hang", None)


def test_a_hung_run_of_the_inline_executor_is_stopped_and_the_timer_is_gone_after(hang_plugin, synthetic_feph, tmp_path):
    path, marker = hung_matrix(tmp_path, synthetic_feph, "preprocess", 2)
    runner = quiet_runner(path, tmp_path / "runs", InlineExecutor({}))
    before = signal.getsignal(signal.SIGALRM)
    outcome = runner.run_all(runner.matrix.runs)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getsignal(signal.SIGALRM) is before
    records = by_experiment(tmp_path / "runs")
    assert [records[experiment]["status"] for experiment in ("hung", "later")] == ["failed", "done"]
    assert records["hung"]["error"]["message"] == "timed out after 2 s in plugin 'hang' (preprocess)"
    assert len(outcome.failed) == 1
    said = " ".join(runner.console.file.getvalue().split())
    assert f"run {records['hung']['id']} timed out after 2 s in plugin 'hang' (preprocess)" in said and "'core'" not in said

    marker.unlink()
    path.write_text(path.read_text().replace("timeout = 2", "timeout = 0"))
    runner = quiet_runner(path, tmp_path / "runs", InlineExecutor({}))
    again = runner.run_all(runner.matrix.runs)
    assert len(again.done) == 1 and len(again.skipped) == 1


def test_timeout_is_checked_before_any_work_and_is_not_part_of_a_runs_id(synthetic_feph, tmp_path, capsys):
    for value, message in (("-1", "experiments.A.timeout: must be >= 0, not -1"), ('"1h"', "experiments.A.timeout: expected float, got string '1h'")):
        bad = write_matrix(tmp_path / "bad.toml", synthetic_feph, f"[experiments.A]\ntimeout = {value}\n")
        assert main([str(bad), "--dry-run"]) == 2
        assert message in capsys.readouterr().err
    ids = []
    for timeout in (0, 600):
        path = write_matrix(tmp_path / f"t{timeout}.toml", synthetic_feph, f"[experiments.A]\ntimeout = {timeout}\n")
        ids.append([run.id for run in build_matrix(read_config(path), get_plugins()).runs])
    assert ids[0] == ids[1], "a timeout does not change what a run computes"


def test_the_inline_executor_outside_the_main_thread_fails_a_run_with_a_timeout_saying_why(synthetic_feph, tmp_path):
    """Its timer is a signal, which only the main thread receives: the run is not started
    rather than run without its limit."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\ntimeout = 5\n")
    runner = quiet_runner(path, tmp_path / "runs", InlineExecutor({}))
    worker = threading.Thread(target=runner.run_all, args=(runner.matrix.runs,))
    worker.start()
    worker.join(60)
    (record,) = runner.store.records()
    assert record["status"] == "failed" and "cannot be enforced by the inline executor outside the main thread" in record["error"]["message"]


#: A plugin whose preprocess starts ``sleep SECONDS`` and then hangs (a hook waiting on a tool).
SPAWN_AND_HANG = '''
import subprocess
import time

from feph_finetune import hookimpl


@hookimpl
def plugin_options():
    return {"seconds": ""}


@hookimpl
def preprocess(context):
    subprocess.Popen(["sleep", context.options["seconds"]])
    time.sleep(3600)
'''


def processes_running(argv: list[str]) -> list[int]:
    """The ids of the processes whose command line is exactly ``argv`` (zombies excepted)."""
    wanted, found = "\0".join(argv) + "\0", []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_text() == wanted and "\nState:\tZ" not in (entry / "status").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process list from /proc")
def test_a_timed_out_run_of_the_process_executor_takes_the_processes_it_started_with_it(synthetic_feph, tmp_path):
    env = write_distribution(tmp_path / "site", "spawner", SPAWN_AND_HANG)
    seconds = f"{1000 + os.getpid() % 1000}.{time.time_ns() % 997}"  # a command line no other test starts
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f"""
[experiments.hung]
timeout = 3
preprocess = ["face_crop", "spawner"]
options.spawner.seconds = "{seconds}"
""")
    result = run_cli(str(path), "--output", str(tmp_path / "runs"), "--jobs", "1", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "timed out after 3 s in plugin 'spawner' (preprocess)" in result.stdout
    assert processes_running(["sleep", seconds]) == [], "the hook's subprocess outlived its run"
