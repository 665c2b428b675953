"""The ``ray`` executor on a local Ray cluster (127.0.0.1, 2 CPUs) that this module starts once and
stops: the same results as ``inline``, lost workers retried then recorded, workers that never
read the dataset's folder, runs at once within ``num_cpus``, timeouts; and, in commands of their
own, addresses it cannot connect to and SIGTERM."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from feph_finetune.config.reading import read_config
from feph_finetune.execution.job import RunJob, context_factory
from feph_finetune.execution.executors import ExecutorError
from feph_finetune.execution.executors.inline import InlineExecutor
from feph_finetune.execution.executors.ray_tasks import RayExecutor, run_in_folder, write_run_files
from feph_finetune.config.matrix import build_matrix
from feph_finetune.plugins import get_plugins
from feph_finetune.data.preparation import DataSource
from feph_finetune.results.store import RunStore

from conftest import REPO, line_of, run_cli, write_distribution, write_hang_distribution, write_killer_distribution, write_matrix
from test_executors import TWO_SEEDS, assert_same_results, quiet_runner, results, run_matrix
from test_timeouts import STALLING_TRACKER, stalled_matrix


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local cluster for this module; its workers (and this process) see the killer, hang and
    stall plugins."""
    import ray

    site = tmp_path_factory.mktemp("site")
    previous = os.environ.get("PYTHONPATH")
    write_hang_distribution(site)
    write_distribution(site, "stall", STALLING_TRACKER)
    os.environ["PYTHONPATH"] = write_killer_distribution(site)["PYTHONPATH"]  # inherited by Ray's workers
    sys.path.insert(0, str(site))
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level=logging.ERROR)
    yield site
    ray.shutdown()
    sys.path.remove(str(site))
    sys.modules.pop("feph_killer", None)
    sys.modules.pop("feph_hang", None)
    sys.modules.pop("feph_stall", None)
    if previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = previous


@pytest.mark.slow(30)
def test_ray_gives_the_same_results_as_inline(ray_cluster, synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_SEEDS)
    inline = results(run_matrix(path, tmp_path / "inline", InlineExecutor({})))
    on_ray = results(run_matrix(path, tmp_path / "ray", RayExecutor({})))
    assert len(on_ray) == 2
    assert_same_results(inline, on_ray)


def test_a_run_whose_worker_dies_is_retried_then_recorded_failed(ray_cluster, synthetic_feph, tmp_path):
    marker = tmp_path / "always"
    marker.touch()
    experiments = f'[experiments.killed]\naugment = ["killer"]\noptions.killer.marker = "{marker}"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    runner = quiet_runner(path, tmp_path / "runs", RayExecutor({"max_retries": 1}))
    outcome = runner.run_all(runner.matrix.runs)
    (run_id,) = outcome.failed
    error = runner.store.result(run_id)["error"]
    assert (error["plugin"], error["hook"]) == ("core", "ray")
    assert "after 1 retries" in error["message"] and "Worker" in error["type"] + error["message"]


def test_a_worker_needs_only_the_shipped_inputs_not_the_dataset_folder(synthetic_feph, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_feph, data)
    path = write_matrix(tmp_path / "m.toml", data, "[experiments.A]\n")
    plugins = get_plugins()
    matrix = build_matrix(read_config(path), plugins)
    (run,) = matrix.runs
    inputs = DataSource().inputs(run, plugins, context_factory(run, {}))
    data.rename(tmp_path / "moved away")
    events: list[dict] = []
    job = RunJob(run, matrix.seed, str(tmp_path / "driver"))
    files = run_in_folder(job, inputs, tmp_path / "worker", events.append)
    write_run_files(job, files)
    assert RunStore(tmp_path / "driver").is_done(run.id)
    assert {"config.json", "history.json", "metrics.json", "predictions.npz", "environment.json", "result.json"} <= set(files)
    assert events[0]["event"] == "started" and any(event["event"] == "progress" for event in events)


def most_at_once(records: list[dict]) -> int:
    """The most runs whose [started, finished] intervals (worker clock) share an instant."""
    times = [record["timing"] for record in records]
    return max(sum(1 for other in times if other["started"] <= timing["started"] < other["finished"]) for timing in times)


THREE_QUICK_RUNS = """
[experiments.A]
grid = { seed = [1, 2, 3] }
options.adam.head_epochs = 0
options.adam.epochs = 0
"""


@pytest.mark.slow(30)
@pytest.mark.parametrize("num_cpus, at_once", [(2, 1), (1, 2)])
def test_runs_at_once_never_exceed_the_cpus_over_num_cpus_and_the_header_says_so(ray_cluster, synthetic_feph, tmp_path, num_cpus, at_once):
    """A task that waited on Ray (``ray.get``) to send an event lent its CPUs back, and a third
    run started beside two (2 CPUs, num_cpus = 1)."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, THREE_QUICK_RUNS)
    runner = quiet_runner(path, tmp_path / "runs", RayExecutor({"num_cpus": float(num_cpus)}))
    assert not runner.run_all(runner.matrix.runs).failed
    assert most_at_once(runner.store.records()) <= at_once
    assert f"{at_once} at a time (2 CPUs in the cluster, num_cpus = {num_cpus} a run)" in runner.console.file.getvalue()


@pytest.mark.parametrize("on", ["driver", "worker"])
def test_a_ray_run_past_its_timeout_is_stopped_and_the_others_finish(ray_cluster, synthetic_feph, tmp_path, on):
    """``preprocess`` runs on the driver, which prepares the inputs it ships, and again on the
    worker, whose task is then cancelled."""
    marker = tmp_path / "hang"
    marker.touch()
    experiments = f"""
    [experiments.hung]
    timeout = 5
    preprocess = ["face_crop", "hang"]
    options.hang.marker = "{marker}"
    options.hang.hook = "preprocess"
    options.hang.spare_pid = {os.getpid() if on == "worker" else 0}

    [experiments.later]
    options.adam.head_epochs = 0
    options.adam.epochs = 0
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    runner = quiet_runner(path, tmp_path / "runs", RayExecutor({"max_retries": 2}))
    outcome = runner.run_all(runner.matrix.runs)
    records = {record["experiment"]: record for record in runner.store.records()}
    assert records["later"]["status"] == "done" and len(outcome.failed) == 1
    assert records["hung"]["error"]["message"] == "timed out after 5 s in plugin 'hang' (preprocess)"


@pytest.mark.slow(40)
def test_a_ray_run_stopped_in_track_run_end_keeps_its_result(ray_cluster, synthetic_feph, tmp_path):
    """The run had finished: its files reach the driver as its tracker's ``track_run_end``
    starts, and its timeout keeps them, with the warning naming the tracker, as with the other
    executors; before, the run was recorded as timed out without its files and trained again."""
    path, marker = stalled_matrix(tmp_path, synthetic_feph, "track_run_end", 30)
    runner = quiet_runner(path, tmp_path / "runs", RayExecutor({}))
    try:
        outcome = runner.run_all(runner.matrix.runs)
    finally:
        marker.unlink()
    (record,) = runner.store.records()
    assert outcome.done == [record["id"]] and record["metrics"]["accuracy"] is not None, record.get("error")
    assert {"metrics.json", "predictions.npz", "history.json", "environment.json"} <= {path.name for path in (tmp_path / "runs" / record["id"]).iterdir()}
    warning = f"run {record['id']}: tracking plugin 'stall' did not return from track_run_end within the run's timeout (30 s)"
    assert record["notes"][-1].startswith(warning)
    assert warning in " ".join(runner.console.file.getvalue().split())
    assert not (tmp_path / "runs" / record["id"] / "result.pending.json").exists()


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_address_nothing_listens_on_exits_2_at_once(synthetic_feph, tmp_path, address):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    began = time.monotonic()
    result = run_cli(str(path), "--output", str(tmp_path / "runs"), "--executor", "ray", "--set", f"executor.ray.address={address}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot connect to the Ray cluster at {address}: connection refused" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3
    assert time.monotonic() - began < 60


@pytest.fixture
def silent_port():
    """A port on 127.0.0.1 that accepts connections and never answers (a cluster that does not
    let the driver in)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_a_cluster_that_never_answers_is_given_up_after_connect_timeout(synthetic_feph, tmp_path, silent_port):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    address = f"127.0.0.1:{silent_port}"
    began = time.monotonic()
    result = run_cli(str(path), "--output", str(tmp_path / "runs"), "--executor", "ray", "--set", f"executor.ray.address={address}", "--set", "executor.ray.connect_timeout=3")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot connect to the Ray cluster at {address}: no answer within 3 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - began < 90


def sigterm_when(command: subprocess.Popen, ready, signum: int = signal.SIGTERM, group: bool = False) -> tuple[int, str]:
    """Send ``signum`` (to its process group with ``group``, as a terminal's Ctrl-C does) to
    ``command`` once ``ready()`` (or after 3 minutes); its exit code and stderr."""
    deadline = time.monotonic() + 180
    while not ready() and time.monotonic() < deadline and command.poll() is None:
        time.sleep(0.05)
    if group:
        os.killpg(command.pid, signum)
    else:
        command.send_signal(signum)
    _, stderr = command.communicate(timeout=180)
    return command.returncode, stderr


def descendants(pid: int) -> list[str]:
    """The command lines (NUL-separated) of every process below ``pid``, whichever of its threads
    started it (Linux: ``/proc/PID/task/TID/children``)."""
    found = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:  # it has ended
        return found
    for thread in threads:
        try:
            children = open(f"/proc/{pid}/task/{thread}/children").read().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                found.append(open(f"/proc/{child}/cmdline", errors="surrogateescape").read())
            except OSError:
                continue
            found += descendants(child)
    return found


def test_sigterm_while_connecting_exits_130_with_the_continue_command(synthetic_feph, tmp_path, silent_port):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    log = tmp_path / "stdout.log"
    with open(log, "w") as stdout:
        command = subprocess.Popen(
            [sys.executable, "-m", "feph_finetune", str(path), "--output", str(tmp_path / "runs"), "--executor", "ray", "--set", f"executor.ray.address=127.0.0.1:{silent_port}"],
            cwd=REPO, stdout=stdout, stderr=subprocess.PIPE, text=True,
        )
        seen: list[float] = []

        def connecting() -> bool:  # the header is the last line before the connection; then 3 s into it
            if not seen and "with executor 'ray'" in log.read_text():
                seen.append(time.monotonic())
            return bool(seen) and time.monotonic() - seen[0] > 3

        code, stderr = sigterm_when(command, connecting)
    assert seen, "the command should have reached the connection"
    assert code == 130, stderr
    assert "interrupted: to continue, run:" in stderr and "SIGTERM received" not in stderr
    assert "finished runs are saved" not in stderr, "no run had finished"


def test_sigterm_while_ray_runs_exits_130_with_the_continue_command(synthetic_feph, tmp_path):
    """A local cluster of the command's own, a run that hangs in evaluate: SIGTERM ends all of it."""
    env = write_hang_distribution(tmp_path / "site")
    marker = tmp_path / "hang"
    marker.touch()
    experiments = f'[experiments.hung]\nevaluate = ["paper_metrics", "hang"]\noptions.hang.marker = "{marker}"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    log = tmp_path / "stdout.log"
    with open(log, "w") as stdout:
        command = subprocess.Popen(
            [sys.executable, "-m", "feph_finetune", str(path), "--output", str(tmp_path / "runs"), "--executor", "ray"],
            cwd=REPO, stdout=stdout, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
        )
        code, stderr = sigterm_when(command, lambda: "started hung" in log.read_text())
    assert "started hung" in log.read_text(), f"the run should have started; exit {code}; stderr: {stderr[-3000:]}"
    assert code == 130, stderr
    assert "interrupted: to continue, run:" in stderr and "finished runs are saved" not in stderr, "no run had finished"
    assert "SIGTERM received" not in stderr and "Traceback" not in stderr
    assert not list((tmp_path / "runs").glob("*/result.json"))


#: A driver that connects to a local cluster and disconnects (the ray executor's two calls into
#: Ray) while a thread watches SIGTERM's disposition below Python (``sigaction``; on Linux
#: glibc the handler is the struct's first field) and sends SIGTERM each time it changes from
#: the handler Python installed: to the default, the signal kills the process (exit -15).
SIGTERM_DISPOSITION_WATCH = """
import ctypes, os, signal, sys, threading, time
libc, buffer = ctypes.CDLL(None), ctypes.create_string_buffer(256)
def disposition():
    libc.sigaction(signal.SIGTERM, None, buffer)
    return int.from_bytes(buffer.raw[:ctypes.sizeof(ctypes.c_void_p)], sys.byteorder)
handled = []
signal.signal(signal.SIGTERM, lambda *_: handled.append(1))
python_handler, watching = disposition(), [True]
def watch():
    seen = python_handler
    while watching[0]:
        if disposition() != seen:
            seen = disposition()
            print("SIGTERM's disposition changed behind Python:", hex(seen), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.0002)
import feph_finetune.api
from feph_finetune.execution.executors.ray_connect import connect
threading.Thread(target=watch, daemon=True).start()
connect("", 60)()
watching[0] = False
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
print("handled", len(handled))
"""


@pytest.mark.slow(30)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sigaction's struct as glibc lays it out")
def test_sigterm_keeps_the_commands_handler_while_ray_starts_and_shuts_down_a_cluster(tmp_path):
    """Ray's C++ failure-signal handler took SIGTERM over at ``ray.init`` and set it back to the
    default as ``ray.shutdown`` destroyed the core worker, a second before the command's
    handler was put back: a SIGTERM right after the last run was done killed the command with
    no word (exit -15; test_a_stop_signal_while_a_local_cluster_starts_or_stops...[done-TERM],
    once in a full suite). The watch above fires within a fraction of a millisecond of any change."""
    script = tmp_path / "watch.py"
    script.write_text(SIGTERM_DISPOSITION_WATCH)
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.splitlines() == ["handled 1"], (done.returncode, done.stdout, done.stderr[-2000:])


@pytest.mark.slow(60)
def test_a_preprocess_hook_that_swallows_its_stop_on_the_driver_ends_the_command(synthetic_feph, tmp_path):
    """The driver runs the runs' preprocess hooks itself (to ship their inputs): one that catches
    every stop gets the inline executor's grace past its timeout, then the command records it as
    timed out "and did not stop", naming the plugin, and exits 1; before, it hung for ever."""
    from test_timeouts import FIRST_HUNG_LATER, SWALLOWER, by_experiment, command_with_grace, finish

    env = write_distribution(tmp_path / "site", "swallower", SWALLOWER)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, FIRST_HUNG_LATER.format(plugin="swallower").replace("timeout = 1", "timeout = 3"))
    outdir = tmp_path / "runs"
    command = command_with_grace(str(path), "--output", str(outdir), "--executor", "ray", env=env)
    said = " ".join(finish(command, 240).split())
    assert command.returncode == 1, said
    records = by_experiment(outdir)
    assert set(records) == {"hung"}, "the command ended while the driver prepared the runs' inputs"
    error = records["hung"]["error"]
    assert error["type"] == "TimedOut" and error["message"].startswith("timed out after 3 s in plugin 'swallower' (preprocess) and did not stop")
    assert f"run {records['hung']['id']} timed out after 3 s in plugin 'swallower' (preprocess) and did not stop" in said
    assert "The Ray driver prepares a run's inputs" in said and "Traceback" not in said
    assert f"to continue, run: python -m feph_finetune {path} --output {outdir} --executor ray" in said
    assert "finished runs are saved" not in said, "the one run recorded timed out"


def test_a_cluster_without_the_resources_of_one_run_stops_the_command_instead_of_waiting_for_ever(ray_cluster, synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    runner = quiet_runner(path, tmp_path / "runs", RayExecutor({"num_gpus": 1.0}))
    with pytest.raises(ExecutorError, match="cannot run a single run now: 2 CPUs in the cluster, num_cpus = 1 a run; 0 GPUs, num_gpus = 1 a run"):
        runner.run_all(runner.matrix.runs)
    assert not list((tmp_path / "runs").glob("*/result.json"))


@pytest.mark.parametrize("option", ["num_cpus", "num_gpus"])
def test_a_resource_finer_than_ray_counts_is_refused_at_dry_run(synthetic_feph, tmp_path, option):
    """Ray takes resources in ten-thousandths and would refuse 0.00001 only when the first task is
    submitted; the declaration says so at ``--dry-run``, naming the file and line."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n", extra=f"""
        [executor]
        name = "ray"

        [executor.ray]
        {option} = 0.00001
    """)
    result = run_cli(str(path), "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"m.toml:{line_of(path, option)} executor.ray.{option}: must be a multiple of 0.0001" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("quantity", [0.0001, 0.0003, 0.5, 1.5, 2.0, 64.0, 0.00001, 0.00015, 1.00001])
def test_the_declared_resource_rule_agrees_with_ray(quantity):
    """What the declaration accepts, Ray accepts (checked where Ray checks a task's options,
    without starting Ray); what Ray refuses, the declaration refuses."""
    import ray

    from feph_finetune.config.options import option_problems

    declared = {option: option_problems(quantity, RayExecutor.options[option]) for option in ("num_cpus", "num_gpus")}
    for option, problems in declared.items():
        try:
            ray.remote(**{option: quantity})(lambda: None)
            ray_accepts = True
        except ValueError:
            ray_accepts = False
        assert ray_accepts or problems, f"{option} = {quantity}: Ray refuses it, the declaration accepts it"
        assert not problems or quantity in (0.00001, 0.00015, 1.00001), problems  # the three finer than 0.0001


#: Moments of a local cluster's life (``--executor ray`` without an address) and when each has
#: come: its GCS has started (``ray.init`` goes on for seconds), its raylet has (``ray.init``
#: waits for it), the run is done (the cluster is shut down). A signal once connected is
#: :func:`test_sigterm_while_ray_runs_exits_130_with_the_continue_command`.
LOCAL_CLUSTER_MOMENTS = {
    "GCS started": lambda command, log: any("gcs_server" in line for line in descendants(command.pid)),
    "raylet started": lambda command, log: any("raylet" in line for line in descendants(command.pid)),
    "run done": lambda command, log: " done " in log.read_text(),
}


def live_processes_marked(mark: str) -> list[str]:
    """The command lines of the live processes (zombies aside) whose environment has
    ``FEPH_TEST_MARK=mark``: a command's and whatever it started, orphaned or not (Linux: /proc)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            marked = f"FEPH_TEST_MARK={mark}".encode() in open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
            state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
            command = open(f"/proc/{entry}/cmdline", errors="surrogateescape").read().replace("\0", " ")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if marked and state != "Z":
            found.append(command)
    return found


@pytest.mark.slow(60)
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds the cluster's processes in /proc (Linux)")
@pytest.mark.parametrize("moment, signum, group", [  # a cluster a case (30-60 s): the moments and signals that failed
    ("GCS started", signal.SIGTERM, False),
    ("GCS started", signal.SIGTERM, True),
    ("raylet started", signal.SIGINT, True),
    ("run done", signal.SIGTERM, False),
], ids=["gcs-TERM", "gcs-TERM-group", "raylet-ctrl-c", "done-TERM"])
def test_a_stop_signal_while_a_local_cluster_starts_or_stops_exits_130_with_the_continue_command(synthetic_feph, tmp_path, moment, signum, group):
    """``ray.init`` in the main thread put Ray's SIGTERM handler in place (SystemExit: the start
    failed as "cannot connect", exit 2) or let Ray's callbacks swallow the interrupt (the matrix
    ran on, exit 0); and a Ctrl-C's KeyboardInterrupt was reported as a failure to connect.
    SIGTERM to the whole process group (GNU ``timeout``) killed the GCS too: the command waited
    for ``ray.init`` for ever, or ended after 80 s with exit 1 and Ray's own lines."""
    from feph_finetune.execution.executors.ray_connect import STOP_WAIT_S

    path = write_matrix(tmp_path / "m.toml", synthetic_feph, THREE_QUICK_RUNS.replace("[1, 2, 3]", "[1]"))
    log = tmp_path / "stdout.log"
    with open(log, "w") as stdout:
        command = subprocess.Popen(
            [sys.executable, "-m", "feph_finetune", str(path), "--output", str(tmp_path / "runs"), "--executor", "ray"],
            cwd=REPO, stdout=stdout, stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, "FEPH_TEST_MARK": str(tmp_path)},
        )
        seen: list = []

        def ready() -> bool:
            seen[:] = [LOCAL_CLUSTER_MOMENTS[moment](command, log)]
            if seen[0]:
                seen.append(time.monotonic())
            return seen[0]

        code, stderr = sigterm_when(command, ready, signum, group)
    took = time.monotonic() - seen.pop() if len(seen) == 2 else None
    assert seen == [True], f"the command should have reached the moment {moment!r}; exit {code}; stderr: {stderr[-3000:]}"
    assert code == 130, stderr
    assert "interrupted: " in stderr and "to continue, run:" in stderr
    assert moment == "run done" or "finished runs are saved" not in stderr, "no run had finished"
    assert "cannot connect" not in stderr and "Traceback" not in stderr and "GCS" not in stderr
    assert took < 2 * STOP_WAIT_S + 15, f"ended {took:.0f} s after the signal"  # the waits on Ray (STOP_WAIT_S), then the exit; doubled, plus 15 s, for a loaded machine (31 s before)
    deadline = time.monotonic() + 10  # SIGKILL is delivered at once; an agent's exit takes a moment
    while (left := live_processes_marked(str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left
