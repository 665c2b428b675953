"""Connecting the ``ray`` executor's driver to a cluster, within bounds.

Ray itself retries an unreachable address for minutes, printing only C++ warnings (a line a
second), and takes over SIGTERM: ``ray.init`` installs a handler that exits with 15, and its
core worker a crash handler that prints a stack and dies. Here a ``HOST:PORT`` must first accept
a TCP connection, ``ray.init`` runs in a thread the command waits for at most
``connect_timeout`` seconds with file descriptor 2 quiet, and the command's own SIGTERM handler
(interrupt, exit 130) is put back while it waits and after; Ray's crash handler is kept out of the
command's process altogether (:func:`import_ray`). A local cluster starts in a thread of
its own too, which holds it until :func:`disconnect` (:func:`start_local_cluster`), once Ray's
temporary folder is known to have room for it (:func:`local_cluster_space_or_raise`: on a full
disk Ray's start waits 30 s, then fails as "Timed out waiting for file"). An empty address takes
Ray's own ``RAY_ADDRESS`` where it is set, as ``ray.init()`` does (:func:`cluster_address`). Once a stop
signal came, no wait on Ray lasts more than :data:`STOP_WAIT_S`: a signal to the command's whole
process group (a terminal's Ctrl-C, GNU ``timeout``) kills the local cluster's GCS and raylet too,
and Ray would wait for them for a minute or more (:func:`abandon`). Ray is imported only by
:func:`import_ray`, on the way to :func:`connect`.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import signal
import socket
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from feph_finetune.execution.executors import ExecutorError
from feph_finetune.interrupts import interrupts_deferred, stop_under_way
from feph_finetune.printable import printable
from feph_finetune.results.store import NoSpaceError, ensure_space, free_bytes

#: Seconds any wait on Ray (a local cluster's start, ``ray.shutdown``, cancelling the tasks) is
#: given once a stop signal came; past them the command gives Ray up (:func:`abandon`) and exits
#: 130 with the command that continues.
STOP_WAIT_S = 5.0
#: When the waits on Ray must be over (``time.monotonic()``): :data:`STOP_WAIT_S` after the first
#: wait that saw the stop, shared by the ones after it (:func:`wait_deadline`); set anew by
#: :func:`connect`.
_stop_deadline: list[float] = []
#: Ray's own variable for the address of the cluster to use: taken where ``address`` is empty or
#: ``"auto"``, as ``ray.init`` takes it where its ``address`` is None or ``"auto"``.
RAY_ADDRESS = "RAY_ADDRESS"
#: Bytes a local cluster needs free in Ray's temporary folder to start (its session's sockets,
#: port files and logs: 0.1 MB at start, measured with Ray 2.60; its logs grow as runs go on).
LOCAL_CLUSTER_BYTES = 20 * 10**6
#: What a local cluster writes there, for the full-disk message (:class:`NoSpaceError`).
LOCAL_CLUSTER_FILES = "a local Ray cluster's files (Ray's temporary folder: RAY_TMPDIR, else TMPDIR)"
#: Ray's error for ``address = "auto"`` with no cluster to find, up to its advice (a ``--address``
#: flag this command does not have); said in the command's terms instead (:func:`connection_error`).
NO_RUNNING_CLUSTER = "Could not find any running Ray instance"
#: Ray's documented switch for its C++ failure-signal handler ("Disable Ray's failure-signal
#: handler", read once, as ``ray`` is imported: ``ray._private.ray_constants``).
FAILURE_SIGNAL_HANDLER_OFF = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


def host_and_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``"HOST:PORT"`` or ``"ray://HOST:PORT"``, or None when it is neither."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # an IPv6 address: [::1]:6379
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def import_ray():
    """The ``ray`` module, imported with Ray's C++ failure-signal handler switched off in this
    process (:data:`FAILURE_SIGNAL_HANDLER_OFF`), the environment left as it was, so the
    cluster's own processes keep theirs.

    Why: the handler covers SIGTERM as well as the crash signals. ``ray.init`` installs it over
    the command's handler, below Python (its process-wide ``sigaction``), and ``ray.shutdown``
    puts SIGTERM back to the default there as it destroys the core worker, about a second before
    it returns: a SIGTERM then killed the command with no word (exit -15, no continue line) where
    it should exit 130 with the command that continues. The driver only schedules and waits, so
    it loses no crash report worth having. Where something imported Ray before (a plugin), the
    switch comes too late; the command's handler is then put back after ``ray.init``
    (:func:`command_sigterm_keeper`) and as the wait on the shutdown ends
    (:func:`descriptor_2_quiet`), and only that second is left open."""
    if "ray" in sys.modules:
        return sys.modules["ray"]
    before = os.environ.get(FAILURE_SIGNAL_HANDLER_OFF)
    os.environ[FAILURE_SIGNAL_HANDLER_OFF] = "1"
    try:
        return importlib.import_module("ray")
    finally:
        if before is None:
            del os.environ[FAILURE_SIGNAL_HANDLER_OFF]
        else:
            os.environ[FAILURE_SIGNAL_HANDLER_OFF] = before


def connect(address: str, timeout: float) -> Callable[[], None]:
    """Connect this process to the Ray cluster at ``address`` (empty: start a local one) within
    ``timeout`` seconds and return the function that disconnects it (:func:`disconnect`), or
    raise :class:`ExecutorError` saying why (see the module's notes). Interrupted (SIGTERM,
    Ctrl-C) while it waits, it raises KeyboardInterrupt (once a local cluster is stopped)."""
    ray = import_ray()

    setting = address
    address, where = cluster_address(setting)
    _stop_deadline.clear()
    if address not in ("", "auto"):
        reachable_or_raise(address, min(timeout, 10.0), where)

    def init() -> None:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)

    if not address:
        local_cluster_space_or_raise()
        processes = ClusterProcesses()
        return functools.partial(disconnect, start_local_cluster(in_sessions_of_their_own(init, processes), processes), processes)
    outcome: dict[str, BaseException] = {}

    def start() -> None:
        try:
            init()
        except BaseException as error:  # reported by the waiting thread
            outcome["error"] = error

    keep_sigterm = command_sigterm_keeper()
    ray_log = tempfile.TemporaryFile()  # Ray's C++ warnings, a line a second while it retries: kept from the console, read for the reason
    console = quiet_descriptor_2(into=ray_log.fileno())
    thread = threading.Thread(target=start, name="ray-connect", daemon=True)
    deadline = time.monotonic() + timeout
    thread.start()
    try:
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.2)
            keep_sigterm()
    finally:
        keep_sigterm()
        console_back(console, keep_quiet=thread.is_alive())  # it goes on until the command exits
    with ray_log:
        said = last_logged(ray_log)
    if thread.is_alive():
        raise ExecutorError(f"cannot connect to the Ray cluster at {where}: no answer within {timeout:g} s (executor.ray.connect_timeout)"
                            + (f"; Ray's last word: {said}" if said else ""))
    if "error" in outcome:
        raise connection_error(where, outcome["error"], local_cluster_advice(setting), said)
    return disconnect


#: A line of Ray's C++ log: ``[2026-12-08 03:08:55,895 W 30799 30799] gcs_client.cc:210: MESSAGE``.
RAY_LOG_LINE = re.compile(r"^\[[^\]]*\] [\w.]+:\d+: (?P<message>.+)$")
#: Bytes of the end of Ray's log read for its last word.
RAY_LOG_TAIL = 16384


def last_logged(log) -> str:
    """The message of the last line Ray's C++ code logged into the file ``log`` while the driver
    connected (empty where it logged none): why a cluster refused the driver, which Ray's own
    error does not say ("Failed to connect to Ray cluster"). A refused token, for one: "Failed to
    get cluster ID from GCS server: Unauthenticated: RPC error: InvalidAuthToken: Authentication
    token is missing or incorrect"."""
    try:
        size = os.fstat(log.fileno()).st_size
        log.seek(max(0, size - RAY_LOG_TAIL))
        tail = log.read().decode(errors="replace")
    except (OSError, ValueError):
        return ""
    messages = [match["message"].strip() for match in map(RAY_LOG_LINE.match, tail.splitlines()) if match]
    return printable(messages[-1][:400]) if messages else ""


def cluster_address(address: str) -> tuple[str, str]:
    """The address to connect to and how messages name it, for the setting ``address``: an empty
    one or ``"auto"`` takes :data:`RAY_ADDRESS` where it is set (Ray's convention, so that a
    shell set up for ``ray job submit`` reaches the same cluster), else stays as it is (empty: a
    local cluster of the command's own). ExecutorError for a :data:`RAY_ADDRESS` of no form the
    setting takes."""
    from_environment = os.environ.get(RAY_ADDRESS, "").strip()
    if address not in ("", "auto") or not from_environment:
        return address, address or "a local cluster"
    if from_environment == "local":  # Ray's word for a new local cluster
        return "", "a local cluster"
    if from_environment != "auto" and host_and_port(from_environment) is None:
        raise ExecutorError(f'cannot connect to the Ray cluster: {RAY_ADDRESS}={from_environment!r} is no address; expected "auto", "local", "HOST:PORT" or "ray://HOST:PORT" '
                            f"(unset it, or set executor.ray.address, which {RAY_ADDRESS} stands in for only where that is empty or \"auto\")")
    return from_environment, f"{from_environment} ({RAY_ADDRESS})"


def local_cluster_advice(setting: str) -> str:
    """How to get a local cluster of the command's own instead, for the setting ``address``:
    where :data:`RAY_ADDRESS` stands in for it (:func:`cluster_address`), an empty setting takes
    that variable again, so the advice is about the variable (``local`` is Ray's word for a new
    local cluster, which wins over an ``"auto"`` setting too)."""
    if setting not in ("", "auto") or not os.environ.get(RAY_ADDRESS, "").strip():
        return "leave the address empty (--set executor.ray.address=) for a local cluster of this command's own"
    if setting == "auto":
        return (f"set {RAY_ADDRESS}=local for a local cluster of this command's own (or unset {RAY_ADDRESS} "
                "and leave the address empty: --set executor.ray.address=)")
    return (f"unset {RAY_ADDRESS} (an empty executor.ray.address takes it) or set {RAY_ADDRESS}=local "
            "for a local cluster of this command's own")


def ray_temporary_folder() -> Path:
    """The folder under which Ray keeps a local cluster's files (``ray/session_*``): Ray's own
    rule (``ray._common.utils.get_default_system_temp_dir``), ``RAY_TMPDIR``, else on Linux
    ``TMPDIR``, else ``/tmp`` on Linux and macOS, else Python's temporary folder."""
    if "RAY_TMPDIR" in os.environ:
        return Path(os.environ["RAY_TMPDIR"])
    if sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        return Path(os.environ["TMPDIR"])
    if sys.platform.startswith(("linux", "darwin")):
        return Path("/tmp")
    import tempfile

    return Path(tempfile.gettempdir())


def local_cluster_space_or_raise() -> None:
    """Raise :class:`NoSpaceError`, naming Ray's temporary folder, when its disk has less than
    :data:`LOCAL_CLUSTER_BYTES` free: checked before a local cluster starts, since on a full disk
    its start waits 30 s for a port file its GCS could not write, and fails as a timeout."""
    ensure_space(ray_temporary_folder(), LOCAL_CLUSTER_BYTES, LOCAL_CLUSTER_FILES, at_least=True)


def local_start_error(error: BaseException) -> Exception:
    """The error that says why a local cluster did not start: :class:`NoSpaceError` where Ray's
    temporary folder has filled meanwhile (Ray itself says only that it timed out waiting for a
    file), else :func:`connection_error`."""
    folder = ray_temporary_folder()
    free = free_bytes(folder)
    if free is not None and free < LOCAL_CLUSTER_BYTES:
        return NoSpaceError(folder, LOCAL_CLUSTER_FILES, LOCAL_CLUSTER_BYTES, inodes=False, at_least=True)
    return connection_error("a local cluster", error)


def disconnect(local_cluster: threading.Event | None = None, processes: ClusterProcesses | None = None, given_up: bool = False) -> None:
    """``ray.shutdown()`` (which stops a local cluster), then let the thread that holds
    ``local_cluster`` end; KeyboardInterrupt if a stop signal came meanwhile or before: a stop
    during the shutdown stops the command (exit 130, the command that continues) like one at any
    other moment, once the shutdown is done (cut in two, Ray's driver ended the process with
    exit 1 as it exited). A shutdown still going :data:`STOP_WAIT_S` after a stop is given up
    (:func:`abandon`); whatever of the local cluster's ``processes`` is left then is killed.
    ``given_up``: the cluster was lost and Ray given up (:func:`abandon`): no shutdown is waited for."""
    import ray

    try:
        if not given_up:
            within_stop_wait(ray.shutdown, or_else=abandon)
    finally:
        if local_cluster is not None:
            local_cluster.set()
        if processes is not None:
            processes.kill()
    if stop_under_way():  # the interrupt that stopped the runs
        raise KeyboardInterrupt


def within_stop_wait(action: Callable[[], object], or_else: Callable[[], None]) -> None:
    """Call ``action`` (a call into Ray) in a thread of its own, with file descriptor 2 quiet
    (Ray's C++ warnings), and wait for it: for as long as it takes while no stop signal has come,
    until :func:`wait_deadline` once one has (before or during the wait); then call ``or_else`` if
    it has not returned. An error it raises is left to Ray's own reporting (a teardown has nothing
    to add). A stop signal during the wait is raised (KeyboardInterrupt) once the wait is over."""
    thread = threading.Thread(target=swallowing(action), name="ray-bounded-call", daemon=True)
    deadline = wait_deadline() if stop_under_way() else None
    interrupt = None
    with descriptor_2_quiet(keep_quiet=thread.is_alive):
        thread.start()
        while thread.is_alive() and (deadline is None or time.monotonic() < deadline):
            try:
                thread.join(0.2)
            except KeyboardInterrupt as stop:  # the wait goes on, until the deadline
                interrupt = interrupt or stop
                deadline = wait_deadline()
    if thread.is_alive():
        or_else()
    if interrupt is not None:
        raise interrupt


def wait_deadline() -> float:
    """When the waits on Ray after a stop must be over: :data:`STOP_WAIT_S` after the first wait
    that asked, so that the waits of one stop (a cluster's start, the tasks' cancelling, the
    shutdown) take that long at most together."""
    if not _stop_deadline:
        _stop_deadline.append(time.monotonic() + STOP_WAIT_S)
    return _stop_deadline[0]


def swallowing(action: Callable[[], object]) -> Callable[[], None]:
    """``action`` with its exceptions dropped (it runs in a thread nobody joins for an answer)."""
    def call() -> None:
        try:
            action()
        except BaseException:  # Ray's own teardown errors: its logs say them
            pass

    return call


def abandon() -> None:
    """Give Ray up after a stop, so that the command exits 130 at once: a call into Ray is still
    waiting :data:`STOP_WAIT_S` after the stop, typically on a GCS that the stop killed. Ray's
    exit handler (``ray.shutdown``, which would wait on the same GCS) is unregistered. The caller
    lets the thread holding a local cluster end: the cluster's processes get SIGKILL as it ends
    or, if it is stuck in ``ray.init``, as the process exits (PR_SET_PDEATHSIG, see
    :func:`start_local_cluster`). File descriptor 2 stays quiet for the rest of the process
    (:func:`console_back`), since Ray's threads go on logging their retries."""
    import atexit

    import ray

    atexit.unregister(ray.shutdown)
    threading.excepthook = functools.partial(quiet_for_ray_threads, threading.excepthook)


#: Set once the cluster was lost midway (:func:`cluster_lost`): the process must not finalize Ray.
_lost: list[bool] = []


def cluster_lost() -> None:
    """Note that the cluster was lost midway and Ray given up (:func:`abandon`): the command-line
    process then ends at once with its code (:func:`end_if_cluster_lost`) rather than finalize Ray,
    whose core worker, still waiting on the gone GCS, crashed the interpreter's exit (SIGSEGV) or
    ended it itself 60 s after the loss (exit 1)."""
    abandon()
    _lost.append(True)


def end_if_cluster_lost(code: int) -> None:
    """End the process now with ``code`` (stdout and stderr flushed, the rest of the exit
    skipped) where :func:`cluster_lost` was called; else return. For the command line's last step."""
    if _lost:
        from feph_finetune.execution.executors import end_process

        end_process([], code)


def quiet_for_ray_threads(excepthook: Callable, args) -> None:
    """``threading.excepthook`` once Ray was given up: the failures of Ray's own threads
    (``ray_listen_error_messages``, say, whose GCS is gone) are its teardown, not the command's
    to show; any other thread's go to ``excepthook``."""
    if args.thread is None or not args.thread.name.startswith("ray_"):
        excepthook(args)


def start_local_cluster(init: Callable[[], None], processes: ClusterProcesses) -> threading.Event:
    """Start a local cluster with ``init`` (``ray.init``) and return the event that lets the
    thread holding it end (:func:`disconnect` sets it); raise :class:`ExecutorError` saying why
    it failed, or KeyboardInterrupt when a stop signal came.

    ``init`` runs in a thread of its own that waits, once the cluster is up, until the event is
    set: the cluster's processes get SIGKILL when the thread that started them ends (Ray sets
    PR_SET_PDEATHSIG, which Linux ties to the thread). In the main thread, ``ray.init`` would
    install its own SIGTERM handler, which raises SystemExit, and a stop signal's exception can
    land in Ray's own callbacks, which swallow it: the start would fail as a connection error or
    go on as if nothing had come. Here the command's handlers stay, and the main thread waits.
    A stop signal while the cluster starts lets it finish starting for :data:`STOP_WAIT_S` at
    most, stops it with Ray's own shutdown and raises KeyboardInterrupt, rather than leave a
    half-started cluster to Ray's exit handlers while its start goes on in the thread. A start
    that does not end by then is given up (:func:`abandon`): the cluster's ``processes`` are
    killed, and it starts no more.
    """
    started, release, outcome = threading.Event(), threading.Event(), {}

    def hold() -> None:
        try:
            init()
        except BaseException as error:  # reported by the main thread
            outcome["error"] = error
        started.set()
        release.wait()

    thread = threading.Thread(target=hold, name="ray-local-cluster", daemon=True)
    given_up = False
    try:
        with descriptor_2_quiet(keep_quiet=lambda: given_up):  # Ray's C++ warnings; the error below says why
            try:
                thread.start()
                while not started.wait(0.2):
                    pass
            except KeyboardInterrupt:  # the stop is noted: signals from here on do not cut this short
                given_up = not started.wait(max(0.0, wait_deadline() - time.monotonic()))
                raise
    except KeyboardInterrupt:
        if given_up:
            abandon()
            release.set()
            processes.kill()
        else:
            disconnect(release, processes)
        raise
    if "error" in outcome:
        release.set()
        processes.kill()  # what the failed start left
        raise local_start_error(outcome["error"]) from None
    return release


class ClusterProcesses:
    """The process groups of a local cluster's processes (:func:`in_sessions_of_their_own`), to
    kill what Ray's shutdown left, or all of it where the command gave Ray up (:func:`abandon`):
    the agents a raylet starts outlive it otherwise, waiting on a GCS that is gone. Once killed,
    no process starts any more (a ``ray.init`` given up goes on in its thread)."""

    def __init__(self):
        self.lock, self.groups, self.killed = threading.Lock(), [], False

    def start(self, popen: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        """``popen()``, its process's group noted; ExecutorError once :meth:`kill` was called."""
        with self.lock:
            if self.killed:
                raise ExecutorError("the local Ray cluster was stopped")
            process = popen()
            self.groups.append(process.pid)
            return process

    def kill(self) -> None:
        """SIGKILL every noted process group (a group that has ended is passed over)."""
        with self.lock:
            self.killed = True
            while self.groups:
                try:
                    os.killpg(self.groups.pop(), signal.SIGKILL)
                except OSError:  # ended already (ESRCH)
                    pass


def in_sessions_of_their_own(init: Callable[[], None], processes: ClusterProcesses) -> Callable[[], None]:
    """``init`` (``ray.init`` starting a local cluster), with every process Ray starts (GCS,
    raylet, agents; the workers inherit the raylet's) in a session and process group of its own.

    A stop signal to the command's whole process group (a terminal's Ctrl-C or hang-up, GNU
    ``timeout``, ``kill -TERM -PGID``) then reaches the command alone, which stops the cluster
    itself (:func:`disconnect`): killed by the signal too, the GCS and raylet left ``ray.init``
    waiting a minute for them, or Ray ended the driver at once with exit 1 ("The connection to
    the plasma store is failed"). Their fate stays tied to the thread that started them
    (PR_SET_PDEATHSIG), and their groups are noted in ``processes``. Ray does the
    same on Windows; on Linux it starts them through ``ray._private.services.ConsolePopen``,
    which gets ``start_new_session`` here."""
    def init_apart() -> None:
        from ray._private import services

        popen = getattr(services, "ConsolePopen", None)
        if popen is None:  # a Ray that starts its processes otherwise: they share the command's group
            init()
            return

        def session_popen(*args, **kwargs) -> subprocess.Popen:
            return processes.start(lambda: popen(*args, **{**kwargs, "start_new_session": True}))

        services.ConsolePopen = session_popen
        try:
            init()
        finally:
            services.ConsolePopen = popen

    return init_apart


def connection_error(where: str, error: BaseException, local_advice: str = "", said: str = "") -> ExecutorError:
    """The error that says why ``ray.init`` failed: its type and the first line of its message,
    and what Ray's C++ code last logged, ``said`` (:func:`last_logged`: the reason, where Ray's
    error has none);
    for ``"auto"`` with no cluster running (:data:`NO_RUNNING_CLUSTER`), what to do in this
    command's terms, where Ray's own advice names a ``--address`` flag it does not have:
    ``local_advice``, how to get a local cluster from where the address came
    (:func:`local_cluster_advice`)."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    if NO_RUNNING_CLUSTER in first:
        return ExecutorError(f"cannot connect to the Ray cluster at {where}: no running Ray cluster on this machine; start one with `ray start --head`"
                             + (f", or {local_advice}" if local_advice else ""))
    reason = f" (Ray's last word: {said})" if said and said not in first else ""
    return ExecutorError(f"cannot connect to the Ray cluster at {where}: {type(error).__name__}" + (f": {first}" if first else "") + reason)


@contextmanager
def descriptor_2_quiet(keep_quiet: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Within the block, file descriptor 2 (where Ray's C++ code logs) goes to /dev/null; the
    console is back when it ends, however it ends, unless ``keep_quiet()`` then (a call into
    Ray goes on: :func:`console_back`). The descriptors are swapped with interrupts deferred,
    so that a stop signal cannot leave the console quiet."""
    console = None
    try:
        with interrupts_deferred():  # a stop noted here is raised as it ends, inside the try
            console = quiet_descriptor_2()
        yield
    finally:
        if console is not None:
            with interrupts_deferred():
                console_back(console, keep_quiet())


def console_back(console: int, keep_quiet: bool) -> None:
    """Put the console (``console``, a descriptor of it) back on file descriptor 2; with
    ``keep_quiet`` (a call into Ray goes on after the command gave up waiting for it, and logs
    until the process exits), leave descriptor 2 quiet and move Python's ``sys.stderr`` onto
    ``console`` instead."""
    if keep_quiet:
        sys.stderr = os.fdopen(console, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    else:
        os.dup2(console, 2)
        os.close(console)


def quiet_descriptor_2(into: int | None = None) -> int:
    """Send file descriptor 2 (where Ray's C++ code logs) to /dev/null, or to the open file
    ``into``; return a descriptor of where it went before (the console)."""
    sys.stderr.flush()
    console = os.dup(2)
    if into is not None:
        os.dup2(into, 2)
        return console
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    return console


def reachable_or_raise(address: str, timeout: float, where: str | None = None) -> None:
    """Raise :class:`ExecutorError` unless ``address``'s host accepts a TCP connection on its
    port within ``timeout`` seconds ("auto" and "" are not checked); ``where``: how the message
    names the address (default: ``address``)."""
    why = unreachable(address, timeout)
    if why:
        raise ExecutorError(f"cannot connect to the Ray cluster at {where or address}: {why}")


def unreachable(address: str, timeout: float) -> str:
    """Why ``address`` (``HOST:PORT``) accepts no TCP connection within ``timeout`` seconds, in
    words ("connection refused (nothing listens on port 6379 of 10.0.0.5)"); '' when it does."""
    host, port = host_and_port(address) or ("", 0)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror as error:
        return f"unknown host {host!r} ({error.strerror})"
    except ConnectionRefusedError:
        return f"connection refused (nothing listens on port {port} of {host})"
    except OSError as error:
        return f"no answer within {timeout:g} s" if isinstance(error, TimeoutError) else (error.strerror or str(error))
    return ""


def command_sigterm_keeper():
    """A function that puts back the command's SIGTERM handler (the one installed now) wherever
    Ray replaced it; from a thread other than the main one, a function that does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    handler = signal.getsignal(signal.SIGTERM)

    def keep() -> None:
        signal.signal(signal.SIGTERM, handler if handler is not None else signal.SIG_DFL)

    return keep
