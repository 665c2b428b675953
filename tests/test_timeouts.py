"""A run's ``timeout``: every executor stops a run that takes too long, records where it was, goes
on with the matrix, and the next invocation runs it again."""

from __future__ import annotations

import os
import signal
import subprocess
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

from conftest import line_of, run_cli, write_distribution, write_hang_distribution, write_matrix
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
            if entry.name.isdigit() and (entry / "cmdline").read_text(errors="surrogateescape") == wanted and "\nState:\tZ" not in (entry / "status").read_text(errors="surrogateescape"):
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


#: A plugin whose preprocess swallows every stop: a retry loop with a bare ``except:``.
SWALLOWER = '''
import time

from feph_finetune import hookimpl


@hookimpl
def preprocess(context):
    while True:
        try:
            time.sleep(0.2)
        except:  # noqa: E722 - what the test is about
            pass
'''

#: A run that finishes, one that hangs in the preprocess plugin ``{plugin}`` (timeout 1 s), and one after it.
FIRST_HUNG_LATER = """
[experiments.first]
options.adam.head_epochs = 0
options.adam.epochs = 0

[experiments.hung]
timeout = 1
preprocess = ["face_crop", "{plugin}"]
options.adam.head_epochs = 0
options.adam.epochs = 0

[experiments.later]
options.adam.head_epochs = 0
options.adam.epochs = 0
"""


#: The grace of a run that did not stop, shortened for the commands of these tests (10 s in use).
TEST_GRACE_S = 1.0


def command_with_grace(*args: str, env: dict) -> subprocess.Popen:
    """``python -m feph_finetune ARGS`` as a subprocess whose stuck runs get :data:`TEST_GRACE_S`
    (``STOP_GRACE_S`` set before the command runs); stdout and stderr together, as text."""
    from conftest import REPO

    launch = ("import sys; from feph_finetune.execution.executors import inline; "
              f"inline.STOP_GRACE_S = {TEST_GRACE_S}; from feph_finetune.__main__ import run; sys.exit(run())")
    return subprocess.Popen([sys.executable, "-c", launch, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO, env={**os.environ, **env})


def finish(command, seconds: float = 120) -> str:
    """What ``command`` printed once it ended; one that has not ended within ``seconds`` (it hangs) is killed and fails the test."""
    try:
        return command.communicate(timeout=seconds)[0]
    except subprocess.TimeoutExpired:
        command.kill()
        pytest.fail(f"the command hung; it printed: {command.communicate()[0][-3000:]}")


@pytest.mark.slow(30)
def test_an_inline_run_that_swallows_its_stop_ends_the_command_saying_so_finished_runs_kept(synthetic_feph, tmp_path):
    """The inline executor cannot take the main thread back from a plugin that catches every
    exception: after the grace the command records the run, says who held it, and exits 1."""
    env = write_distribution(tmp_path / "site", "swallower", SWALLOWER)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, FIRST_HUNG_LATER.format(plugin="swallower"))
    outdir = tmp_path / "runs"
    said = " ".join(finish(command_with_grace(str(path), "--output", str(outdir), "--executor", "inline", env=env)).split())
    records = by_experiment(outdir)
    assert records["first"]["status"] == "done", "a run finished before is kept"
    assert "later" not in records, "the command ended with the stuck run"
    error = records["hung"]["error"]
    assert error["type"] == "TimedOut" and error["message"].startswith("timed out after 1 s in plugin 'swallower' (preprocess) and did not stop")
    assert f"run {records['hung']['id']} timed out after 1 s in plugin 'swallower' (preprocess) and did not stop" in said
    assert "--executor process" in said and "Traceback" not in said
    assert f"finished runs are saved; to continue, run: python -m feph_finetune {path} --output {outdir} --executor inline" in said


#: A plugin whose preprocess finds the results disk full (every file the store creates fails with
#: ENOSPC from now on), then swallows every stop.
FULL_DISK_SWALLOWER = '''
import errno
import os
import time

from feph_finetune import hookimpl
from feph_finetune.results import store


def full(target, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@hookimpl
def preprocess(context):
    store._create_temporary = full  # the disk fills up
    while True:
        try:
            time.sleep(0.2)
        except:  # noqa: E722 - what the test is about
            pass
'''


@pytest.mark.slow(30)
def test_a_full_disk_cannot_keep_the_watchdog_from_ending_the_command(synthetic_feph, tmp_path):
    """The run that did not stop cannot be recorded (the disk is full): the command still ends,
    with exit 2, naming the run, the file and disk refused, and the command that continues;
    before, the watchdog's thread died of the error and the command hung for ever."""
    env = write_distribution(tmp_path / "site", "fullswallow", FULL_DISK_SWALLOWER)  # timeout 5: preprocess is reached before it on a loaded machine
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, """
[experiments.hung]
timeout = 5
preprocess = ["face_crop", "fullswallow"]
options.adam.head_epochs = 0
options.adam.epochs = 0
""")
    outdir = tmp_path / "runs"
    command = command_with_grace(str(path), "--output", str(outdir), "--executor", "inline", env=env)
    said = " ".join(finish(command).split())
    assert command.returncode == 2, said
    (run_dir,) = [folder for folder in outdir.iterdir() if folder.is_dir()]
    assert f"run {run_dir.name} timed out after 5 s in plugin 'fullswallow' (preprocess) and did not stop" in said
    assert f"error: no space left on the disk of {run_dir} for result.json" in said
    assert f"free some space, then continue with: python -m feph_finetune {path} --output {outdir}" in said
    assert "finished runs are saved" not in said, "the one run did not finish"
    assert "Traceback" not in said and "Exception in thread" not in said


#: A plugin whose preprocess swallows every stop, once it has created ``options.stopswallow.entered``.
ENTERED_SWALLOWER = '''
import time
from pathlib import Path

from feph_finetune import hookimpl


@hookimpl
def plugin_options():
    return {"entered": ""}


@hookimpl
def preprocess(context):
    Path(context.options["entered"]).touch()
    while True:
        try:
            time.sleep(0.2)
        except:  # noqa: E722 - what the test is about
            pass
'''


@pytest.mark.slow(30)
@pytest.mark.parametrize("timeout, signals", [(0, (signal.SIGINT, signal.SIGINT)), (60, (signal.SIGTERM,))], ids=["no-timeout-two-ctrl-c", "timeout-sigterm"])
def test_a_stop_an_inline_run_swallows_ends_the_command_with_130_after_the_grace(synthetic_feph, tmp_path, timeout, signals):
    """A stop signal the run swallows arms the grace of a run that did not stop, whatever its
    timeout: the command ends with 130, the interrupted line and the command that continues, the
    finished run kept and the stuck one left to run again. Before, a second Ctrl-C only said
    "stopping" and the command hung (timeout 0), or it waited for the timeout and exited 1."""
    env = write_distribution(tmp_path / "site", "stopswallow", ENTERED_SWALLOWER)
    entered = tmp_path / "entered"
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, FIRST_HUNG_LATER.format(plugin="stopswallow").replace("timeout = 1", f"timeout = {timeout}").replace(
        '"stopswallow"]', f'"stopswallow"]\noptions.stopswallow.entered = "{entered}"'))
    outdir = tmp_path / "runs"
    command = command_with_grace(str(path), "--output", str(outdir), "--executor", "inline", env=env)
    ends = time.monotonic() + 120
    while not entered.exists() and command.poll() is None and time.monotonic() < ends:
        time.sleep(0.1)
    assert entered.exists(), f"the run never reached its preprocess: {finish(command)[-3000:]}"
    stopped = time.monotonic()
    for signum in signals:
        command.send_signal(signum)
        time.sleep(0.3)
    said = " ".join(finish(command, 60).split())
    assert command.returncode == 130, said
    assert time.monotonic() - stopped < 30, "ended by the grace after the stop, not by the timeout"
    records = by_experiment(outdir)
    assert records["first"]["status"] == "done" and set(records) == {"first"}, "the stuck run left to run again"
    assert "was stopped by a signal in plugin 'stopswallow' (preprocess) and did not stop" in said
    assert f"interrupted: finished runs are saved; to continue, run: python -m feph_finetune {path} --output {outdir} --executor inline" in said
    assert "Traceback" not in said


#: A plugin whose preprocess deadlocks in native code that keeps the interpreter's lock (the GIL):
#: ``ctypes.PyDLL`` does not release it, and a default mutex locked twice by one thread never returns.
GIL_HOLDER = '''
import ctypes

from feph_finetune import hookimpl


@hookimpl
def preprocess(context):
    mutex = ctypes.create_string_buffer(64)  # zeroed: an unlocked default mutex (glibc's PTHREAD_MUTEX_INITIALIZER)
    libc = ctypes.PyDLL(None)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)
'''


@pytest.mark.slow(40)
def test_an_inline_run_hung_in_native_code_holding_the_interpreter_ends_the_command(synthetic_feph, tmp_path):
    """The watchdog is a Python thread, which cannot run while native code holds the GIL: the
    command hung for ever. faulthandler's C timer ends it 5 s after the watchdog's time (1 s
    timeout + 10 s grace), with every thread's stack on stderr and exit 1; the run finished before
    is kept, and the hung one, without a record, runs again next time."""
    import subprocess

    from conftest import REPO

    env = write_distribution(tmp_path / "site", "holder", GIL_HOLDER)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, FIRST_HUNG_LATER.format(plugin="holder"))
    outdir = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "feph_finetune", str(path), "--output", str(outdir), "--executor", "inline"],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, **env}, timeout=150)  # hung: TimeoutExpired
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Timeout (0:00:16)!" in result.stderr, "faulthandler's header: 1 s timeout + 10 s grace + 5 s"
    plugin = tmp_path / "site" / "feph_holder.py"
    assert f'{plugin}", line {line_of(plugin, "pthread_mutex_lock")} in preprocess' in result.stderr, "the stack names the plugin's line"
    records = by_experiment(outdir)
    assert records["first"]["status"] == "done", "a run finished before is kept"
    assert set(records) == {"first"}, "the hung run is left to the next invocation"


#: A tracking plugin whose hook ``options.stall.hook`` sleeps while ``options.stall.marker``
#: exists, for at most a minute (so that code which never stops it still ends the test).
STALLING_TRACKER = '''
import time
from pathlib import Path

from feph_finetune import hookimpl


@hookimpl
def plugin_options():
    return {"marker": "", "hook": ""}


def stall(options, hook):
    ends = time.monotonic() + 60
    while options["hook"] == hook and Path(options["marker"]).exists() and time.monotonic() < ends:
        time.sleep(0.05)


@hookimpl
def track_run_start(run, context):
    stall(context.options, "track_run_start")


@hookimpl
def track_run_end(run, status, record, context):
    stall(context.options, "track_run_end")


@hookimpl
def track_matrix_end(matrix, records, output, options):
    stall(options, "track_matrix_end")
'''


def stalled_matrix(tmp_path, synthetic_feph, hook: str, timeout: float):
    marker = tmp_path / "stall"
    marker.touch()
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f"""
[experiments.A]
timeout = {timeout}
options.adam.head_epochs = 0
options.adam.epochs = 0
""", f'[tracking]\nplugins = ["stall"]\n[tracking.stall]\nmarker = "{marker}"\nhook = "{hook}"\n')
    return path, marker


@pytest.fixture
def stall_plugin(tmp_path, monkeypatch):
    """The tracking plugin ``stall``, installed for this process and its children."""
    env = write_distribution(tmp_path / "site", "stall", STALLING_TRACKER)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield env
    sys.modules.pop("feph_stall", None)


#: A tracking plugin whose ``track_matrix_end`` deadlocks as :data:`GIL_HOLDER` does, and whose
#: preprocess fails its run at once (the matrix's end comes without any training).
GIL_HOLDING_TRACKER = '''
import ctypes

from feph_finetune import hookimpl


@hookimpl
def preprocess(context):
    raise RuntimeError("fails the run before any training")


@hookimpl
def track_matrix_end(matrix, records, output, options):
    mutex = ctypes.create_string_buffer(64)
    libc = ctypes.PyDLL(None)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)
'''


def test_a_tracker_hung_in_track_matrix_end_holding_the_interpreter_ends_the_command(synthetic_feph, tmp_path):
    """The command waits for ``track_matrix_end`` in a Python thread, which cannot wake while the
    hook's native code holds the GIL: it hung for ever. It now ends 5 s after the bound (shortened
    to 1 s here, 120 s in a command), every thread's stack on stderr, exit 1."""
    import subprocess
    import textwrap

    from conftest import REPO

    env = write_distribution(tmp_path / "site", "gilend", GIL_HOLDING_TRACKER)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\npreprocess = ["face_crop", "gilend"]\n', '[tracking]\nplugins = ["gilend"]\n')
    command = textwrap.dedent(f"""
        import sys
        from feph_finetune.execution import tracking
        from feph_finetune.__main__ import run
        tracking.MATRIX_HOOK_BOUND_S = 1.0
        sys.argv[1:] = [{str(path)!r}, "--output", {str(tmp_path / "runs")!r}, "--executor", "inline"]
        sys.exit(run())
    """)
    result = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, **env}, timeout=120)  # hung: TimeoutExpired
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Timeout (0:00:06)!" in result.stderr, "faulthandler's header: the 1 s bound + 5 s"
    plugin = tmp_path / "site" / "feph_gilend.py"
    assert f'{plugin}", line {line_of(plugin, "pthread_mutex_lock")} in track_matrix_end' in result.stderr


@pytest.mark.slow(45)
def test_a_tracker_stuck_in_track_run_end_costs_no_finished_run(stall_plugin, synthetic_feph, tmp_path):
    """The run's files and record were ready: the process executor stops it at its timeout and
    keeps its result, with a warning naming the tracker; nothing is run again next time."""
    path, marker = stalled_matrix(tmp_path, synthetic_feph, "track_run_end", 30)
    outdir = tmp_path / "runs"
    result = run_cli(str(path), "--output", str(outdir), env=stall_plugin)
    marker.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = RunStore(outdir).records()
    assert record["status"] == "done" and record["metrics"]["accuracy"] is not None
    warning = f"run {record['id']}: tracking plugin 'stall' did not return from track_run_end within the run's timeout (30 s)"
    assert record["notes"][-1].startswith(warning)
    assert f"warning: {warning}" in " ".join(result.stdout.split())
    assert not (outdir / record["id"] / "result.pending.json").exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_run_stopped_or_killed_in_track_run_end_is_kept(stall_plugin, synthetic_feph, tmp_path, stop):
    """Ctrl-C (or a kill) while a tracker logs a finished run's end: the run had finished, so
    it stands (at once after a stop, at the next invocation after a kill) and is not trained
    again; before, it was left without a result.json and trained again."""
    import subprocess

    from conftest import REPO
    from feph_finetune.execution.runner import STOPPED_IN_TRACKING

    path, marker = stalled_matrix(tmp_path, synthetic_feph, "track_run_end", 0)
    outdir = tmp_path / "runs"
    command = subprocess.Popen([sys.executable, "-m", "feph_finetune", str(path), "--output", str(outdir), "--executor", "inline"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env={**os.environ, **stall_plugin})
    ends = time.monotonic() + 120
    while not list(outdir.glob("*/result.pending.json")) and time.monotonic() < ends and command.poll() is None:
        time.sleep(0.1)
    command.send_signal(stop)
    printed = command.communicate(timeout=60)[0]
    marker.unlink()
    assert command.returncode == (130 if stop == signal.SIGINT else -signal.SIGKILL), printed
    runner = quiet_runner(path, outdir, InlineExecutor({}))
    outcome = runner.run_all(runner.matrix.runs)
    (record,) = RunStore(outdir).records()
    assert outcome.skipped == [record["id"]] and record["status"] == "done", "kept, not trained again"
    assert record["notes"][-1] == STOPPED_IN_TRACKING
    assert not (outdir / record["id"] / "result.pending.json").exists()
    if stop == signal.SIGINT:
        assert f"warning: run {record['id']}: {STOPPED_IN_TRACKING}" in " ".join(printed.split())


def test_force_sets_a_never_settled_record_aside_rather_than_keeping_it(tmp_path):
    """``--force`` redoes a run: a record left before ``track_run_end`` must not stand in for the
    rerun; it is set aside as ``result.previous.json``, as a finished record is."""
    import json

    store = RunStore(tmp_path)
    (tmp_path / "A-x-1").mkdir()
    (tmp_path / "A-x-1" / "result.pending.json").write_text(json.dumps({"id": "A-x-1"}), encoding="utf-8")
    store.discard("A-x-1")
    assert not store.settle_pending("A-x-1", "note") and store.result("A-x-1") is None
    assert json.loads((tmp_path / "A-x-1" / "result.previous.json").read_text(encoding="utf-8")) == {"id": "A-x-1"}


def test_a_tracker_stuck_in_track_run_start_is_named(stall_plugin, synthetic_feph, tmp_path):
    path, marker = stalled_matrix(tmp_path, synthetic_feph, "track_run_start", 2)
    runner = quiet_runner(path, tmp_path / "runs", InlineExecutor({}))
    runner.run_all(runner.matrix.runs)
    marker.unlink()
    (record,) = runner.store.records()
    assert record["error"]["message"] == "timed out after 2 s in plugin 'stall' (track_run_start)"


def test_a_tracker_stuck_in_track_matrix_end_is_given_up_after_its_bound(stall_plugin, synthetic_feph, tmp_path, monkeypatch):
    from feph_finetune.execution import tracking

    monkeypatch.setattr(tracking, "MATRIX_HOOK_BOUND_S", 1.0)
    path, marker = stalled_matrix(tmp_path, synthetic_feph, "track_matrix_end", 0)
    runner = quiet_runner(path, tmp_path / "runs", InlineExecutor({}))
    began = time.monotonic()
    try:
        outcome = runner.run_all(runner.matrix.runs)
        elapsed = time.monotonic() - began
    finally:
        marker.unlink()  # the abandoned call ends
    assert len(outcome.done) == 1
    said = " ".join(runner.console.file.getvalue().split())
    assert "warning: tracking plugin 'stall' did not return from track_matrix_end within 1 s" in said
    assert elapsed < 50, "the command went on after the bound"


def test_a_run_stopped_while_it_predicts_the_test_split_says_so(synthetic_feph, tmp_path):
    """Where a run is between its last epoch and its evaluation: the prediction of the test split."""
    from feph_finetune.data.preparation import DataSource
    from feph_finetune.execution.job import Whereabouts, execute_run

    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\noptions.adam.head_epochs = 0\noptions.adam.epochs = 1\n")
    runner = quiet_runner(path, tmp_path / "runs", InlineExecutor({}))
    (run,) = runner.matrix.runs
    whereabouts, places = Whereabouts(), []

    def note(event):
        whereabouts.note(event)
        places.append(whereabouts.of(run.id))

    assert execute_run(runner.job(run), runner.plugins, DataSource(), note) == "done"
    trained = max(index for index, place in enumerate(places) if place.startswith("training: "))
    assert places[trained + 1] == "test-set prediction" and "evaluation" in places[trained + 1:]
