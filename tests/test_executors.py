"""Executors: the same results wherever runs execute, a dead child fails its run only, the parent
stays small, Ctrl-C/SIGTERM stop everything, third-party executors, options checked first."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from feph_finetune import Executor, execute_run, hookimpl
from feph_finetune.cli import main
from feph_finetune.execution.executors import InProcess
from feph_finetune.execution.executors.inline import InlineExecutor
from feph_finetune.execution.executors.process import ProcessExecutor
from feph_finetune.plugins import get_plugins
from feph_finetune.execution.progress import MatrixView
from feph_finetune.results.store import RunStore
from feph_finetune.execution.runner import MatrixRunner
from feph_finetune.session import Session, plan_matrix

from conftest import REPO, run_cli, write_killer_distribution, write_matrix

TWO_SEEDS = """
[experiments.A]
deterministic = true
grid = { seed = [1, 2] }
"""


def quiet_runner(path: Path, outdir: Path, executor) -> MatrixRunner:
    """A runner of the matrix of ``path`` (a session's) into ``outdir``, through ``executor``, quietly."""
    return Session(path, output=outdir, console=Console(file=io.StringIO())).runner(executor=executor)


def run_matrix(path: Path, outdir: Path, executor) -> RunStore:
    """The whole matrix of ``path`` through ``executor``, quietly, into ``outdir``."""
    runner = quiet_runner(path, outdir, executor)
    outcome = runner.run_all(runner.matrix.runs)
    assert not outcome.failed, [runner.store.result(run_id)["error"] for run_id in outcome.failed]
    return runner.store


def results(store: RunStore) -> dict[str, tuple]:
    """Per run id: its metrics and its predicted probabilities."""
    return {record["id"]: (record["metrics"], store.predictions(record["id"])[1]) for record in store.records()}


def assert_same_results(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for run_id in a:
        assert a[run_id][0] == b[run_id][0], run_id
        np.testing.assert_array_equal(a[run_id][1], b[run_id][1])


@pytest.mark.slow(55)
@pytest.mark.numerics
def test_inline_and_process_executors_give_identical_results_and_jobs_overlap(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_SEEDS)
    inline = results(run_matrix(path, tmp_path / "inline", InlineExecutor({})))
    one_job = results(run_matrix(path, tmp_path / "jobs1", ProcessExecutor({"jobs": 1})))
    two_jobs_store = run_matrix(path, tmp_path / "jobs2", ProcessExecutor({"jobs": 2}))
    assert len(inline) == 2
    assert_same_results(inline, one_job)
    assert_same_results(inline, results(two_jobs_store))
    first, second = (record["timing"] for record in two_jobs_store.records())
    assert first["started"] < second["finished"] and second["started"] < first["finished"], "two jobs should run at the same time"
    assert not list((tmp_path / "jobs2").glob("*/stderr.log")), "a done run keeps no stderr.log"


@pytest.mark.slow(80)
def test_a_killed_child_fails_its_run_only_and_the_next_invocation_completes_the_matrix(synthetic_feph, tmp_path):
    env = write_killer_distribution(tmp_path / "site")
    marker = tmp_path / "kill-me"
    marker.touch()
    experiments = f"""
    [experiments.good]
    deterministic = true
    options.adam.head_epochs = 0

    [experiments.killed]
    deterministic = true
    augment = ["killer"]
    options.killer.marker = "{marker}"
    options.adam.head_epochs = 0
    """  # no head stage: a child's death and the runs after it need one all-layers epoch only
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    outdir = tmp_path / "runs"
    first = run_cli(str(path), "--output", str(outdir), "--jobs", "2", env=env)
    assert first.returncode == 1, first.stderr
    records = {record["experiment"]: record for record in RunStore(outdir).records()}
    assert records["good"]["status"] == "done"
    killed = records["killed"]
    assert killed["status"] == "failed"
    assert killed["error"]["exit_signal"] == "SIGKILL" and "SIGKILL" in killed["error"]["message"]
    assert isinstance(killed["error"]["stderr_tail"], list)
    assert (outdir / killed["id"] / "stderr.log").is_file()
    assert "1 of 2 runs failed" in first.stdout

    marker.unlink()
    second = run_cli(str(path), "--output", str(outdir), env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "skipped 1 finished run " in second.stdout
    straight = tmp_path / "straight"
    assert run_cli(str(path), "--executor", "inline", "--output", str(straight), env=env).returncode == 0
    assert report_rows(outdir) == report_rows(straight)


def report_rows(outdir: Path) -> list[dict]:
    """The JSON report less the wall-clock times, which no two invocations share."""
    result = run_cli("report", str(outdir), "--format", "json")
    assert result.returncode == 0, result.stderr
    return [{key: value for key, value in row.items() if key != "time_s"} for row in json.loads(result.stdout)]


PARENT_MEMORY = r"""
import io, json, re, sys
from pathlib import Path
from rich.console import Console
import feph_finetune

def rss_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

class FinishedLines(io.StringIO):
    # The console's file: samples this process's memory as each run's end is printed (done or FAILED).
    samples = []

    def write(self, text):
        for line in text.splitlines():
            if found := re.match(r"\S+ \[\d+/\d+\] (done|FAILED) ", line):  # 12:00:00 [3/10] done A-x-...: accuracy ...
                self.samples.append(("done" if found.group(1) == "done" else "failed", rss_kib()))
        return super().write(text)

result = feph_finetune.run_matrix(Path(sys.argv[1]), output=sys.argv[2], executor="process", jobs=2, console=Console(file=FinishedLines(), width=200))
print(json.dumps({"samples": FinishedLines.samples, "done": len(result.done), "tensorflow": "tensorflow" in sys.modules or "keras" in sys.modules}))
"""


@pytest.mark.slow(60)
def test_the_parent_neither_imports_tensorflow_nor_grows_across_ten_runs(synthetic_feph, tmp_path):
    experiments = """
    [experiments.A]
    grid = { seed = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }
    options.adam.head_epochs = 0
    options.adam.epochs = 0
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    result = subprocess.run([sys.executable, "-c", PARENT_MEMORY, str(path), str(tmp_path / "runs")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert not measured["tensorflow"]
    assert [status for status, _ in measured["samples"]] == ["done"] * 10 and measured["done"] == 10
    rss = [kib for _, kib in measured["samples"]]
    assert rss[-1] - rss[1] < 8 * 1024, f"the parent grew from {rss[1]} to {rss[-1]} KiB"


def start_with_two_children(synthetic_feph, tmp_path) -> tuple[subprocess.Popen, list[int], Path]:
    """The command on a two-run matrix with ``--jobs 2``, once both run processes exist."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_SEEDS)
    outdir = tmp_path / "runs"
    command = subprocess.Popen([sys.executable, "-m", "feph_finetune", str(path), "--output", str(outdir), "--jobs", "2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    children: list[int] = []
    while len(children) < 2 and time.monotonic() < deadline and command.poll() is None:
        time.sleep(0.2)
        children = worker_children(command.pid)
    assert len(children) == 2, "both children should have started"
    return command, children, outdir


def test_sigterm_stops_the_children_and_exits_130_leaving_no_result(synthetic_feph, tmp_path):
    command, children, outdir = start_with_two_children(synthetic_feph, tmp_path)
    command.send_signal(signal.SIGTERM)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not any(map(running, children))
    assert not list(outdir.glob("*/result.json"))


def test_a_killed_command_leaves_no_run_process_behind(synthetic_feph, tmp_path):
    command, children, outdir = start_with_two_children(synthetic_feph, tmp_path)
    command.kill()
    command.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while any(map(running, children)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(running, children)), "a run process outlived its killed command"
    assert not list(outdir.glob("*/result.json"))


def test_runs_whose_process_cannot_start_fail_naming_why_and_the_matrix_ends(synthetic_feph, tmp_path):
    """A TensorFlow whose import crashes takes the fork server down with it (here a stand-in that
    aborts): each run fails saying so, instead of the command ending with a traceback."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "tensorflow.py").write_text("import os\nos.abort()\n")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_SEEDS)
    result = run_cli(str(path), "--output", str(tmp_path / "runs"), env={"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    records = RunStore(tmp_path / "runs").records()
    assert [record["status"] for record in records] == ["failed", "failed"]
    assert all("could not start" in record["error"]["message"] for record in records)
    assert all("crashed with signal 6 (SIGABRT); python -c \"import tensorflow\" shows whether TensorFlow loads" in record["error"]["message"]
               for record in records), records[0]["error"]["message"]


def test_a_fork_server_killed_from_outside_is_said_so_not_blamed_on_tensorflow(synthetic_feph, tmp_path):
    """The server killed (SIGKILL: by hand, the out-of-memory killer) while it imports TensorFlow
    (here a stand-in that kills its own process): the run says which signal ended the server and
    that it runs again next time; before, it said to check whether TensorFlow loads."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "tensorflow.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_SEEDS)
    result = run_cli(str(path), "--output", str(tmp_path / "runs"), env={"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    records = RunStore(tmp_path / "runs").records()
    assert [record["status"] for record in records] == ["failed", "failed"]
    for record in records:
        message = record["error"]["message"]
        assert "the server that forks run processes was killed by signal 9 (SIGKILL) from outside this command" in message, message
        assert "the next invocation runs this run again" in message and "import tensorflow" not in message


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def test_a_run_uses_the_threads_its_configuration_names_in_its_child(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\nthreads = 1\n")
    store = run_matrix(path, tmp_path / "runs", ProcessExecutor({}))
    (record,) = store.records()
    environment = json.loads((store.run_dir(record["id"]) / "environment.json").read_text())
    assert environment["threads"] == {"intra_op": 1, "inter_op": 1}


def test_threads_that_cannot_apply_in_a_running_tensorflow_are_named_not_ignored():
    code = (
        "import tensorflow as tf\n"
        "from feph_finetune.training.stages import use_threads\n"
        "tf.constant(1.0) + 1.0\n"
        "use_threads(0)\n"
        "try:\n    use_threads(1)\nexcept RuntimeError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "threads = 1 cannot apply" in result.stdout and "process executor" in result.stdout


def worker_children(pid: int) -> list[int]:
    """The pids of the run processes of the command ``pid``: the children of its fork server
    (Linux /proc)."""
    servers = [child for child in process_children(pid) if b"multiprocessing.forkserver" in cmdline(child)]
    return [worker for server in servers for worker in process_children(server)]


def process_children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class ReversedExecutor(Executor):
    """A third-party executor: runs the jobs here, last first, and remembers them."""

    name = "reversed"
    summary = "last run first"
    options = {"note": ""}
    executed: list[str] = []

    def execute(self, jobs, report, here: InProcess) -> None:
        for job in reversed(jobs):
            execute_run(job, here.plugins, here.source, report)
            ReversedExecutor.executed.append((job.id, self.settings["note"]))
            self.report_finished(job, report)


class ReversedPlugin:
    @hookimpl
    def register_executors(self, register):
        register(ReversedExecutor)


def test_a_third_party_executor_registered_through_the_hook_runs_the_matrix(synthetic_feph, tmp_path):
    get_plugins().pm.register(ReversedPlugin(), name="reversed_executor")
    ReversedExecutor.executed = []
    extra = '[executor]\nname = "reversed"\n\n[executor.reversed]\nnote = "from the TOML"\n\n'
    path = tmp_path / "m.toml"
    write_matrix(path, synthetic_feph, "[experiments.A]\n")
    path.write_text(path.read_text().replace("[dataset]", extra + "[dataset]", 1))
    outdir = tmp_path / "runs"
    assert main([str(path), "--output", str(outdir)]) == 0
    (record,) = RunStore(outdir).records()
    assert ReversedExecutor.executed == [(record["id"], "from the TOML")]
    assert record["status"] == "done"


class NoAugmentation:
    @hookimpl
    def augment(self, context):
        return None


def test_a_child_without_a_plugin_the_run_names_fails_the_run_naming_the_plugin(synthetic_feph, tmp_path):
    get_plugins().pm.register(NoAugmentation(), name="here_only")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\naugment = ["here_only"]\n')
    runner = quiet_runner(path, tmp_path / "runs", ProcessExecutor({}))
    (run_id,) = runner.run_all(runner.matrix.runs).failed
    error = runner.store.result(run_id)["error"]
    assert (error["plugin"], error["hook"]) == ("here_only", "load")
    assert "not installed in the process executing this run" in error["message"] and "--executor inline" in error["message"]


def test_executor_mistakes_are_reported_with_their_place_before_any_work(synthetic_feph, tmp_path, capsys):
    extra = textwrap.dedent("""
    [executor]
    name = "proces"

    [executor.process]
    jobs = "many"
    device = [0]

    [executor.slurm]
    queue = "gpu"
    """)
    path = tmp_path / "m.toml"
    write_matrix(path, synthetic_feph, "[experiments.A]\n")
    path.write_text(path.read_text().replace("[dataset]", extra + "\n[dataset]", 1))
    assert main([str(path), "--dry-run"]) == 2
    errors = capsys.readouterr().err
    line = {text: number for number, text in enumerate(path.read_text().splitlines(), start=1)}
    name, jobs, device, slurm = line['name = "proces"'], line['jobs = "many"'], line["device = [0]"], line["[executor.slurm]"]
    assert f"{path}:{name} executor.name: no executor 'proces' (did you mean 'process'?)" in errors
    assert f"{path}:{jobs} executor.process.jobs: expected a number of runs at once" in errors
    assert f"{path}:{device} executor.process.device: executor 'process' has no option 'device' (did you mean 'devices'?)" in errors
    assert f"{path}:{slurm} executor.slurm: unknown key 'slurm'" in errors

    good = write_matrix(tmp_path / "good.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(good), "--dry-run", "--executor", "inline", "--jobs", "2"]) == 2
    assert "--jobs: executor 'inline' has no option 'jobs'" in capsys.readouterr().err
    assert main([str(good), "--dry-run", "--devices", "0,x"]) == 2
    assert "--devices: expected an array of GPU indices such as [0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("devices", ["0,,1", "", "0,1,", " "])
def test_devices_with_an_empty_index_are_refused(synthetic_feph, tmp_path, capsys, devices):
    """An empty item is a typo, not 'no device': ``--devices 0,,1`` would silently use two GPUs."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run", "--devices", devices]) == 2
    assert "--devices: expected an array of GPU indices such as [0, 1], got array [" in capsys.readouterr().err


def test_the_ray_executor_without_ray_exits_2_with_the_install_command(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    code = f"import sys; sys.modules['ray'] = None\nfrom feph_finetune.cli import main\nsys.exit(main([{str(path)!r}, '--executor', 'ray', '--dry-run']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert "executor 'ray' is not available" in result.stderr and 'pip install "feph_finetune[ray]"' in result.stderr


def test_the_live_view_fits_80_columns_and_shows_every_state(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.M-FT-SGD-SAM-long-name]\ngrid = { seed = [1, 2, 3, 4] }\n')
    runs = plan_matrix(path)
    console = Console(width=80, force_terminal=True, record=True, file=io.StringIO())
    view = MatrixView(console, runs, concurrency=2, executor="process")
    events = [
        {"event": "started", "run": runs[0].id, "time": 0},
        {"event": "finished", "run": runs[0].id, "status": "done", "accuracy": 0.4321, "seconds": 61.0, "error": None},
        {"event": "started", "run": runs[1].id, "time": 0},
        {"event": "progress", "run": runs[1].id, "stage": "sgd", "stage_number": 2, "stages": 2, "epoch": 6, "epochs": 7, "loss": 1.2345},
        {"event": "started", "run": runs[2].id, "time": 0},
        {"event": "finished", "run": runs[2].id, "status": "failed", "accuracy": None, "seconds": 3.0, "error": "core (process): WorkerDied: the run's process was killed by SIGKILL (out of memory, or killed by hand)"},
    ]
    console.print(view.render())  # before any event: no estimate yet
    for event in events:
        view.report(event)
    console.print(view.render())
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "time left known after the first run" in text
    assert "4 runs: 1 queued" in text and "1 queued" in text and "1 running" in text and "1 done" in text and "1 failed" in text
    assert "about 0:32 left" in text  # (one queued run of the mean 32 s + 32 s left of the running one) / 2 at once
    assert "sgd (stage 2/2) epoch 6/7 loss 1.234" in text and "accuracy 43.2%" in text and "WorkerDied" in text

    plain = Console(width=200, file=io.StringIO())
    with MatrixView(plain, runs, concurrency=1) as log:
        for event in events:
            log.report(event)
    lines = plain.file.getvalue().splitlines()
    assert len(lines) == 1 + len(events) and "done " + runs[0].id + ": accuracy 43.2% in 1:01" in lines[2]


@pytest.mark.parametrize("runs, slots, said", [(1, 2, "1 at a time"), (2, 8, "2 at a time"), (3, 2, "2 at a time")])
def test_the_header_never_says_more_runs_at_a_time_than_there_are(synthetic_feph, tmp_path, runs, slots, said):
    """"running 1 run with executor 'process', 2 at a time" said what cannot happen; a Ray
    cluster's count (its ``concurrency`` event) is capped the same way."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f"[experiments.A]\ngrid = {{ seed = {list(range(1, runs + 1))} }}\n")
    planned = plan_matrix(path)
    plain = Console(width=200, file=io.StringIO())
    with MatrixView(plain, planned, concurrency=slots, executor="process") as view:
        view.report({"event": "concurrency", "runs": slots, "why": f"{slots} CPUs in the cluster, num_cpus = 1 a run"})
    header, cluster = plain.file.getvalue().splitlines()
    assert header.endswith(f"running {runs} run{'s' if runs > 1 else ''} with executor 'process', {said}")
    assert cluster.endswith(f"{said} ({slots} CPUs in the cluster, num_cpus = 1 a run)")


def test_progress_counts_epochs_within_each_stage_and_numbers_the_stages(synthetic_feph, tmp_path, capsys):
    """Counted across stages, the second stage's only epoch read "adam epoch 2/2", as if Adam had
    two epochs: each epoch is counted within its stage, and the stage is numbered."""
    import re

    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n[experiments.A.options.adam]\nhead_epochs = 1\nepochs = 2\n")
    assert main([str(path), "--executor", "inline", "--output", str(tmp_path / "runs")]) == 0
    said = re.findall(r": \S+ \(stage (\d+)/(\d+)\) epoch (\d+)/(\d+)$", capsys.readouterr().out, re.MULTILINE)
    assert [tuple(map(int, place)) for place in said] == [(1, 2, 1, 1), (2, 2, 1, 2), (2, 2, 2, 2)]


class ChangesItsOptions:
    """An evaluate plugin that changes ``context.options`` in place (a list and a table) and
    records what it saw."""

    @hookimpl
    def plugin_options(self):
        return {"seen": [0], "table": {"a": 1}}

    @hookimpl
    def evaluate(self, y_true, y_prob, context):
        context.options["seen"].append(1)
        context.options["table"]["a"] += 1
        return {"seen": float(len(context.options["seen"])), "table_a": float(context.options["table"]["a"])}


@pytest.mark.slow(30)
def test_a_hook_that_changes_its_options_in_place_changes_no_later_runs_options(synthetic_feph, tmp_path):
    """With the inline executor the second run saw ``table.a = 2``, the third 3: options its run id
    and config.json do not record, its result depending on the runs before it in the process."""
    get_plugins().pm.register(ChangesItsOptions(), name="optmut")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nphases = ["cv"]\nevaluate = ["paper_metrics", "optmut"]\n')
    runner = quiet_runner(path, tmp_path / "inline", InlineExecutor({}))
    assert not runner.run_all(runner.matrix.runs[:2]).failed  # two folds of one configuration: the options they share
    seen = sorted((record["metrics"]["seen"], record["metrics"]["table_a"]) for record in runner.store.records())
    assert seen == [(2.0, 2.0), (2.0, 2.0)], seen
