"""Fresh child processes that start with TensorFlow already imported.

Importing TensorFlow and Keras costs each child about 3 s of CPU (measured on this project's
2-core machine, TF 2.21 and Keras 3.15: a child that trains a small model started in 4.5 s with
``spawn`` and in 0.55 s from this server), against 10-40 s for a whole demo run. Python's
``forkserver`` start method pays it once: a server process, started on first use, imports
:mod:`feph_finetune.execution.executors.preload` and forks every child from itself. Each child is still a
new process whose memory goes back to the system when it exits, so none of TensorFlow's growth
from one run reaches the next. The server imports TensorFlow without running anything in it, so
no device is initialised and a child still picks its GPU with ``CUDA_VISIBLE_DEVICES``.

A child inherits the server's environment, which is the command's environment when the first
child started; :func:`begin_child` gives it the command's environment of the moment.
What TensorFlow and Keras read while they are imported (``TF_CPP_MIN_LOG_LEVEL``,
``TF_ENABLE_ONEDNN_OPTS``, ``KERAS_BACKEND``, ``KERAS_HOME`` and its ``keras.json``) keeps the
server's values.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable, Iterable

from feph_finetune.errors import EXIT_INTERRUPTED
from feph_finetune.interrupts import interrupts_deferred
from feph_finetune.standard_streams import reopen_closed_standard_streams

#: The module the server imports once for all its children.
PRELOAD = "feph_finetune.execution.executors.preload"
#: Seconds a child gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_S = 5.0
#: The environment variable that gives the fork server the command's pid (:func:`die_with_parent`).
SERVER_PARENT = "FEPH_FINETUNE_FORK_SERVER_PARENT"
#: ``prctl``'s option that asks for a signal when the parent thread ends (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def process_context():
    """The :mod:`multiprocessing` context whose ``Process`` forks from the TensorFlow server on
    Linux; elsewhere ``spawn``, a new interpreter per child (forking after system frameworks are
    loaded is unsafe on macOS, and Windows cannot fork)."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD])
    return context


def start_child(target: Callable[..., None], args: tuple, name: str) -> multiprocessing.Process:
    """Start ``target(*args)`` in a child of :func:`process_context`, which should begin with
    :func:`begin_child`. A daemon: the command terminates it, not waits for it, if it exits
    without :func:`stop_children`. Raises what ``Process.start`` raises (OSError, EOFError when the
    server has died)."""
    context = process_context()
    if context.get_start_method() == "forkserver":
        _start_server_ignoring_ctrl_c()
    child = context.Process(target=target, args=args, name=name, daemon=True)
    child.start()
    return child


def _start_server_ignoring_ctrl_c() -> None:
    """Start the fork server, unless it runs, with SIGINT blocked, which it keeps across ``exec``
    until :mod:`~feph_finetune.execution.executors.preload` ignores it, first thing, and hands
    on to every child it forks: a terminal's Ctrl-C reaches the whole process group, and the
    server (importing :data:`PRELOAD` for seconds) and a child not yet in its own session
    (:func:`begin_child`) would each print a KeyboardInterrupt traceback. The command stops them
    itself (:func:`stop_children`; the server ends when the command does).

    The command never ignores SIGINT meanwhile: a signal sent to the process goes to any of its
    threads that does not block it, and one that takes it while SIGINT is ignored drops it (the
    command ran on after a Ctrl-C). Blocked in this thread only, a stop signal is taken by
    another thread or waits here; either way the command's handler runs, and
    :func:`~feph_finetune.interrupts.interrupts_deferred` raises it once the server runs, not
    halfway through its start. Only from the main thread, the one that handles signals."""
    from multiprocessing import forkserver, resource_tracker

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    with interrupts_deferred():
        # Started first, as multiprocessing starts it, which unblocks SIGINT after: once it runs,
        # forkserver.ensure_running only checks that it still does and the block holds.
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        os.environ[SERVER_PARENT] = str(os.getpid())  # the main thread's: it lives as long as the command
        try:
            forkserver.ensure_running()
        finally:
            os.environ.pop(SERVER_PARENT, None)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def ignore_ctrl_c_in_server() -> None:
    """In the fork server, first thing: ignore SIGINT, blocked since its start
    (:func:`_start_server_ignoring_ctrl_c`), which drops one that waits. The server and the
    children it forks keep it ignored (:mod:`multiprocessing` gives each child the server's
    handlers); a child unblocks it once in a session of its own (:func:`begin_child`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def die_with_parent() -> None:
    """In the fork server, first thing: end as soon as the command that started it ends, even
    while it still imports TensorFlow (seconds, during which the server reads nothing: it would
    outlive a Ctrl-C'd command by as long). Linux's PR_SET_PDEATHSIG kills it when the thread
    that started it ends, so only a server started from the command's main thread
    (:data:`SERVER_PARENT` names the command) asks for it; elsewhere nothing changes, and the
    server ends once its import is done, as :mod:`multiprocessing` makes it."""
    parent = os.environ.pop(SERVER_PARENT, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # refused (a sandbox): the server ends after its import, as before
    if os.getppid() != int(parent):  # the command ended before the request: no signal will come
        os._exit(EXIT_INTERRUPTED)


#: Seconds to wait for the fork server's end to be known after a run could not start from it:
#: its socket closes as it dies, a moment before the system reports it ended.
SERVER_END_WAIT_S = 2.0
#: The signals of a server that crashed by itself (its TensorFlow import, say), not one sent
#: from outside (by hand, by the out-of-memory killer).
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGILL, signal.SIGBUS, signal.SIGFPE, signal.SIGSYS, signal.SIGTRAP}


def server_end() -> tuple[str, int] | None:
    """How the fork server ended: ``("signal", N)`` or ``("exit", code)``; None where it is not
    known (no server of this process's, another start method, still running after
    :data:`SERVER_END_WAIT_S`). Looked at without collecting it (``WNOWAIT``), so that
    :mod:`multiprocessing` still finds it ended and starts a new one for the next run."""
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if pid is None or not hasattr(os, "waitid"):
        return None
    deadline = time.monotonic() + SERVER_END_WAIT_S
    while True:
        try:
            ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # collected already
            return None
        if ended is not None:
            return ("signal", ended.si_status) if ended.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else ("exit", ended.si_status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def server_end_described(end: tuple[str, int] | None) -> str:
    """Why a run's process could not start, from :func:`server_end`: a server killed by a signal
    sent from outside is said so (later runs start a new one; the next invocation runs this run
    again); a crash, an exit or an unknown end points at TensorFlow's import, which the server
    runs (:data:`PRELOAD`)."""
    if end is not None and end[0] == "signal" and end[1] not in CRASH_SIGNALS:
        return (f"the server that forks run processes was killed by signal {end[1]} ({_signal_name(end[1])}) from outside this command "
                "(by hand, or the out-of-memory killer); later runs start a new one, and the next invocation runs this run again")
    how = "has ended" if end is None else f"crashed with signal {end[1]} ({_signal_name(end[1])})" if end[0] == "signal" else f"exited with code {end[1]}"
    return f"the server that forks run processes, with TensorFlow imported, {how}; python -c \"import tensorflow\" shows whether TensorFlow loads"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def stop_children(children: Iterable[multiprocessing.Process], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group of every child (each leads one: :func:`begin_child`), give them
    ``grace_s`` seconds to exit side by side, then SIGKILL the groups still alive; returns once
    all are collected, and SIGKILLs what the children started and left behind."""
    children = list(children)
    for child in children:
        if child.is_alive():
            signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            signal_group(child, signal.SIGKILL)
        child.join()
        signal_group(child, signal.SIGKILL)  # what outlived the child itself


def signal_group(child: multiprocessing.Process, signum: int) -> None:
    """Send ``signum`` to the process group ``child`` leads (:func:`begin_child`); to the child
    alone before it has made its group."""
    try:
        os.killpg(child.pid, signum)
    except (ProcessLookupError, PermissionError, AttributeError):  # no such group (yet, or any more); no groups (Windows)
        if child.is_alive():
            os.kill(child.pid, signum)


def begin_child(log, environment: dict[str, str]) -> None:
    """What a child of :func:`process_context` does first: lead a process group of its own, so
    that stopping the run stops every process it started (a plugin's subprocess) with it
    (:meth:`~feph_finetune.execution.executors.process.Child.stop`); send its stdout and stderr
    (Python's and TensorFlow's C++ logging) to the file ``log``, which starts empty, so that
    whatever fails next is there; end as soon as the command ends (:func:`_die_with_command`); and
    take ``environment`` (the command's, with the child's own settings) before TensorFlow
    initialises its devices. Descriptors the command was started without are devnull first
    (:mod:`feph_finetune.standard_streams`; a child spawned by a program that closed them), so
    that the log cannot take the number of one and close it with its own."""
    reopen_closed_standard_streams()
    if hasattr(os, "setsid"):
        os.setsid()  # a new session: Ctrl-C reaches the command only, which stops its runs
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since the server's start (ignored still)
    try:
        fd = os.open(log, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o666)  # less the umask, as any file
    except FileNotFoundError:  # the command removed the run's folder: it was stopped as it forked this child
        os._exit(EXIT_INTERRUPTED)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _die_with_command()
    os.environ.clear()
    os.environ.update(environment)


def exit_description(code: int) -> str:
    """How a child with exit code ``code`` (``Process.exitcode``: negative for a signal) ended,
    as "was killed by SIGKILL (...)" or "exited with code 1"."""
    if code >= 0:
        return f"exited with code {code}"
    name = signal.Signals(-code).name
    return f"was killed by {name}" + (" (out of memory, or killed by hand)" if -code == signal.SIGKILL else "")


def _die_with_command() -> None:
    """End this child as soon as the command that started it ends, however it ends, so that a
    killed command leaves no orphan still writing into its results store.

    A child's parent is the server, which outlives the command while any child runs, so the child
    watches the command itself: :mod:`multiprocessing` gives every child the read end of a pipe
    whose write end the command holds until it has collected the child
    (``multiprocessing.parent_process().sentinel``); it becomes readable when the command ends.
    """
    from multiprocessing.connection import wait

    sentinel = multiprocessing.parent_process().sentinel

    def watch() -> None:
        wait([sentinel])
        if hasattr(os, "killpg") and os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)  # the run's own subprocesses too, and this process
        os._exit(1)

    threading.Thread(target=watch, name="die-with-command", daemon=True).start()
