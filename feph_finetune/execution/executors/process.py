"""The ``process`` executor (the default): each run in a fresh child process, ``jobs`` at once.

The parent never imports TensorFlow; each child is forked from a server that imported it once
(:mod:`feph_finetune.execution.executors.forkserver`), runs one job and exits, returning all of its memory.
So a matrix's peak memory is that of its largest run (times ``jobs``), whatever its length; a
child that dies (SIGKILL, out of memory, a segfault) fails its run only; and with ``devices``
each child sees one GPU through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from feph_finetune.execution.job import REFUSED_EVENT, Report, RunJob, Whereabouts, failed_record, first_refused, stopped_run_record, timeout_of
from feph_finetune.config.options import Option
from feph_finetune.execution.executors import Executor, InProcess
from feph_finetune.execution.executors.forkserver import (
    exit_description, process_context, server_end, server_end_described, signal_group, start_child, stop_children,
)
from feph_finetune.execution.executors.worker import run_job
from feph_finetune.results.store import RunStore, WriteRefused, write_error

STDERR_LOG = "stderr.log"
#: Lines of a dead child's stderr kept in its ``result.json`` (all of it stays in ``stderr.log``).
STDERR_TAIL_LINES = 20
#: Seconds a child that timed out gets to write its Python stack to ``stderr.log`` (on SIGUSR1,
#: :func:`feph_finetune.execution.executors.worker.run_job`) before it is stopped.
STACK_DUMP_S = 1.0
#: Resident memory budgeted per concurrent run by ``jobs = "auto"`` on a machine without devices.
AUTO_MEMORY_PER_RUN_GIB = 2.0
#: Most runs at once. More than the CPU count is allowed (runs waiting on a GPU or a disk leave
#: cores idle), but each run is a child process holding TensorFlow (0.5 GB and more), so 256 at
#: once already asks for 128 GB: a larger number is a typo.
MAX_JOBS = 256
#: Highest GPU index: no machine holds more devices than this (CUDA numbers them from 0).
MAX_DEVICE = 255


def _distinct_devices(devices: list[int]) -> str | None:
    """Each GPU once: a repeated index would put two runs on one device without saying so;
    ``jobs`` above the number of devices is the way to run several per device."""
    repeated = sorted({device for device in devices if devices.count(device) > 1})
    if repeated:
        return (f"lists GPU {', '.join(map(str, repeated))} more than once; to run several runs per GPU, "
                f"list each once and set jobs to more than their number (jobs = {2 * len(set(devices))})")
    return None


class ProcessExecutor(Executor):
    name = "process"
    summary = "each run in a fresh child process; jobs at once; one GPU per child with devices"
    options = {
        "jobs": Option(0, "runs at once; 0: one per device, else 1; auto: one per device, else what the cores and memory allow",
                       minimum=0, maximum=MAX_JOBS, keywords=("auto",), expects='a number of runs at once (1, 2, ...) or "auto"'),
        "devices": Option([], "GPU indices, each once; each child sees one through CUDA_VISIBLE_DEVICES", kind=int, minimum=0,
                          maximum=MAX_DEVICE, check=_distinct_devices, expects="an array of GPU indices such as [0, 1]"),
    }

    def concurrency(self) -> int:
        """Runs at once: ``jobs``; 0 (the default) is one per device, else 1; ``auto`` is one
        per device, else one per two CPU cores within the available memory."""
        jobs, devices = self.settings["jobs"], self.settings["devices"]
        if jobs == "auto":
            return len(devices) or auto_jobs()
        return jobs or len(devices) or 1

    def execute(self, jobs: list[RunJob], report: Report, here: InProcess) -> None:
        devices = self.settings["devices"]
        slots = self.concurrency()
        pending, running = deque(jobs), {}
        events: queue.Queue = queue.Queue()
        whereabouts = Whereabouts()
        try:
            while pending or running:
                for slot in range(slots):
                    if slot not in running and pending:
                        device = devices[slot % len(devices)] if devices else None
                        running[slot] = Child(pending.popleft(), device, events)
                try:
                    child, event = events.get(timeout=next_deadline(running.values()))
                except queue.Empty:  # a run is past its timeout: its pipe closes once it is stopped
                    for child in running.values():
                        if child.past_deadline():
                            child.time_out(whereabouts.of(child.job.id), whereabouts.hook_of(child.job.id))
                    continue
                if event is not None and event.get("event") == REFUSED_EVENT:
                    child.refused = event
                elif event is not None:
                    whereabouts.note(event)
                    if event.get("event") == "started":
                        child.begin()
                    report(event)
                    continue
                warning = child.finish(whereabouts.hook_of(child.job.id))
                if warning:
                    report({"event": "warning", "run": child.job.id, "message": warning})
                del running[next(slot for slot, other in running.items() if other is child)]
                self.report_finished(child.job, report, runs_to_start=bool(pending))
        except BaseException:
            for child in running.values():
                child.stop()
            raise


def next_deadline(children) -> float | None:
    """Seconds until the first of ``children`` is past its timeout (None: no timeout)."""
    deadlines = [child.deadline for child in children if child.deadline is not None and child.where is None]
    return max(0.0, min(deadlines) - time.time()) if deadlines else None


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto_jobs() -> int:
    return runs_within_memory(cores_per_run=2)


def runs_within_memory(cores_per_run: int) -> int:
    """Runs at once: one per ``cores_per_run`` usable CPU cores, within the available memory at
    :data:`AUTO_MEMORY_PER_RUN_GIB` a run; where the memory cannot be read (not Linux), one per
    two cores. At least 1."""
    cores, memory = usable_cores(), available_memory_gib()
    if memory is None:
        return max(1, cores // 2)
    return max(1, min(cores // cores_per_run, int(memory // AUTO_MEMORY_PER_RUN_GIB)))


def available_memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def child_environment(device: int | None) -> dict[str, str]:
    """The command's environment, TensorFlow's C++ notices off unless the user set a level, and
    the one GPU this child may use."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(device)
    return env


class Child:
    """One worker process serving one job; its events go to ``events`` as ``(child, event)``,
    then ``(child, None)`` when its event pipe closes."""

    def __init__(self, job: RunJob, device: int | None, events: queue.Queue):
        self.job, self.events = job, events
        payload = pickle.dumps(job)  # here, so that a job that cannot travel fails loudly before its run folder changes
        self.store = RunStore(Path(job.output))
        self.store.discard(job.id)
        run_dir = self.store.run_dir(job.id)
        self.log_path = run_dir / STDERR_LOG
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.log_path.write_bytes(b"")
        except OSError as error:  # a full, read-only or forbidden results disk: named, not a traceback
            failure = write_error(error, self.log_path)
            if failure is error:
                raise
            raise failure from error
        reader, writer = process_context().Pipe(duplex=False)
        self.started = time.time()
        self.timeout = timeout_of(job)
        self.deadline: float | None = None  # set when the run starts (:meth:`begin`)
        self.begun = False  # the run has started (its ``started`` event)
        self.where: str | None = None  # where the run was when it timed out; None while it may run
        self.hook_stopped: tuple[str, str] | None = None  # the (plugin, hook) it was in then
        self.process: Any = None
        self.start_failure: str | None = None
        self.refused: dict[str, Any] | None = None  # the run's :data:`~feph_finetune.execution.job.REFUSED_EVENT`, if it sent one
        try:
            self.process = start_child(run_job, (payload, child_environment(device), str(self.log_path), writer), name=f"run-{job.id}")
        except (EOFError, OSError) as error:  # the fork server died: its TensorFlow import crashed, or it was killed
            self.start_failure = f"the run's process could not start ({type(error).__name__}): {server_end_described(server_end())}"
        except BaseException:  # interrupted while the server forks it (which waits for the server's import)
            if self.process is not None:
                stop_children([self.process])
            self.forget_unstarted()
            raise
        finally:
            writer.close()
        threading.Thread(target=self.pump, args=(reader,), daemon=True).start()

    def pump(self, reader: Any) -> None:
        """Forward the child's events until its pipe closes (always ending with the ``None`` that
        tells the parent to collect the child)."""
        try:
            while True:
                try:
                    message = reader.recv_bytes()
                except (EOFError, OSError):
                    return
                try:
                    self.events.put((self, json.loads(message)))
                except json.JSONDecodeError:
                    continue
        finally:
            reader.close()
            self.events.put((self, None))

    def begin(self) -> None:
        """The run has started (its ``started`` event): its ``timeout`` counts from now, not
        from the process's creation, which can wait for the fork server's TensorFlow import."""
        self.started, self.begun = time.time(), True
        self.deadline = self.started + self.timeout if self.timeout else None

    def past_deadline(self) -> bool:
        return self.deadline is not None and self.where is None and time.time() >= self.deadline

    def time_out(self, where: str, in_hook: tuple[str, str] | None) -> None:
        """Stop a run past its timeout, first asking it for its Python stack (into ``stderr.log``);
        :meth:`finish` records it as timed out ``where`` it was, in the (plugin, hook) ``in_hook``."""
        self.where, self.hook_stopped = where, in_hook
        if self.start_failure or not self.process.is_alive():
            return
        os.kill(self.process.pid, signal.SIGUSR1)
        self.process.join(STACK_DUMP_S)
        self.stop()

    def finish(self, in_hook: tuple[str, str] | None = None) -> str | None:
        """Wait for the child; a run without ``result.json`` is recorded as failed: timed out
        (:func:`~feph_finetune.execution.job.stopped_run_record`: a run stopped in a tracker's
        ``track_run_end`` keeps its result), or with the exit signal or code, with the end of its
        stderr, and the (plugin, hook) it was in, ``in_hook``, if any (:meth:`Whereabouts.hook_of`).
        A done run's ``stderr.log`` is removed. Returns a warning to show, or None. Raises the
        :class:`~feph_finetune.results.store.WriteRefused` of a run whose files the disk refused
        (the first file it refused), which stops the matrix: every later run would meet it too."""
        try:
            warning = self._record_end(in_hook)
        except WriteRefused as error:
            raise first_refused(self.refused) or error
        if self.refused is not None:  # the run recorded its failure itself
            raise first_refused(self.refused)
        return warning

    def _record_end(self, in_hook: tuple[str, str] | None) -> str | None:
        if self.start_failure:
            self.store.finish(self.job.id, self.death_record(None))
            return None
        self.process.join()
        code = self.process.exitcode
        signal_group(self.process, signal.SIGKILL)  # a run's processes end with it
        record, warning = self.store.result(self.job.id), None
        if record is None and self.where is not None:
            record, warning = stopped_run_record(self.job, self.timeout, self.where, self.started, self.hook_stopped, stderr_tail=tail(self.log_path, STDERR_TAIL_LINES))
            self.store.finish(self.job.id, record)
        elif record is None:
            self.store.finish(self.job.id, self.death_record(code, in_hook))
        if record is not None and record.get("status") == "done":
            self.log_path.unlink(missing_ok=True)
        return warning

    def death_record(self, code: int | None, in_hook: tuple[str, str] | None = None) -> dict[str, Any]:
        """The record of a run whose process ended without one: the plugin's failure when it
        exited (``os._exit()``) while ``in_hook`` = (plugin, hook) ran; a signal (out of memory,
        killed by hand) names the hook but stays the core's."""
        signal_name = signal.Signals(-code).name if code is not None and code < 0 else None
        plugin, hook = "core", "process"
        if code is None:
            message = self.start_failure
        elif in_hook is not None:
            ended = exit_description(code) if signal_name else f"ended (exit code {code})"
            message = f"the run's process {ended} while plugin {in_hook[0]!r} ran its {in_hook[1]} hook"
            if not signal_name:
                plugin, hook = in_hook
        else:
            message = f"the run's process {exit_description(code)}" + ("" if signal_name else " before writing its result")
        return failed_record(self.job.run, {
            "plugin": plugin,
            "hook": hook,
            "type": "WorkerDied",
            "message": message if code is None else f"{message}; its output is in {STDERR_LOG}",
            "exit_signal": signal_name,
            "exit_code": code if code is not None and code >= 0 else None,
            "stderr_tail": tail(self.log_path, STDERR_TAIL_LINES),
            "traceback": "",
        }, self.started)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`~feph_finetune.execution.executors.forkserver.STOP_GRACE_S`,
        to the run's whole process group (the run and whatever it started: a plugin's hung
        subprocess); the run keeps no ``result.json``. A run stopped before it started leaves
        nothing new behind (:meth:`forget_unstarted`)."""
        if not self.start_failure:
            stop_children([self.process])
        if not self.begun:
            self.forget_unstarted()

    def forget_unstarted(self) -> None:
        """Remove what starting the run's process created: its ``stderr.log`` while empty (a
        non-empty one says why the start went wrong and stays), then its folder while empty (an
        earlier run's files keep it)."""
        try:
            if self.log_path.stat().st_size == 0:
                self.log_path.unlink()
            self.log_path.parent.rmdir()
        except OSError:  # not empty, or already gone
            pass


def tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
