"""Ctrl-C, SIGTERM and SIGHUP stop a command the same way (KeyboardInterrupt, exit 130), and no
interrupt, whenever it lands, leaves an atomic writer's temporary file or folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, synth_writing_images

from feph_finetune.interrupts import STOP_SIGNALS, interrupts_deferred, stop_signals_as_interrupt
from feph_finetune.results import store
from feph_finetune.results.store import atomic_folder, atomic_path

SIGNALS = [signal.SIGINT, *STOP_SIGNALS]
WRITERS = {"file": atomic_path, "folder": atomic_folder}


def leftovers(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_sighup_is_a_stop_signal():
    assert signal.SIGHUP in STOP_SIGNALS and signal.SIGTERM in STOP_SIGNALS


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("stop", SIGNALS)
def test_an_interrupt_while_writing_leaves_nothing(stop, writer, tmp_path):
    target = tmp_path / "out" / "target"
    with stop_signals_as_interrupt(), pytest.raises(KeyboardInterrupt):
        with WRITERS[writer](target) as temporary:
            (temporary / "part").write_text("half") if writer == "folder" else temporary.write_text("half")
            os.kill(os.getpid(), stop)
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("stop", SIGNALS)
def test_an_interrupt_as_the_temporary_is_created_leaves_nothing(stop, writer, tmp_path, monkeypatch):
    """The signal lands after the temporary exists but before the writer knows its name."""
    create = store._create_temporary

    def create_then_interrupt(path, folder=False):
        name = create(path, folder=folder)
        os.kill(os.getpid(), stop)
        return name

    monkeypatch.setattr(store, "_create_temporary", create_then_interrupt)
    with stop_signals_as_interrupt(), pytest.raises(KeyboardInterrupt):
        with WRITERS[writer](tmp_path / "target"):
            pass
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("stop", SIGNALS)
def test_a_deferred_interrupt_arrives_when_the_block_ends(stop):
    steps = []
    with stop_signals_as_interrupt(), pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), stop)
            steps.append("finished the step")
        steps.append("after the block")
    assert steps == ["finished the step"]


def test_the_previous_handlers_are_put_back():
    before = {number: signal.getsignal(number) for number in SIGNALS}
    with stop_signals_as_interrupt():
        with interrupts_deferred():
            pass
    assert {number: signal.getsignal(number) for number in SIGNALS} == before


@pytest.mark.parametrize("stop", SIGNALS)
def test_every_command_exits_130_on_each_stop_signal(stop, tmp_path):
    """``guarded`` wraps every command: whatever it writes when the signal lands is removed."""
    from rich.console import Console

    from feph_finetune.cli import guarded

    def command(args, console):
        with atomic_folder(tmp_path / "written"):
            os.kill(os.getpid(), stop)
        return 0

    quiet = Console(quiet=True)
    assert guarded(command, None, quiet, quiet) == 130
    assert leftovers(tmp_path) == []


# --- a second signal, and one after the command ----------------------------------------------


@pytest.mark.parametrize("stop", SIGNALS)
def test_a_second_signal_does_not_cut_the_cleanup_short(stop):
    """The first signal stops the work; one more during the cleanup is noted, not raised."""
    steps = []
    with stop_signals_as_interrupt(), pytest.raises(KeyboardInterrupt):
        try:
            os.kill(os.getpid(), stop)
            steps.append("not reached")
        except KeyboardInterrupt:
            os.kill(os.getpid(), stop)
            steps.append("cleaned up")
            raise
    assert steps == ["cleaned up"]


def test_the_stop_is_forgotten_after_the_outermost_block():
    """A library call (a notebook's ``Session.run``) can be interrupted again the next time."""
    for _ in range(2):
        with stop_signals_as_interrupt(), pytest.raises(KeyboardInterrupt):
            with stop_signals_as_interrupt():
                os.kill(os.getpid(), signal.SIGTERM)


def command_process(tmp_path, stop, *args: str, signal_when: str = "", gap_s: float = 0.0) -> subprocess.Popen:
    """``python -m feph_finetune ARGS`` where ``cli.main`` is wrapped to send ``stop`` to its own
    process: after the command returned (``returned``) or from an exit handler registered during
    the command, which runs as the process exits (``exiting``)."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import atexit, os, runpy, signal, sys
        import feph_finetune.cli as cli

        command = cli.main

        def main(argv=None):
            if {signal_when!r} == "exiting":
                atexit.register(os.kill, os.getpid(), {int(stop)})
            code = command(argv)
            if {signal_when!r} == "returned":
                os.kill(os.getpid(), {int(stop)})
            return code

        cli.main = main
        sys.argv = ["feph_finetune", *{list(args)!r}]
        runpy.run_module("feph_finetune", run_name="__main__")
    """))
    return subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("when", ["returned", "exiting"])
@pytest.mark.parametrize("stop", STOP_SIGNALS, ids=lambda number: signal.Signals(number).name)
def test_a_signal_after_the_command_still_exits_130(tmp_path, stop, when):
    """The command-line process keeps its handlers until it exits: a signal after the command's
    last line is answered as 130, not with the signal's own exit (143, 129)."""
    process = command_process(tmp_path, stop, "plugins", signal_when=when)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "face_crop" in stdout  # the command's output is complete


@pytest.mark.parametrize("gap_s", [0.01, 0.3])
@pytest.mark.parametrize("stop", STOP_SIGNALS, ids=lambda number: signal.Signals(number).name)
def test_two_quick_signals_to_synth_exit_130_leaving_nothing(tmp_path, stop, gap_s):
    out = tmp_path / "data" / "FePh"
    command = synth_writing_images(out, poll_s=0.05)
    command.send_signal(stop)
    time.sleep(gap_s)
    if command.poll() is None:
        command.send_signal(stop)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists(), f"left behind: {sorted(path.name for path in out.rglob('*'))}"


def start_matrix(tmp_path, root) -> subprocess.Popen:
    """A two-run matrix in a new session (so that a signal can reach its whole process group, as
    a terminal's Ctrl-C does: the command, the fork server and the runs not yet on their own)."""
    from conftest import write_matrix

    matrix = write_matrix(tmp_path / "grid.toml", root, """
        [experiments.A]
        preprocess = []
        grid = { seed = [1, 2] }
        [experiments.A.options.adam]
        head_epochs = 0
        """)
    return subprocess.Popen([sys.executable, "-m", "feph_finetune", str(matrix), "--output", str(tmp_path / "out"), "--jobs", "1"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_fork_server(command: subprocess.Popen) -> int:
    """Return the pid of ``command``'s fork server once it has started (Linux: read from ``/proc``)."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and command.poll() is None, "the fork server never started"
        for status in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                cmdline, stat = status.read_bytes(), (status.parent / "stat").read_text()
            except OSError:  # the process has gone
                continue
            if b"forkserver" in cmdline and int(stat.rsplit(")", 1)[1].split()[1]) == command.pid:
                return int(status.parent.name)
        time.sleep(0.02)


def went_on_importing(server: int, bound_s: float = 60.0) -> bool:
    """Whether the fork server ``server`` went on importing TensorFlow after the command ended:
    it mapped more of TensorFlow's libraries before it was gone (or killed). Not a time bound:
    on a loaded machine a server still starting up reaches :func:`die_with_parent`, and so its
    end, a second or more after the command's; what it must not do is go on importing."""
    mapped = _tensorflow_mappings(server) or 0
    deadline = time.monotonic() + bound_s
    while running_unkilled(server) and time.monotonic() < deadline:
        if (_tensorflow_mappings(server) or 0) > mapped:
            return True
        time.sleep(0.02)
    return running_unkilled(server)


def _tensorflow_mappings(pid: int) -> int | None:
    """How many of process ``pid``'s memory mappings are TensorFlow's files; None once it is gone."""
    try:
        return sum("tensorflow" in line for line in Path(f"/proc/{pid}/maps").read_text().splitlines())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def running_unkilled(pid: int) -> bool:
    """Whether process ``pid`` runs with no SIGKILL pending: one the kernel has sent (a parent's
    death signal) is dying, though on a loaded machine (a page fault waiting on the disk) it may
    take a second or more to be gone."""
    try:
        fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return False
    pending = int(fields.get("SigPnd", "0"), 16) | int(fields.get("ShdPnd", "0"), 16)
    return fields.get("State", "").strip()[:1] != "Z" and not pending & (1 << (signal.SIGKILL - 1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server and /proc are Linux's")
@pytest.mark.parametrize("stop,times", [(signal.SIGINT, 1), (signal.SIGTERM, 3)], ids=["ctrl-c", "3xTERM"])
def test_a_matrix_stopped_as_it_starts_exits_130_quietly(tmp_path, synthetic_feph, stop, times):
    """Stop signals to the whole group while the fork server still imports TensorFlow: exit 130,
    no traceback from any process, no run folder for a run that never started, and no fork
    server left finishing its import after the command."""
    command = start_matrix(tmp_path, synthetic_feph)
    server = wait_for_fork_server(command)
    for _ in range(times):
        os.killpg(command.pid, stop)
        time.sleep(0.3)
    command.wait(timeout=120)  # not communicate(): the server holds the command's stdout and stderr until it ends
    outlived = went_on_importing(server)
    stdout, stderr = command.communicate(timeout=120)
    assert command.returncode == 130, stdout + stderr
    assert not outlived, "the fork server outlived the command (still importing TensorFlow)"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    output = tmp_path / "out"
    runs = [folder for folder in output.iterdir() if folder.is_dir()] if output.is_dir() else []
    never_started = [run.name for run in runs if [path.name for path in run.iterdir()] == ["stderr.log"] and not (run / "stderr.log").stat().st_size]
    assert not never_started, f"run folders of runs that never started: {never_started}"


SERVER_START_STOPPED = """
import os, signal, sys, threading, time
from multiprocessing import forkserver, resource_tracker
from feph_finetune.execution.executors import forkserver as ours
from feph_finetune.interrupts import stop_signals_as_interrupt

def start_stopped():
    resource_tracker.ensure_running()  # what the real ensure_running does first: it unblocks SIGINT once it has started it
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    print("blocked" if blocked else "not blocked", "ignored" if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else "handled")
    os.kill(os.getpid(), signal.SIGINT)  # to the process, as a terminal's: a thread that does not block it takes it
    time.sleep(0.5)

forkserver.ensure_running = start_stopped
threading.Thread(target=threading.Event().wait, daemon=True).start()  # a thread of the command's (a watchdog, a plugin's)
with stop_signals_as_interrupt():
    try:
        ours._start_server_ignoring_ctrl_c()
    except KeyboardInterrupt:
        print("stopped once the server ran")
        sys.exit(0)
print("ran on")
"""


def test_a_ctrl_c_as_the_fork_server_starts_stops_the_command_whichever_thread_takes_it():
    """Deterministic, unlike the signal raced against the start above (which found it): the
    server's start gets a Ctrl-C while the command has a second thread. SIGINT ignored in the
    command meanwhile, that thread took the signal and dropped it: the matrix ran on and exited 0.
    Blocked in the starting thread (so that the server inherits it blocked), never ignored."""
    ran = subprocess.run([sys.executable, "-c", SERVER_START_STOPPED], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ran.stdout.split("\n")[:2] == ["blocked handled", "stopped once the server ran"], ran.stdout + ran.stderr


#: The modules a command-line process may have loaded when it installs its stop-signal handlers:
#: besides the standard library's, only these, so that a signal during the imports that follow
#: (the command line, numpy, rich, OpenCV: a quarter of a second) is answered as 130.
#: ``feph_finetune.data.image_headers`` (standard library only) sets the decoded-pixel limit before anything imports cv2.
FIRST_MODULES = {"feph_finetune", "feph_finetune.__main__", "feph_finetune.standard_streams", "feph_finetune.interrupts", "feph_finetune.errors",
                 "feph_finetune.data", "feph_finetune.data.image_headers"}
HEAVY_MODULES = {"numpy", "rich", "cv2", "pluggy", "feph_finetune.cli", "feph_finetune.api"}


@pytest.mark.parametrize("entry", [
    'runpy.run_module("feph_finetune", run_name="__main__", alter_sys=True)',  # python -m feph_finetune
    "from feph_finetune.__main__ import run; sys.exit(run())",  # the feph-finetune script pip writes
], ids=["python-m", "script"])
def test_the_stop_handlers_come_before_any_heavy_import(tmp_path, entry):
    """Deterministic, unlike a signal raced against the start: the modules loaded at the moment
    the SIGTERM handler is installed are recorded (``signal.signal`` wrapped), and must be the
    few the handlers need."""
    loaded_file = tmp_path / "loaded.txt"
    script = tmp_path / "entry.py"
    script.write_text(textwrap.dedent(f"""
        import runpy, signal, sys
        install = signal.signal

        def recording(number, handler):
            if number == signal.SIGTERM and handler is not signal.SIG_DFL:
                with open({str(loaded_file)!r}, "x") as loaded:  # "x": only the first installation
                    loaded.write("\\n".join(sorted(sys.modules)))
                signal.signal = install
            return install(number, handler)

        signal.signal = recording
        sys.argv = ["feph_finetune", "plugins"]
        {entry}
    """))
    command = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert command.returncode == 0, command.stderr
    loaded = set(loaded_file.read_text().splitlines())
    assert {name for name in loaded if name.startswith("feph_finetune")} <= FIRST_MODULES
    assert not {name.partition(".")[0] for name in loaded} & HEAVY_MODULES


def caught_signals(pid: int) -> int:
    """The process's mask of signals it has handlers for (``SigCgt`` in /proc/PID/status: bit
    N - 1 for signal N); 0 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:")), 0)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the handlers from /proc")
@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.1, 0.2])
@pytest.mark.parametrize("stop", STOP_SIGNALS, ids=lambda number: signal.Signals(number).name)
def test_a_signal_as_the_command_starts_exits_130(stop, delay_s):
    """A stop signal while ``python -m feph_finetune`` imports its modules exits 130, quietly.

    The signal is sent ``delay_s`` after the handler is in place, which the test reads from
    /proc (polling): before that lies the interpreter's own start-up (``site``, ``runpy``), and
    the ~10 ms of importing this package, :mod:`feph_finetune.interrupts` and
    :mod:`feph_finetune.errors`, where no Python code can answer a signal and it ends the process
    with its own exit (143, 129); a test that raced it would flake. That the window ends before
    any heavy import is :func:`test_the_stop_handlers_come_before_any_heavy_import`."""
    command = subprocess.Popen([sys.executable, "-m", "feph_finetune", "plugins"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while command.poll() is None and not caught_signals(command.pid) & (1 << (stop - 1)):
        time.sleep(0.0005)
    time.sleep(delay_s)
    command.send_signal(stop)
    _, stderr = command.communicate(timeout=120)
    assert command.returncode in (130, 0), stderr  # 0: the command had finished
    assert len(stderr.splitlines()) <= 1 and "Traceback" not in stderr, stderr


def test_an_interrupt_inside_exec_of_a_string_still_exits_130(tmp_path):
    """A stop landing in code ``exec`` runs from a string (a dataclass being built at import) made
    ``python -m`` end the process with SIGINT (-2) although the command answered it: the exit is 130."""
    (tmp_path / "interrupted_in_exec.py").write_text(
        "import sys\nfrom feph_finetune.interrupts import run_command_process\n"
        "sys.exit(run_command_process(lambda: exec('raise KeyboardInterrupt')))\n")
    finished = subprocess.run([sys.executable, "-m", "interrupted_in_exec"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 130, finished.stderr


INTERRUPTED_AT_IMPORT = """
import os, signal, sys


class InterruptAtImport:
    '''Send this process SIGINT as {module} starts to import: the project's handler raises it there.'''

    def find_spec(self, name, path, target=None):
        if name == {module!r}:
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, InterruptAtImport())
from feph_finetune.__main__ import run

sys.exit(run())
"""


@pytest.mark.parametrize("module", ["feph_finetune.cli", "feph_finetune.plugins"])
def test_an_interrupt_before_the_command_answers_it_still_says_interrupted(tmp_path, module):
    """A stop while the command-line modules import (before :func:`feph_finetune.cli.main`'s own
    answer) exited 130 with nothing on stderr, though every interrupt says "interrupted". The
    signal is sent by the process itself as the module's import starts: no race."""
    (tmp_path / "interrupted_at_import.py").write_text(INTERRUPTED_AT_IMPORT.format(module=module))
    finished = subprocess.run([sys.executable, "-m", "interrupted_at_import", "plugins"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert finished.returncode == 130, finished.stderr
    assert finished.stderr == "interrupted\n"


INTERRUPTED_IN_SET_NAME = """
import os, signal, sys
from feph_finetune.interrupts import run_command_process


class Interrupting:
    '''A descriptor whose __set_name__ meets the stop signal, as a dataclass field being built at import can.'''

    def __set_name__(self, owner, name):
        os.kill(os.getpid(), signal.SIGINT)


def command():
    class Holder:
        field = Interrupting()
    return 0


sys.exit(run_command_process(command))
"""


def test_an_interrupt_python_turned_into_another_error_still_exits_130(tmp_path):
    """Python raises ``RuntimeError`` from a KeyboardInterrupt that lands in ``__set_name__``: the
    command printed that traceback and exited 1 though its handler had answered the signal."""
    (tmp_path / "interrupted_in_set_name.py").write_text(INTERRUPTED_IN_SET_NAME)
    finished = subprocess.run([sys.executable, "-m", "interrupted_in_set_name"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert finished.returncode == 130, finished.stderr
    assert finished.stderr == "interrupted\n"
