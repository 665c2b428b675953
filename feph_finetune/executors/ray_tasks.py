"""The ``ray`` executor: each run as a task of a Ray cluster (``pip install "feph_finetune[ray]"``).

Ray is imported only here, inside :meth:`RayExecutor.execute`. ``address`` is a running cluster
(``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:10001"``); empty starts a local cluster for the
invocation and stops it afterwards. If this process is already connected to Ray
(``ray.init`` was called), that connection is used as it is.

Workers need not share a filesystem with the driver. The driver reads the dataset and computes
each distinct frame array once (a matrix has one per input size and frame steps: 0.38 GB for
FePh at 224 px), puts it into Ray's object store once, and every task reads it from there
(zero-copy on the worker's node); a task runs :func:`~feph_finetune.execution.execute_run` into
a temporary folder on its worker and returns the run's files, which the driver writes into its
own results store, ``result.json`` last, as tasks finish. A task's worker serves that one task
and exits (``max_calls=1``), so TensorFlow's memory never accumulates in a reused worker; a task
whose worker or node is lost is retried ``max_retries`` times, then recorded as failed. Workers
need the same Python packages as the driver (feph_finetune, its plugins, TensorFlow).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from feph_finetune.execution import Report, RunJob, context_factory, execute_run, run_record
from feph_finetune.executors import Executor, InProcess
from feph_finetune.preparation import DataSource, RunInputs
from feph_finetune.results import RESULT_FILE, RunStore, atomic_path

INSTALL = 'pip install "feph_finetune[ray]"'
#: Seconds between two polls of the event queue while tasks run.
POLL_S = 0.25


class RayExecutor(Executor):
    name = "ray"
    summary = "each run as a task of a Ray cluster (address), num_cpus/num_gpus per run"
    options = {"address": "", "num_cpus": 1.0, "num_gpus": 0.0, "max_retries": 2}

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("ray") is None:
            return f"Ray is not installed; install it with: {INSTALL}"
        return None

    @classmethod
    def check(cls, options: dict[str, Any]) -> dict[str, str]:
        problems = super().check(options)
        for key in ("num_cpus", "num_gpus"):
            if key not in problems and key in options and options[key] < (0 if key == "num_gpus" else 1e-9):
                problems[key] = "must be positive" if key == "num_cpus" else "must be 0 or more"
        if "max_retries" not in problems and options.get("max_retries", 0) < 0:
            problems["max_retries"] = "must be 0 or more"
        address = options.get("address", "")
        if "address" not in problems and address not in ("", "auto") and not (address.startswith("ray://") or ":" in address):
            problems["address"] = f"expected \"auto\", \"HOST:PORT\", \"ray://HOST:PORT\" or \"\" (a local cluster for this invocation), got {address!r}"
        return problems

    def execute(self, jobs: list[RunJob], report: Report, here: InProcess) -> None:
        import ray
        from ray.util.queue import Queue

        connected_here = not ray.is_initialized()
        if connected_here:
            ray.init(address=self.settings["address"] or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        pending: dict[Any, RunJob] = {}
        try:
            events = Queue()
            shipped = ship_inputs(jobs, here)
            task = ray.remote(max_calls=1, num_cpus=self.settings["num_cpus"], num_gpus=self.settings["num_gpus"], max_retries=self.settings["max_retries"])(run_task)
            pending = {task.remote(job, shipped[job.id], events): job for job in jobs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                drain(events, report)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        write_run_files(job, ray.get(ref))
                    except Exception as error:  # the worker or node was lost beyond the retries
                        RunStore(Path(job.output)).finish(job.id, lost_record(job, error, self.settings["max_retries"]))
                    drain(events, report)
                    self.report_finished(job, report)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if connected_here:
                ray.shutdown()


def ship_inputs(jobs: list[RunJob], here: InProcess) -> dict[str, Any]:
    """Per job, the object-store reference of its dataset and frame array; each distinct array
    is put once."""
    import ray

    refs: dict[tuple, Any] = {}
    by_job = {}
    for job in jobs:
        inputs = here.source.inputs(job.run, here.plugins, context_factory(job.run, {}))
        key = (inputs.dataset_key, inputs.frames_key)
        if key not in refs:
            refs[key] = ray.put(inputs)
        by_job[job.id] = refs[key]
    return by_job


def run_task(job: RunJob, inputs: RunInputs, events) -> dict[str, bytes]:
    """On a Ray worker: execute the run in a temporary folder and return its files by name.

    The worker's stdout and stderr (TensorFlow's notices) go to the run's ``stderr.log``, which
    comes back with a failed run only; events go to the driver through the ``events`` queue.
    """
    folder = Path(tempfile.mkdtemp(prefix="feph_finetune_ray_"))
    try:
        log = open(folder / "stderr.log", "wb")
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)  # this worker serves this task only (max_calls=1)

        def report(event: dict) -> None:
            try:
                events.put_nowait(event)
            except Exception:  # a full or lost queue costs progress lines, never the run
                pass

        return run_in_folder(job, inputs, folder, report)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_in_folder(job: RunJob, inputs: RunInputs, folder: Path, report: Report) -> dict[str, bytes]:
    """Execute ``job`` into a results store under ``folder`` from the shipped ``inputs`` alone
    (the dataset's folder is never read) and return the run's files, ``stderr.log`` included
    when the run failed and the folder has one."""
    from feph_finetune.plugins import get_plugins

    source = DataSource()
    source.add(inputs)
    status = execute_run(RunJob(job.run, job.split_seed, str(folder / "store")), get_plugins(), source, report)
    run_dir = folder / "store" / job.id
    files = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file() and not path.name.startswith(".")}
    if status != "done" and (folder / "stderr.log").is_file():
        sys.stderr.flush()
        files["stderr.log"] = (folder / "stderr.log").read_bytes()
    return files


def drain(events, report: Report) -> None:
    while True:
        count = events.qsize()
        if not count:
            return
        for event in events.get_nowait_batch(count):
            report(event)


def write_run_files(job: RunJob, files: dict[str, bytes]) -> None:
    """Write a task's files into the driver's store, each atomically, ``result.json`` last."""
    store = RunStore(Path(job.output))
    store.discard(job.id)
    for name in sorted(files, key=lambda name: name == RESULT_FILE):
        with atomic_path(store.run_dir(job.id) / name) as temporary:
            temporary.write_bytes(files[name])


def lost_record(job: RunJob, error: BaseException, retries: int) -> dict[str, Any]:
    record = run_record(job.run, "failed")
    record["error"] = {
        "plugin": "core",
        "hook": "ray",
        "type": type(error).__name__,
        "message": f"the run's Ray task failed after {retries} retries: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
        "traceback": str(error)[-4000:],
    }
    now = time.time()
    record["timing"] = {"total_s": 0.0, "stages": {}, "started": now, "finished": now}
    record["counters"] = {}
    return record
