"""The ``ray`` executor: each run as a task of a Ray cluster (``pip install "feph_finetune[ray]"``).

Ray is imported only inside :meth:`RayExecutor.execute` (and the connection it makes,
:mod:`feph_finetune.execution.executors.ray_connect`). ``address`` is a running cluster (``"auto"``,
``"HOST:PORT"`` or ``"ray://HOST:10001"``); empty takes Ray's ``RAY_ADDRESS`` where it is set, else
starts a local cluster for the invocation and stops it afterwards. If this process is already connected to Ray (``ray.init`` was called), that
connection is used as it is. Runs at once: the cluster's CPUs over ``num_cpus`` (and GPUs over
``num_gpus``), which the executor reports once connected; a run's ``timeout`` counts from its
task's start (its ``started`` event) and cancels the task.

Workers need not share a filesystem with the driver. The driver reads the dataset and computes
each distinct frame array once (a matrix has one per input size and frame steps: 0.38 GB for
FePh at 224 px), puts it into Ray's object store once, and every task reads it from there
(zero-copy on the worker's node); a task runs :func:`~feph_finetune.execution.job.execute_run` into
a temporary folder on its worker and returns the run's files, which the driver writes into its
own results store, ``result.json`` last, as tasks finish. A task's worker serves that one task
and exits (``max_calls=1``), so TensorFlow's memory never accumulates in a reused worker; a task
whose worker or node is lost is retried ``max_retries`` times, then recorded as failed. Workers
need the same Python packages as the driver (feph_finetune, its plugins, TensorFlow). A task
sends its run's files (:data:`KEPT_FILES_EVENT`) as its tracking plugins' ``track_run_end``
starts: a run stopped there (its timeout, a stop signal) had finished and keeps its result, as
with the other executors (:func:`~feph_finetune.execution.job.stopped_run_record`).
"""

from __future__ import annotations

from dataclasses import replace
import functools
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from feph_finetune.execution.job import Activity, Report, RunJob, Whereabouts, context_factory, error_record, execute_run, failed_record, stopped_run_record, timed_out_record, timeout_of
from feph_finetune.config.options import Option
from feph_finetune.execution.executors import Executor, ExecutorError, ExecutorLost, InProcess
from feph_finetune.execution.executors.inline import RunTimedOut, StuckRun, alarm, watchdog
from feph_finetune.execution.executors.ray_connect import abandon, cluster_address, cluster_lost, connect, host_and_port, import_ray, unreachable, within_stop_wait
from feph_finetune.plugins import PluginCallError, hook_listener
from feph_finetune.data.preparation import DataSource, RunInputs
from feph_finetune.printable import counted
from feph_finetune.results.store import RESULT_FILE, RunStore, WriteRefused, atomic_path

INSTALL = 'pip install "feph_finetune[ray]"'
#: Seconds between two polls of the event sink while tasks run.
POLL_S = 0.25
#: Ray counts a resource in ten-thousandths (``RESOURCE_UNIT_SCALING``): it refuses a quantity
#: finer than that when the first task is submitted.
RESOURCE_UNIT = 0.0001
#: The event a task sends with its run's files (``files``: name to bytes, ``result.pending.json``
#: among them) as the run's ``track_run_end`` starts; the driver keeps it, never reports it.
KEPT_FILES_EVENT = "kept_files"


def resource_quantity_problem(quantity: float) -> str | None:
    """Why ``quantity`` (``num_cpus``, ``num_gpus``) is no quantity Ray takes, or None: it must be
    0 or a multiple of :data:`RESOURCE_UNIT`, so that ``--dry-run`` says so, not the first task."""
    units = quantity / RESOURCE_UNIT
    if abs(units - round(units)) > 1e-6:  # a decimal such as 0.0003 is 2.9999999999999996 units in binary floating point
        return f"must be a multiple of {RESOURCE_UNIT} (Ray counts resources in ten-thousandths), not {quantity!r}"
    return None


class RayExecutor(Executor):
    name = "ray"
    summary = "each run as a task of a Ray cluster (address), num_cpus/num_gpus per run"
    options = {
        "address": Option("", 'the cluster: "auto", "HOST:PORT", "ray://HOST:PORT", or "" (RAY_ADDRESS where set, else a local cluster for this invocation)',
                          check=lambda address: None if address in ("", "auto") or host_and_port(address) is not None
                          else f'expected "auto", "HOST:PORT", "ray://HOST:PORT" or "" (RAY_ADDRESS where set, else a local cluster for this invocation), got {address!r}'),
        "num_cpus": Option(1.0, "CPUs per run (a run asking more than a node has never starts)", minimum=0, exclusive_minimum=True, maximum=1024,
                           check=resource_quantity_problem),
        "num_gpus": Option(0.0, "GPUs per run (a run asking more than a node has never starts)", minimum=0, maximum=64,
                           check=resource_quantity_problem),
        "max_retries": Option(2, "retries of a run whose worker or node was lost", minimum=0, maximum=100),
        "connect_timeout": Option(60.0, "seconds to reach the cluster", minimum=0, exclusive_minimum=True, maximum=3600),
    }

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("ray") is None:
            return f"Ray is not installed; install it with: {INSTALL}"
        return None

    def concurrency(self) -> None:
        """Unknown until connected: the cluster's resources decide (a ``concurrency`` event)."""
        return None

    def execute(self, jobs: list[RunJob], report: Report, here: InProcess) -> None:
        ray = import_ray()

        disconnect = None if ray.is_initialized() else connect(self.settings["address"], self.settings["connect_timeout"])
        pending: dict[Any, RunJob] = {}
        kept: dict[str, dict[str, bytes]] = {}
        try:
            report(self.concurrency_event())
            sink = ray.remote(num_cpus=0)(EventSink).remote()
            shipped = ship_inputs(jobs, here, report)
            task = ray.remote(max_calls=1, num_cpus=self.settings["num_cpus"], num_gpus=self.settings["num_gpus"], max_retries=self.settings["max_retries"])(run_task)
            pending = {task.remote(job, shipped[job.id], sink): job for job in jobs if job.id in shipped}
            self.follow(pending, sink, report, kept, ClusterWatch(self.settings["address"]))
        except ExecutorLost:  # nothing of Ray can be waited for: give it up before its own 60 s end the process
            cluster_lost()
            disconnect = functools.partial(disconnect, given_up=True) if disconnect is not None else None
            raise
        except BaseException:
            within_stop_wait(lambda: [ray.cancel(ref, force=True) for ref in pending], or_else=abandon)
            for job in pending.values():  # stopped in track_run_end: the runner keeps them (RunStore.settle_pending)
                if job.id in kept:
                    write_run_files(job, kept[job.id])
            raise
        finally:
            if disconnect is not None:
                disconnect()

    def follow(self, pending: dict[Any, RunJob], sink: Any, report: Report, kept: dict[str, dict[str, bytes]], cluster: "ClusterWatch | None" = None) -> None:
        """Report the tasks' events and write each task's files as it ends, until none is left
        (``pending`` empties); stop a task past its run's ``timeout``, counted from its start.
        ``kept`` receives the files a run sent as its ``track_run_end`` started
        (:data:`KEPT_FILES_EVENT`), by run id, until its task ends. ``cluster`` raises
        :class:`ExecutorLost` once the cluster is gone (:class:`ClusterWatch`)."""
        import ray

        whereabouts, started, timed_out = Whereabouts(), {}, {}
        refs = {job.id: ref for ref, job in pending.items()}

        def relay() -> None:
            for event in drain(sink):
                if event.get("event") == KEPT_FILES_EVENT:
                    kept[event["run"]] = event["files"]
                    continue
                whereabouts.note(event)
                if event.get("event") == "started":
                    started.setdefault(event.get("run"), time.time())
                report(event)

        queue = QueueWatch(self.settings, report)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            relay()
            running = sum(1 for run_id in started if refs[run_id] in pending)
            queue.look(running, len(pending) - running)
            if cluster is not None:
                cluster.look()
            now = time.time()
            for run_id, began in started.items():
                job = pending.get(refs[run_id])
                if job is not None and run_id not in timed_out and timeout_of(job) and now - began >= timeout_of(job):
                    timed_out[run_id] = (whereabouts.of(run_id), whereabouts.hook_of(run_id))
                    ray.cancel(refs[run_id], force=True)
            for ref in ready:
                job = pending.pop(ref)
                files = kept.pop(job.id, None)
                try:
                    write_run_files(job, ray.get(ref))
                except WriteRefused:  # the results folder cannot take the run's files: the matrix stops
                    raise
                except Exception as error:  # stopped for its timeout, or its worker or node was lost beyond the retries
                    if job.id in timed_out:
                        self.record_timed_out(job, files, *timed_out[job.id], started[job.id], report)
                    else:
                        RunStore(Path(job.output)).finish(job.id, lost_record(job, error, self.settings["max_retries"]))
                relay()
                self.report_finished(job, report)

    @staticmethod
    def record_timed_out(job: RunJob, files: dict[str, bytes] | None, where: str, in_hook: tuple[str, str] | None, started: float, report: Report) -> None:
        """Record a run whose task was stopped for its timeout, ``where`` it was (in the plugin
        hook ``in_hook``); one stopped in a tracker's ``track_run_end`` keeps the result of the
        ``files`` it sent as that hook started (:func:`~feph_finetune.execution.job.stopped_run_record`)."""
        if files is not None:
            write_run_files(job, files)
        record, warning = stopped_run_record(job, timeout_of(job), where, started, in_hook)
        RunStore(Path(job.output)).finish(job.id, record)
        if warning:
            report({"event": "warning", "run": job.id, "message": warning})

    def concurrency_event(self) -> dict[str, Any]:
        """How many runs the connected cluster runs at once: its CPUs (and GPUs) over each
        run's ``num_cpus`` (and ``num_gpus``), as a ``concurrency`` event."""
        import ray

        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        runs = int(cpus / self.settings["num_cpus"] + 1e-9)
        why = f"{cpus:g} CPUs in the cluster, num_cpus = {self.settings['num_cpus']:g} a run"
        if self.settings["num_gpus"]:
            runs = min(runs, int(gpus / self.settings["num_gpus"] + 1e-9))
            why += f"; {gpus:g} GPUs, num_gpus = {self.settings['num_gpus']:g} a run"
        if runs == 0:  # every task would wait for resources that do not exist, for ever
            raise ExecutorError(f"the Ray cluster cannot run a single run now: {why}; lower executor.ray.num_cpus or num_gpus, or add nodes")
        return {"event": "concurrency", "runs": runs, "why": why}


#: Seconds between two looks at whether the cluster's GCS still answers (:class:`ClusterWatch`).
CLUSTER_LOOK_S = 2.0
#: Seconds a look gives the GCS to accept a connection.
CLUSTER_ANSWER_S = 5.0


class ClusterWatch:
    """Notices a cluster lost midway (its head's GCS stopped or killed) within seconds, and raises
    :class:`ExecutorLost` saying so.

    Ray itself waits 60 s for a GCS that is gone, then ends the driver's process from its C++ core
    worker (``Failed to connect to GCS within 60 seconds``, exit 1): a process exit no Python
    code sees, so there would be no error line, no tables and no command that continues. Every
    :data:`CLUSTER_LOOK_S` the driver opens (and closes) a TCP connection to the GCS; one refused
    or unanswered means the cluster is gone. Not noticed: a lost raylet or node while the GCS
    lives (Ray retries the node's tasks, then records them failed)."""

    def __init__(self, address: str):
        import ray

        try:
            self.gcs = ray.get_runtime_context().gcs_address
        except Exception:  # a Ray Client connection (ray://) has no GCS of its own to knock at: not watched
            self.gcs = None
        where = cluster_address(address)[1] if address not in ("", "auto") or os.environ.get("RAY_ADDRESS") else ""
        self.cluster = f"the Ray cluster at {where}" if where and where != "a local cluster" else "the local Ray cluster"
        self.last = time.monotonic()

    def look(self) -> None:
        if self.gcs is None or time.monotonic() - self.last < CLUSTER_LOOK_S:
            return
        self.last = time.monotonic()
        why = unreachable(self.gcs, CLUSTER_ANSWER_S)
        if why:
            raise ExecutorLost(f"lost {self.cluster}: its GCS at {self.gcs} does not answer: {why}; "
                               "the cluster's head stopped or was killed, and the runs under way are left to run again")


#: Seconds with runs queued and none running before the driver asks the cluster whether its CPUs
#: are held elsewhere (:class:`QueueWatch`): a task takes a second or two to start on a free cluster.
QUEUE_LOOK_S = 5.0


class QueueWatch:
    """Says, once, that the runs wait for the cluster's CPUs (or GPUs) because other jobs hold
    them, where none of the matrix's runs has run for :data:`QUEUE_LOOK_S` and the cluster has
    fewer free than a run asks; then, once, that they start. Without it the log said "2 at a
    time" and then nothing for as long as another job kept the cluster busy."""

    def __init__(self, settings: dict[str, Any], report: Report):
        self.settings, self.report = settings, report
        self.since, self.waiting, self.said = time.monotonic(), False, False

    def look(self, running: int, queued: int) -> None:
        """Called between two polls with the matrix's runs running and queued now."""
        if running or not queued:
            if self.waiting:
                self.waiting = False
                self.report({"event": "note", "message": "the cluster has room again: the queued runs start"})
            self.since = time.monotonic()
            return
        if self.said or time.monotonic() - self.since < QUEUE_LOOK_S:
            return
        self.since = time.monotonic()
        held = self.held_resources()
        if held:
            self.said = self.waiting = True
            self.report({"event": "note", "message": f"{counted(queued, 'run')} queued: {held}; they start as these are freed"})

    def held_resources(self) -> str:
        """What the cluster lacks for one run now ("0 of 2 CPUs free in the cluster, num_cpus = 1
        a run (other jobs hold them)"), or empty where a run would fit."""
        import ray

        free, total = ray.available_resources(), ray.cluster_resources()
        for name, setting in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
            wanted = self.settings[setting]
            if wanted and free.get(name, 0.0) + 1e-9 < wanted:
                return (f"{free.get(name, 0.0):g} of {total.get(name, 0.0):g} {name}s free in the cluster, "
                        f"{setting} = {wanted:g} a run (other jobs hold them)")
        return ""


class EventSink:
    """A Ray actor that holds the runs' events until the driver takes them.

    Tasks call ``put.remote(event)`` without waiting for it: a task that waits on Ray
    (``ray.get``) lends its CPUs back to the cluster while it waits, and the cluster starts
    another task on them, so runs would overlap beyond ``num_cpus``. Ray delivers one caller's
    calls to an actor in order, so a run's events stay in order; the last ones of a task may be
    lost when its worker exits (the driver reports the run's end from its files)."""

    def __init__(self):
        self.events: list[dict] = []

    def put(self, event: dict) -> None:
        self.events.append(event)

    def take(self) -> list[dict]:
        events, self.events = self.events, []
        return events


#: Why the command ends with a run whose inputs the driver prepared and that did not stop.
DRIVER_ADVICE = ("The Ray driver prepares a run's inputs (its preprocess hooks) in its own process and cannot end code there, "
                 "so the command ends here; fix the plugin, or leave it out of this run.")


def ship_inputs(jobs: list[RunJob], here: InProcess, report: Report) -> dict[str, Any]:
    """Per job, the object-store reference of its dataset and frame array; each distinct array
    is put once.

    The driver calls the runs' ``preprocess`` hooks and frame steps here, so a run's
    ``timeout`` applies here too (a :func:`~feph_finetune.execution.executors.inline.alarm`, from the main
    thread only) and a plugin's error fails its run only: such a run is recorded, reported
    finished and left out of the result. A hook that swallows the stop (of its timeout, or a
    stop signal) is given the inline executor's grace, then ends the command
    (:class:`~feph_finetune.execution.executors.inline.StuckRun`): no code can take the driver back.
    """
    import ray

    refs: dict[tuple, Any] = {}
    by_job = {}
    whereabouts = Whereabouts()
    for job in jobs:
        activity, started = Activity(job.id, whereabouts.note), time.time()
        listening = hook_listener.set(activity.hook)
        record = None
        try:
            activity.step("data preparation on the driver")
            stuck = StuckRun(job, report, here, whereabouts, started, DRIVER_ADVICE)
            with watchdog(timeout_of(job), stuck.end), alarm(timeout_of(job)):
                inputs = here.source.inputs(job.run, here.plugins, context_factory(job.run, {}))
        except RunTimedOut:
            record = timed_out_record(job.run, timeout_of(job), whereabouts.of(job.id), started)
        except PluginCallError as error:
            record = failed_record(job.run, error_record(error.plugin, error.hook, error.error), started)
        finally:
            hook_listener.reset(listening)
        if record is not None:
            store = RunStore(Path(job.output))
            store.discard(job.id)
            store.finish(job.id, record)
            Executor.report_finished(job, report)
            continue
        key = (inputs.dataset_key, inputs.frames_key)
        if key not in refs:
            refs[key] = ray.put(inputs)
        by_job[job.id] = refs[key]
    return by_job


def run_task(job: RunJob, inputs: RunInputs, sink) -> dict[str, bytes]:
    """On a Ray worker: execute the run in a temporary folder and return its files by name.

    The worker's stdout and stderr (TensorFlow's notices) go to the run's ``stderr.log``, which
    comes back with a failed run only; events go to the driver through the :class:`EventSink`
    ``sink``, never waited for.
    """
    folder = Path(tempfile.mkdtemp(prefix="feph_finetune_ray_"))
    try:
        log = open(folder / "stderr.log", "wb")
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)  # this worker serves this task only (max_calls=1)

        def report(event: dict) -> None:
            try:
                sink.put.remote(event)
            except Exception:  # a lost sink costs progress lines, never the run
                pass

        return run_in_folder(job, inputs, folder, report)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_in_folder(job: RunJob, inputs: RunInputs, folder: Path, report: Report) -> dict[str, bytes]:
    """Execute ``job`` into a results store under ``folder`` from the shipped ``inputs`` alone
    (the dataset's folder is never read) and return the run's files, ``stderr.log`` included
    when the run failed and the folder has one. As its ``track_run_end`` starts, the run's files
    so far (its pending result among them) are reported too (:data:`KEPT_FILES_EVENT`)."""
    from feph_finetune.plugins import get_plugins

    source = DataSource()
    source.add(inputs)
    run_dir = folder / "store" / job.id
    status = execute_run(replace(job, output=str(folder / "store")), get_plugins(), source, files_kept_at_run_end(job.id, run_dir, report))
    files = run_files(run_dir)
    if status != "done" and (folder / "stderr.log").is_file():
        sys.stderr.flush()
        files["stderr.log"] = (folder / "stderr.log").read_bytes()
    return files


def files_kept_at_run_end(run_id: str, run_dir: Path, report: Report) -> Report:
    """``report``, which also reports the run's files (a :data:`KEPT_FILES_EVENT`) before the
    first event of its tracking plugins' ``track_run_end``: its pending result is written then
    (:meth:`~feph_finetune.execution.tracking.RunTracking.end`)."""
    sent = False

    def reporting(event: dict) -> None:
        nonlocal sent
        if not sent and event.get("event") == "activity" and event.get("hook") == "track_run_end":
            sent = True
            report({"event": KEPT_FILES_EVENT, "run": run_id, "files": run_files(run_dir)})
        report(event)

    return reporting


def run_files(run_dir: Path) -> dict[str, bytes]:
    """The files of a run's folder by name (hidden ones, temporaries, left out)."""
    return {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file() and not path.name.startswith(".")}


def drain(sink) -> list[dict]:
    """The events the sink holds; none when it cannot be reached (progress lines are lost, the
    runs are not)."""
    import ray

    try:
        return ray.get(sink.take.remote(), timeout=30)
    except Exception:
        return []


def write_run_files(job: RunJob, files: dict[str, bytes]) -> None:
    """Write a task's files into the driver's store, each atomically, ``result.json`` last (the
    files kept as its ``track_run_end`` started have ``result.pending.json`` instead)."""
    store = RunStore(Path(job.output))
    store.discard(job.id)
    for name in sorted(files, key=lambda name: name == RESULT_FILE):
        with atomic_path(store.run_dir(job.id) / name) as temporary:
            temporary.write_bytes(files[name])


def lost_record(job: RunJob, error: BaseException, retries: int) -> dict[str, Any]:
    return failed_record(job.run, {
        "plugin": "core",
        "hook": "ray",
        "type": type(error).__name__,
        "message": f"the run's Ray task failed after {retries} retries: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
        "traceback": str(error)[-4000:],
    })
