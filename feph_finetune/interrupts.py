"""How a command stops when asked to: Ctrl-C, ``kill PID`` and a closed terminal all end it the
same way, with exit 130 and nothing half-written.

:func:`stop_signals_as_interrupt` turns SIGTERM and SIGHUP into the KeyboardInterrupt of Ctrl-C,
which every writer answers by removing its temporary file or folder; :func:`interrupts_deferred`
holds the three back for the few steps that must not be cut in two (creating a temporary and
keeping its name, removing it), so that no interrupt can land between them.

One stop is enough: the first signal raises KeyboardInterrupt, and the ones after it, while the
command cleans up (removes its temporaries, ends its tracked runs, prints the command that
continues), are only noted, so that an impatient second Ctrl-C cannot leave a half-done cleanup.
A cleanup that hangs is forced with a signal the project leaves to its default, which ends the
process at once: Ctrl-\\ (SIGQUIT) or ``kill -KILL PID``, as the note printed on the second
signal says. :func:`run_command_process` keeps the handlers for the rest of a command-line
process's life, so that it exits 130 whenever a stop signal lands from the start of its command
on, its last line printed or not.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from feph_finetune.errors import EXIT_INTERRUPTED

#: The signals that ask a command to stop, besides Ctrl-C's SIGINT: ``kill PID`` (SIGTERM) and a
#: closed terminal or dropped ``ssh`` session (SIGHUP, whose default would end the command at once,
#: leaving its temporary files behind). Windows has neither SIGHUP nor handlers for it.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

#: The hang-up signal, None where there is none (Windows).
SIGHUP = getattr(signal, "SIGHUP", None)

#: The signals that stop a command: Ctrl-C's SIGINT and :data:`STOP_SIGNALS`.
ALL_STOP_SIGNALS = (signal.SIGINT, *STOP_SIGNALS)

#: Seconds code told to stop (by a stop signal, or a run's ``timeout``) has to end before the
#: command gives it up as code that cannot be stopped and ends without it: unwinding takes well
#: under a second, so code still running after ten holds the command (a plugin that swallows the
#: stop, a frame step that never returns, native code). The inline executor's and the Ray driver's
#: runs (:mod:`feph_finetune.execution.executors.inline`) and ``predict``'s frame preparation
#: (:mod:`feph_finetune.predict.prefetch`) get it alike.
STOP_GRACE_S = 10.0

#: What the second stop signal prints, once: the cleanup goes on, and how to force it.
STILL_STOPPING = "stopping: cleaning up first (press Ctrl-\\ or run kill -KILL {pid} to stop at once, leaving temporary files behind)\n"


class _Stopping:
    """The process's answer to stop signals, shared by every :func:`stop_signals_as_interrupt`
    block (only the main thread runs signal handlers, so no lock is needed)."""

    depth = 0  # blocks open: the state is forgotten when the outermost one ends
    received = False  # a stop signal arrived: the command is stopping (or exits 130 once done)
    told = False  # the note that a stop is under way was printed
    finished = False  # the command has returned (run_command_process): a signal only sets the exit code
    after_finish = False  # a signal arrived after the command returned
    hung_up = False  # the terminal hung up (SIGHUP, or a write's I/O error: feph_finetune.hangup)


def _stop(signum, frame) -> None:
    """The handler of every stop signal: the first raises KeyboardInterrupt (unless the command
    has finished), the others are noted and leave the cleanup alone."""
    hang_up_seen = _Stopping.hung_up
    if signum == SIGHUP:
        _Stopping.hung_up = True
    if _Stopping.finished:
        _Stopping.received = _Stopping.after_finish = True
        return
    if not _Stopping.received:
        _Stopping.received = True
        raise KeyboardInterrupt
    if not _Stopping.told and not (hang_up_seen and signum == SIGHUP):  # the terminal's own SIGHUP after its write error: the same stop
        _Stopping.told = True
        _say(STILL_STOPPING.format(pid=os.getpid()))


def interrupt_may_be_a_stop() -> bool:
    """Whether a KeyboardInterrupt caught now may answer a stop signal, and must stop the command:
    yes once one came, or where SIGINT goes to a handler this module did not install (Python's
    own, in a notebook or a library call: a Ctrl-C cannot be told apart there). No where this
    module's handler is in place and no signal came, or SIGINT is ignored (the process
    executor's runs): then code raised it itself, a plugin's failure
    (:func:`feph_finetune.plugins.is_plugin_failure`)."""
    return _Stopping.received or signal.getsignal(signal.SIGINT) not in (_stop, signal.SIG_IGN)


def stop_under_way() -> bool:
    """Whether a stop signal came and the command is stopping: an error raised now (a library
    call cut short by the KeyboardInterrupt, which it turned into one of its own) is the stop's."""
    return _Stopping.received


def hang_up_received() -> bool:
    """Whether the terminal hung up: a SIGHUP came, or a write found it gone (:func:`hang_up_noted`)."""
    return _Stopping.hung_up


def hang_up_noted() -> bool:
    """Note that a write found the terminal hung up (:mod:`feph_finetune.hangup`), which is a
    SIGHUP that may not have been handled yet, and say whether the caller must raise the stop now
    (KeyboardInterrupt): yes in the main thread where this module answers SIGHUP and no stop is
    under way. Another thread leaves the stop to the kernel's SIGHUP, which the main thread gets."""
    _Stopping.hung_up = True
    if not _in_main_thread() or not _Stopping.depth or SIGHUP is None or signal.getsignal(SIGHUP) is not _stop:
        return False
    if _Stopping.finished:
        _Stopping.received = _Stopping.after_finish = True
        return False
    if _Stopping.received:
        return False
    _Stopping.received = True
    return True


def _in_main_thread() -> bool:
    """Only the main thread can install signal handlers (and Python runs them there only)."""
    return threading.current_thread() is threading.main_thread()


def _put_back(handlers: dict[int, object]) -> None:
    """Reinstall ``handlers``; one that Python did not install (None: set from C) becomes the default."""
    for number, handler in handlers.items():
        signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """Within the block, the first of Ctrl-C and :data:`STOP_SIGNALS` raises KeyboardInterrupt
    (exit 130, children stopped, temporary files removed); later ones are noted and do not cut the
    cleanup short (see the module's docstring). The previous handlers are put back after the
    block, and the stop forgotten after the outermost one. Outside the main thread nothing changes."""
    if not _in_main_thread():
        yield
        return
    previous = {number: signal.signal(number, _stop) for number in ALL_STOP_SIGNALS}
    _Stopping.depth += 1
    try:
        yield
    finally:
        _Stopping.depth -= 1
        _put_back(previous)
        if _Stopping.depth == 0:
            _Stopping.received = _Stopping.told = _Stopping.hung_up = False


def run_command_process(command: Callable[[], int]) -> int:
    """Run a command-line process's ``command`` and return its exit code: 130 when a stop signal
    arrived at any point, the command's own code otherwise. The handlers stay in place until the
    process exits (they are never put back), so a signal while the command starts, after it has
    printed its last line or while the interpreter shuts down is answered as 130 too, not with
    the signal's own exit (143 for SIGTERM, 129 for SIGHUP); one that reaches here unanswered (the
    command's modules were importing) prints the "interrupted" line. For ``python -m feph_finetune`` and
    the ``feph-finetune`` script only: a library call keeps :func:`stop_signals_as_interrupt`."""
    try:  # a signal can land as soon as its handler is in, before the others are
        _Stopping.depth += 1  # never closed: the stop is remembered until the exit
        _answer_until_exit()
        for number in ALL_STOP_SIGNALS:
            signal.signal(number, _stop)
        code = command()
        _Stopping.finished = True
    except BaseException as error:  # outside the command's own answer (cli.main's): while it is imported or parses its arguments
        stop = _interrupt_of(error)
        if stop is None:
            raise
        _Stopping.finished = True
        code = EXIT_INTERRUPTED
        _say(" ".join(("interrupted", *map(str, stop.args))) + "\n")
    _forget_unhandled_interrupt()
    return EXIT_INTERRUPTED if _Stopping.received else code


def _interrupt_of(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that ``error`` is, or that directly caused it: Python itself turns
    one that lands in a class's ``__set_name__`` (a dataclass's field, at import) into
    ``RuntimeError("Error calling __set_name__ ...")`` raised from it. None for any other error."""
    while error is not None and not isinstance(error, KeyboardInterrupt):
        error = error.__cause__
    return error


def _say(line: str) -> None:
    """Write ``line`` on stderr, where the command's own console has not been made (nothing but
    this module and :mod:`feph_finetune.errors` may be imported yet)."""
    try:
        os.write(2, line.encode(errors="backslashreplace"))
    except OSError:  # stderr closed: the exit code still says it
        pass


def _forget_unhandled_interrupt() -> None:
    """Clear CPython's note that a KeyboardInterrupt went unhandled, once the command has answered it.

    CPython sets that note whenever a KeyboardInterrupt leaves code that ``exec`` ran from a
    string (``dataclasses`` and ``namedtuple`` build their methods so, at import), even when a
    caller catches it, as :func:`run_command_process` does; ``python -m`` then ends the process
    by SIGINT once it has shut down instead of exiting with the code chosen (a shell shows that as
    130 too, but a parent process sees a death by signal: -2 from :mod:`subprocess`).
    Every ``exec`` of a string starts by clearing the note, so an empty one does, and nothing can
    set it again: from here on a stop signal only sets the exit code (``_Stopping.finished``).
    """
    exec("", {})  # a constant: nothing is evaluated


def _answer_until_exit() -> None:
    """Register, first so that it runs last, the exit handler that turns a stop signal that came
    after the exit code was chosen (during the other exit handlers) into exit 130, and ignores
    the stop signals from there on: the interpreter's own shutdown puts back the default
    handlers of those it answered, which would end the process with the signal's exit."""
    import atexit

    def exit_130() -> None:
        for number in ALL_STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        if _Stopping.after_finish:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # closed, or its reader gone
                    pass
            os._exit(EXIT_INTERRUPTED)

    atexit.register(exit_130)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block, SIGINT and :data:`STOP_SIGNALS` are only noted; the first one noted is
    raised again as the block ends, to the handler that was in place (KeyboardInterrupt under
    :func:`stop_signals_as_interrupt`). For short steps only: a long one would keep Ctrl-C
    waiting. Outside the main thread, where no handler runs, nothing changes."""
    if not _in_main_thread():
        yield
        return
    noted: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: noted.append(signum)) for number in ALL_STOP_SIGNALS}
    try:
        yield
    finally:
        _put_back(previous)
        if noted:
            signal.raise_signal(noted[0])
