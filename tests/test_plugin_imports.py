"""A third-party plugin that misbehaves while it is imported (every command imports every
plugin): it must not break, hang or corrupt the commands that do not use it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from feph_finetune.plugins import PluginCallError, describe_error

from conftest import REPO, line_of, run_cli, write_matrix
from test_plugins import cli_with, listed, site, write_distribution  # noqa: F401 (site: a fixture)

UNSHOWABLE = "(its message could not be shown)"  # the words the issue asks for

UNSHOWABLE_ERROR = """
class Unshowable(Exception):
    def __str__(self):
        raise RuntimeError("str exploded")

    def __repr__(self):
        raise RuntimeError("repr exploded")
"""

THREAD_AT_IMPORT = """
import threading, time
threading.Thread(target=lambda: time.sleep(10**6), name="endless").start()
"""


def test_an_exception_whose_text_raises_at_import_is_listed_broken_and_other_commands_go_on(site, tmp_path, synthetic_feph):
    """Every command crashed with "RuntimeError: str exploded" chained tracebacks, exit 1."""
    write_distribution(site, name="unshow", version="0.1", module="plug_unshow", entry="unshow", body=UNSHOWABLE_ERROR + "raise Unshowable()\n")
    entry = listed(site)[("unshow", "unshow 0.1")]
    assert entry["status"] == "broken" and f"Unshowable: {UNSHOWABLE}" in entry["error"]
    other = write_matrix(tmp_path / "other.toml", synthetic_feph, '[experiments.B]\nevaluate = ["paper_metrics"]\n')
    dry = cli_with(site, str(other), "--dry-run")
    assert dry.returncode == 0 and "Traceback" not in dry.stderr


def test_a_hooks_exception_whose_text_raises_is_described_and_recorded():
    from feph_finetune.execution.job import error_record

    namespace: dict = {}
    exec(UNSHOWABLE_ERROR, namespace)  # the test's own class, not configuration
    error = namespace["Unshowable"]()
    assert describe_error(error) == f"Unshowable: {UNSHOWABLE}"
    assert describe_error(SystemExit(error)) == f"sys.exit({UNSHOWABLE})"
    assert f"failed in hook 'evaluate': Unshowable: {UNSHOWABLE}" in str(PluginCallError("p", "evaluate", error))
    assert error_record("p", "evaluate", error)["message"] == UNSHOWABLE


def test_a_thread_started_at_import_does_not_keep_the_command_alive(site):
    """``plugins`` printed its table and then waited forever for the plugin's thread."""
    write_distribution(site, name="thr", version="0.1", module="plug_thr", entry="thr", body=THREAD_AT_IMPORT)
    done = subprocess.run([sys.executable, "-m", "feph_finetune", "plugins", "--json"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(site)}, timeout=120)
    assert done.returncode == 0
    assert any(entry["name"] == "thr" for entry in json.loads(done.stdout))
    assert "thread 'endless', which plugin 'thr' started while imported, is still running" in done.stderr


def test_a_stop_signal_still_gives_130_with_a_plugins_thread_alive(site):
    write_distribution(site, name="thr", version="0.1", module="plug_thr", entry="thr",
                       body=THREAD_AT_IMPORT + "import sys\nprint('imported', file=sys.stderr, flush=True)\ntime.sleep(120)\n")
    command = subprocess.Popen([sys.executable, "-m", "feph_finetune", "plugins"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(site)})
    try:
        assert command.stderr.readline().strip() == "imported"
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=60) == 130
    finally:
        command.kill()
        command.communicate()


def test_a_thread_started_at_import_does_not_keep_a_process_executors_child_alive(site, tmp_path, synthetic_feph):
    write_distribution(site, name="thr", version="0.1", module="plug_thr", entry="thr", body=THREAD_AT_IMPORT)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.B]\nevaluate = ["paper_metrics"]\n')
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "feph_finetune", str(path), "--executor", "process", "--output", str(tmp_path / "runs")],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(site)}, timeout=300)  # a tiny run takes under a minute; a hung child forever
    assert done.returncode == 0, done.stderr
    record = json.loads(next(tmp_path.joinpath("runs").glob("*/result.json")).read_text())
    assert record["status"] == "done", time.monotonic() - started


NOISY = """
import os
import warnings
print("hello from the import")
os.write(1, b"native banner\\n")  # what a C extension writes to file descriptor 1
warnings.warn("something is deprecated\\nsecond line")

from feph_finetune import hookimpl


@hookimpl
def plugin_options():
    print("options asked for")
    return {"level": 1}
"""


def test_print_and_warnings_at_import_keep_json_stdout_parseable_and_warn_in_one_line(site, tmp_path, synthetic_feph):
    """print() at import corrupted ``plugins --json`` and ``--dry-run --json``; warnings.warn showed Python's two raw lines."""
    write_distribution(site, name="noisy", version="0.1", module="plug_noisy", entry="noisy", body=NOISY)
    listing = cli_with(site, "plugins", "--json")
    assert listing.returncode == 0 and any(entry["name"] == "noisy" for entry in json.loads(listing.stdout))
    assert "hello from the import" in listing.stderr and "native banner" in listing.stderr
    warned = [line for line in listing.stderr.splitlines() if "deprecated" in line]
    assert warned == ["warning: plugin 'noisy' warned while imported: UserWarning: something is deprecated\\nsecond line"]
    assert "options asked for" in listing.stderr  # a hook's print: at load and in the listing
    settings = cli_with(site, "plugins", "--settings", "--json")
    assert settings.returncode == 0 and json.loads(settings.stdout) and "options asked for" in settings.stderr
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.B]\nevaluate = ["paper_metrics"]\n[experiments.B.options.noisy]\nlevel = 2\n')
    dry = cli_with(site, str(path), "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout) and "hello from the import" in dry.stderr


def test_a_working_directory_changed_at_import_is_restored_with_a_warning(site, tmp_path, synthetic_feph):
    """A relative dataset.root was then "folder 'data' does not exist", the plugin not named."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_distribution(site, name="mover", version="0.1", module="plug_mover", entry="mover", body=f"import os\nos.chdir({str(elsewhere)!r})\n")
    path = write_matrix(tmp_path / "m.toml", os.path.relpath(synthetic_feph, tmp_path), '[experiments.B]\nevaluate = ["paper_metrics"]\n')
    dry = run_cli("m.toml", "--dry-run", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert dry.returncode == 0, dry.stderr
    assert f"plugin 'mover' changed the working directory to {str(elsewhere)!r} while imported; changed back to {str(tmp_path)!r}" in " ".join(dry.stderr.split())
    assert path.exists()


@pytest.mark.parametrize("left", ["atexit.register(lambda: time.sleep(10**6))",
                                  "multiprocessing.Process(target=time.sleep, args=(10**6,)).start()"],
                         ids=["atexit", "child process"])
def test_an_exit_handler_that_never_returns_ends_the_exit_at_its_bound_with_the_code(left, tmp_path):
    """An ``atexit`` function, or a child process the exit joins, that never returns held the
    process for ever (even through SIGTERM): the exit ends at its bound, with the command's code
    and one warning. The bound is shortened to 2 s here (30 s in a command)."""
    script = textwrap.dedent(f"""
        import atexit, multiprocessing, sys, time
        from feph_finetune import plugins
        plugins.EXIT_BOUND_S = 2.0
        {left}
        plugins.bound_the_exit(3)
        sys.exit(3)
    """)
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr_file:  # a file: the child process left holds a pipe open
        command = subprocess.Popen([sys.executable, "-c", script], stderr=stderr_file, start_new_session=True)
    try:
        command.wait(timeout=60)
        stderr = log.read_text()
    finally:
        try:
            os.killpg(command.pid, signal.SIGKILL)  # the child process left sleeping
        except ProcessLookupError:  # none left
            pass
    assert command.returncode == 3, stderr
    assert "exit handlers (atexit functions or child processes that a plugin or library left) have not finished after 2 s" in stderr


#: A plugin whose exit handler deadlocks in native code that keeps the interpreter's lock (the GIL):
#: ``ctypes.PyDLL`` does not release it, and a default mutex locked twice by one thread never returns.
GIL_HOLDING_EXIT_HANDLER = """
import atexit, ctypes

def deadlock():
    mutex = ctypes.create_string_buffer(64)  # zeroed: an unlocked default mutex (glibc's PTHREAD_MUTEX_INITIALIZER)
    libc = ctypes.PyDLL(None)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)

atexit.register(deadlock)
"""


def test_an_exit_handler_hung_in_native_code_holding_the_interpreter_ends_the_exit(site):
    """The exit's watchdog is a Python thread, which cannot run while native code holds the GIL:
    ``plugins`` printed its table and hung for ever. faulthandler's C timer ends it 5 s after the
    bound (shortened to 2 s here, 30 s in a command) with every thread's stack on stderr, exit 1."""
    write_distribution(site, name="gilexit", version="0.1", module="plug_gilexit", entry="gilexit", body=GIL_HOLDING_EXIT_HANDLER)
    command = textwrap.dedent("""
        import sys
        from feph_finetune import plugins
        from feph_finetune.__main__ import run
        plugins.EXIT_BOUND_S = 2.0
        sys.argv[1:] = ["plugins", "--json"]
        sys.exit(run())
    """)
    done = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(site)}, timeout=60)  # hung: TimeoutExpired
    assert done.returncode == 1, done.stderr
    assert any(entry["name"] == "gilexit" for entry in json.loads(done.stdout)), "the table came before the exit"
    assert "Timeout (0:00:07)!" in done.stderr, "faulthandler's header: the 2 s bound + 5 s"
    handler = site / "plug_gilexit.py"
    assert f'{handler}", line {line_of(handler, "pthread_mutex_lock")} in deadlock' in done.stderr, "the stack names the handler's line"
