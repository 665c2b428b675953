"""Connecting the ``ray`` executor's driver to a cluster, within bounds.

Ray itself retries an unreachable address for minutes, printing only C++ warnings (a line a
second), and takes over SIGTERM: ``ray.init`` installs a handler that exits with 15, and its
core worker a crash handler that prints a stack and dies. Here a ``HOST:PORT`` must first accept
a TCP connection, ``ray.init`` runs in a thread the command waits for at most
``connect_timeout`` seconds with file descriptor 2 quiet (a local cluster starts in the main
thread: its processes die with the thread that starts them), and the command's own SIGTERM handler
(interrupt, exit 130) is put back while it waits and after. Ray is imported only inside
:func:`connect`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

from feph_finetune.execution.executors import ExecutorError


def host_and_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``"HOST:PORT"`` or ``"ray://HOST:PORT"``, or None when it is neither."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # an IPv6 address: [::1]:6379
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def connect(address: str, timeout: float) -> None:
    """Connect this process to the Ray cluster at ``address`` (empty: start a local one) within
    ``timeout`` seconds, or raise :class:`ExecutorError` saying why (see the module's notes).
    Interrupted (SIGTERM, Ctrl-C) while it waits, it raises KeyboardInterrupt at once."""
    import ray

    where = address or "a local cluster"
    if address not in ("", "auto"):
        reachable_or_raise(address, min(timeout, 10.0))
    outcome: dict[str, BaseException] = {}

    def start() -> None:
        try:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except BaseException as error:  # reported by the waiting thread
            outcome["error"] = error

    keep_sigterm = command_sigterm_keeper()
    console = quiet_descriptor_2()  # Ray's C++ warnings, a line a second while it retries; the error below says why
    if not address:
        # A local cluster's processes get SIGKILL when the thread that started them ends (Ray sets
        # PR_SET_PDEATHSIG, which Linux ties to the thread), so this thread starts it; Ray bounds
        # a local start itself (60 s for its GCS).
        try:
            start()
        finally:
            keep_sigterm()
            os.dup2(console, 2)
            os.close(console)
        thread = None
    else:
        thread = threading.Thread(target=start, name="ray-connect", daemon=True)
        deadline = time.monotonic() + timeout
        thread.start()
        try:
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(0.2)
                keep_sigterm()
        finally:
            keep_sigterm()
            if thread.is_alive():  # it goes on until the command exits: Python's stderr moves to the console's descriptor
                sys.stderr = os.fdopen(console, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
            else:
                os.dup2(console, 2)
                os.close(console)
    if thread is not None and thread.is_alive():
        raise ExecutorError(f"cannot connect to the Ray cluster at {where}: no answer within {timeout:g} s (executor.ray.connect_timeout)")
    if "error" in outcome:
        error = outcome["error"]
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        raise ExecutorError(f"cannot connect to the Ray cluster at {where}: {type(error).__name__}" + (f": {first}" if first else ""))


def quiet_descriptor_2() -> int:
    """Send file descriptor 2 (where Ray's C++ code logs) to /dev/null; return a descriptor of
    where it went before (the console)."""
    sys.stderr.flush()
    console, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    return console


def reachable_or_raise(address: str, timeout: float) -> None:
    """Raise :class:`ExecutorError` unless ``address``'s host accepts a TCP connection on its
    port within ``timeout`` seconds ("auto" and "" are not checked)."""
    host, port = host_and_port(address) or ("", 0)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror as error:
        raise ExecutorError(f"cannot connect to the Ray cluster at {address}: unknown host {host!r} ({error.strerror})") from None
    except ConnectionRefusedError:
        raise ExecutorError(f"cannot connect to the Ray cluster at {address}: connection refused (nothing listens on port {port} of {host})") from None
    except OSError as error:
        why = f"no answer within {timeout:g} s" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise ExecutorError(f"cannot connect to the Ray cluster at {address}: {why}") from None


def command_sigterm_keeper():
    """A function that puts back the command's SIGTERM handler (the one installed now) wherever
    Ray replaced it; from a thread other than the main one, a function that does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    handler = signal.getsignal(signal.SIGTERM)

    def keep() -> None:
        signal.signal(signal.SIGTERM, handler if handler is not None else signal.SIG_DFL)

    return keep
