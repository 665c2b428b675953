"""Plugin code that exits or hangs: ``sys.exit()`` at import or in a hook is that plugin's failure
like any exception, and Ctrl-C while a plugin imports names it (issue 22)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from feph_finetune import plugins as plugin_manager
from feph_finetune.execution.executors.inline import RunTimedOut
from feph_finetune.hookspecs import hookimpl
from feph_finetune.plugins import PluginCallError, get_plugins

from conftest import REPO, write_matrix
from test_plugins import cli_with, listed, matrices, site, write_distribution  # noqa: F401 (site: a fixture)


def test_sys_exit_while_importing_marks_only_that_plugin_broken(site, tmp_path, synthetic_feph):
    """``sys.exit(3)`` in a plugin's module stopped every command with exit 3 and no word."""
    write_distribution(site, name="sx", version="0.1", module="plug_sx", entry="sx", body="import sys\nsys.exit(3)\n")
    entry = listed(site)[("sx", "sx 0.1")]
    assert entry["status"] == "broken" and "sys.exit(3)" in entry["error"] and "plug_sx" in entry["error"]
    using, other = matrices(tmp_path, synthetic_feph, "sx")
    assert cli_with(site, str(other), "--dry-run").returncode == 0
    described = cli_with(site, "data", str(synthetic_feph))
    assert described.returncode == 0, described.stderr
    predicted = cli_with(site, "predict", str(tmp_path / "no_bundle"), str(tmp_path / "frame.png"))
    assert predicted.returncode == 2 and "no_bundle" in predicted.stderr  # its own error, after loading the plugins
    refused = cli_with(site, str(using), "--dry-run")
    assert refused.returncode == 2 and "'sx' of sx 0.1 is broken" in refused.stderr and "sys.exit(3)" in refused.stderr


class Exits:
    """A plugin registered for one test: its ``evaluate`` raises ``raised``."""

    def __init__(self, raised: BaseException):
        self.raised = raised

    @hookimpl
    def evaluate(self, y_true):
        raise self.raised


@pytest.mark.parametrize("raised", [SystemExit(0), SystemExit("bye"), BaseException("odd"), GeneratorExit()], ids=repr)
def test_a_hook_that_exits_fails_as_the_plugins_error(raised):
    """``GeneratorExit`` too: no call site of plugin code is a generator being closed, so only the
    plugin raised it (it crashed the whole matrix, or the process executor's child)."""
    plugins = get_plugins()
    plugins.pm.register(Exits(raised), name="exits")
    with pytest.raises(PluginCallError) as failed:
        plugins.call("exits", "evaluate", y_true=None, y_prob=None, context=None)
    assert failed.value.plugin == "exits" and failed.value.hook == "evaluate" and failed.value.error is raised


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), RunTimedOut()], ids=lambda error: type(error).__name__)
def test_interrupts_pass_through_a_hook_unchanged(raised):
    """Under Python's own SIGINT handler (a notebook, a library call) a KeyboardInterrupt may be a
    Ctrl-C: it stops, as the core's own interrupts do."""
    plugins = get_plugins()
    plugins.pm.register(Exits(raised), name="exits")
    with pytest.raises(type(raised)):
        plugins.call("exits", "evaluate", y_true=None, y_prob=None, context=None)


class RaisesSignal:
    """A plugin whose ``evaluate`` sends this process a real SIGINT: a Ctrl-C."""

    @hookimpl
    def evaluate(self, y_true):
        signal.raise_signal(signal.SIGINT)


def test_a_keyboard_interrupt_without_a_signal_is_the_plugins_failure_and_a_real_one_stops():
    """A hook that raised KeyboardInterrupt itself stopped the whole matrix with exit 130 as if
    Ctrl-C had been pressed; with the command's handlers in place, only a real signal stops."""
    from feph_finetune.interrupts import stop_signals_as_interrupt

    plugins = get_plugins()
    plugins.pm.register(Exits(KeyboardInterrupt()), name="raises")
    plugins.pm.register(RaisesSignal(), name="signals")
    with stop_signals_as_interrupt():
        with pytest.raises(PluginCallError) as failed:
            plugins.call("raises", "evaluate", y_true=None, y_prob=None, context=None)
        assert failed.value.plugin == "raises" and "raised KeyboardInterrupt without a Ctrl-C" in str(failed.value)
        with pytest.raises(KeyboardInterrupt) as stopped:
            plugins.call("signals", "evaluate", y_true=None, y_prob=None, context=None)
        assert not isinstance(stopped.value, PluginCallError)


def test_generator_exit_or_keyboard_interrupt_at_import_marks_the_plugin_broken(site):
    """``raise GeneratorExit`` at import ended ``plugins`` with a traceback and exit 1; a
    KeyboardInterrupt raised without a signal stopped it with exit 130."""
    write_distribution(site, name="ge", version="0.1", module="plug_ge", entry="ge", body="raise GeneratorExit('ge')\n")
    write_distribution(site, name="ki", version="0.1", module="plug_ki", entry="ki", body="raise KeyboardInterrupt\n")
    found = listed(site)
    assert found[("ge", "ge 0.1")]["status"] == "broken" and "GeneratorExit: ge" in found[("ge", "ge 0.1")]["error"]
    assert found[("ki", "ki 0.1")]["status"] == "broken" and "without a Ctrl-C" in found[("ki", "ki 0.1")]["error"]


def test_a_step_function_that_exits_fails_as_its_plugins_error():
    """The functions a hook returns are plugin code too: a batch step's ``sys.exit()``."""
    import numpy as np
    from feph_finetune.api import Preprocessing
    from feph_finetune.training.stages import preprocess_batch

    def leave(x):
        sys.exit(0)

    with pytest.raises(PluginCallError) as failed:
        preprocess_batch(np.zeros((1, 4, 4, 3), np.uint8), [("leaver", Preprocessing(batch=leave))])
    assert failed.value.plugin == "leaver" and "sys.exit(0)" in str(failed.value)


EXITING_METRIC = """
import sys
from feph_finetune import hookimpl

@hookimpl
def evaluate(y_true, y_prob, context):
    sys.exit(0)
"""


def run_a_and_b(site, tmp_path, synthetic_feph, metric: str, executor: str):
    """Run a matrix whose experiment A also evaluates with plugin ``metric`` and B does not;
    assert the command failed (exit 1) and B finished; return the command and the records by experiment."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph,
                        f'[experiments.A]\nevaluate = ["paper_metrics", "{metric}"]\n[experiments.B]\nevaluate = ["paper_metrics"]\n')
    finished = cli_with(site, str(path), "--executor", executor, "--output", str(tmp_path / "runs"))
    assert finished.returncode == 1, finished.stderr
    records = {record["experiment"]: record for record in (json.loads(path.read_text()) for path in tmp_path.joinpath("runs").glob("*/result.json"))}
    assert records["B"]["status"] == "done"
    return finished, records


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_sys_exit_in_a_hook_fails_that_run_and_the_matrix_goes_on(site, tmp_path, synthetic_feph, executor):
    """``sys.exit(0)`` in ``evaluate`` ended the inline command with exit 0 and nothing written,
    and killed the process executor's child with a WorkerDied naming no plugin."""
    write_distribution(site, name="sx", version="0.1", module="plug_sx_run", entry="sx", body=EXITING_METRIC)
    finished, records = run_a_and_b(site, tmp_path, synthetic_feph, "sx", executor)
    assert records["A"]["status"] == "failed" and records["A"]["error"]["plugin"] == "sx" and records["A"]["error"]["hook"] == "evaluate"
    assert records["A"]["error"]["type"] == "SystemExit"
    assert records["A"]["error"]["message"] == "sys.exit(0)"  # as at import; it was "0" (None: "None")
    assert "failed in plugin 'sx' (evaluate): sys.exit(0)" in finished.stdout + finished.stderr


def test_a_worded_error_is_summarised_as_at_import():
    from feph_finetune.execution.job import error_record, failure_summary

    assert failure_summary(error_record("evil", "evaluate", SystemExit("evil says bye"))) == "failed in plugin 'evil' (evaluate): sys.exit('evil says bye')"
    assert failure_summary(error_record("evil", "evaluate", ValueError("no"))) == "failed in plugin 'evil' (evaluate): ValueError: no"


LEAVING_METRIC = """
import os
from feph_finetune import hookimpl

@hookimpl
def evaluate(y_true, y_prob, context):
    {leave}
"""


@pytest.mark.parametrize("leave,executor", [("raise KeyboardInterrupt", "inline"), ("raise KeyboardInterrupt", "process"), ("os._exit(0)", "process")])
def test_a_hook_that_interrupts_or_ends_its_process_fails_as_the_plugins_error(site, tmp_path, synthetic_feph, leave, executor):
    """A KeyboardInterrupt without Ctrl-C stopped the inline matrix with 130, and the process
    executor blamed the core ("WorkerDied ... exited with code 130"); ``os._exit(0)`` was
    "failed in the core (process): WorkerDied ... code 0"."""
    write_distribution(site, name="ev", version="0.1", module="plug_ev_run", entry="evil", body=LEAVING_METRIC.format(leave=leave))
    finished, records = run_a_and_b(site, tmp_path, synthetic_feph, "evil", executor)
    error = records["A"]["error"]
    assert records["A"]["status"] == "failed" and error["plugin"] == "evil" and error["hook"] == "evaluate", error
    if leave.startswith("os"):
        assert "the run's process ended (exit code 0) while plugin 'evil' ran its evaluate hook" in error["message"]
    else:
        assert error["message"] == "raised KeyboardInterrupt without a Ctrl-C"


def test_an_error_in_a_plugin_objects_del_is_one_warning_line_naming_the_plugin(capfd):
    """A ``__del__`` that raised printed Python's "Exception ignored in" traceback."""
    from feph_finetune.unraisable import unraisable_as_warnings

    class Leaky:
        def __del__(self):
            raise ValueError("gone\nwrong")

    plugins = get_plugins()
    plugins.pm.register(Exits(ValueError()), name="leaky")  # a plugin of this module, which defines Leaky too
    before = sys.unraisablehook
    with unraisable_as_warnings():
        leaky = Leaky()
        del leaky
    assert sys.unraisablehook is before
    said = capfd.readouterr().err
    assert said.count("\n") == 1 and "Traceback" not in said and "Exception ignored" not in said, said
    assert said.startswith("warning: plugin 'leaky': error ignored in <function") and said.rstrip().endswith("ValueError: gone\\nwrong"), said


def test_a_slow_plugin_import_is_named_once_on_stderr(site, monkeypatch, capfd):
    write_distribution(site, name="slow", version="0.1", module="plug_slow", entry="slow", body="import time\ntime.sleep(1.0)\n")
    monkeypatch.setattr(plugin_manager, "SLOW_IMPORT_S", 0.1)
    assert "slow" in get_plugins().names()
    said = capfd.readouterr().err
    assert said.count("loading plugin 'slow' (module plug_slow) is taking long") == 1, said


HANGING_PLUGIN = """
import pathlib, time
pathlib.Path({marker!r}).write_text("importing")
time.sleep(3600)
"""


@pytest.mark.parametrize("command", [["plugins"], ["TOML", "--dry-run"], ["data", "ROOT"]], ids=lambda words: words[0])
def test_ctrl_c_while_a_plugin_imports_names_it_and_offers_no_continue(site, tmp_path, synthetic_feph, command):
    """A hung plugin import hung every command; Ctrl-C then said "finished runs are saved; to
    continue, run: ... --dry-run" where nothing had run. The marker file, written as the import
    starts, times the signal: no race."""
    marker = tmp_path / "importing"
    write_distribution(site, name="hang", version="0.1", module="plug_hang", entry="hang", body=HANGING_PLUGIN.format(marker=str(marker)))
    _, other = matrices(tmp_path, synthetic_feph, "hang")
    words = [str(other) if word == "TOML" else str(synthetic_feph) if word == "ROOT" else word for word in command]
    started = subprocess.Popen([sys.executable, "-m", "feph_finetune", *words], cwd=REPO, env={**os.environ, "PYTHONPATH": str(site)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists() and started.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    started.send_signal(signal.SIGINT)
    _, stderr = started.communicate(timeout=120)
    assert started.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted while loading plugin 'hang' (module plug_hang)", stderr
    assert "continue" not in stderr and "Traceback" not in stderr


class WaitsAtConfiguration:
    """A preprocess plugin whose ``plugin_traits`` and option check call ``act`` (wait, or be
    interrupted) while the configuration is checked."""

    def __init__(self, hook, act):
        self.hook, self.act = hook, act

    @hookimpl
    def plugin_options(self):
        from feph_finetune import Option

        return {"x": Option(1, check=lambda value: (self.act() if self.hook == "check" else None) and None)}

    @hookimpl
    def plugin_traits(self, options):
        if self.hook == "plugin_traits":
            self.act()

    @hookimpl
    def preprocess(self, context):
        return None


#: What stderr names, per place the plugin code is waited for.
WAITED_FOR = {"plugin_traits": "calling hook 'plugin_traits' of plugin 'sleepy' (checking the configuration)",
              "check": "checking option 'x' of plugin 'sleepy'"}


def sleepy_matrix(tmp_path, synthetic_feph):
    return write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\npreprocess = ["face_crop", "sleepy"]\noptions.sleepy.x = 2\n')


@pytest.mark.parametrize("hook", WAITED_FOR)
def test_a_slow_configuration_hook_or_check_is_named_once_on_stderr(tmp_path, synthetic_feph, monkeypatch, capfd, hook):
    """A plugin_traits that slept held --dry-run with nothing on screen, as a slow import did
    not. The hook waits until the note is written: no race on time."""
    import threading

    said = threading.Event()
    say = plugin_manager._say_slow
    monkeypatch.setattr(plugin_manager, "SLOW_IMPORT_S", 0.01)
    monkeypatch.setattr(plugin_manager, "_say_slow", lambda doing: (say(doing), said.set()))
    get_plugins().pm.register(WaitsAtConfiguration(hook, lambda: said.wait(120)), name="sleepy")
    from feph_finetune.cli import main

    assert main([str(sleepy_matrix(tmp_path, synthetic_feph)), "--dry-run"]) == 0
    assert said.is_set() and capfd.readouterr().err.count(f"{WAITED_FOR[hook]} is taking long") == 1


@pytest.mark.parametrize("hook", WAITED_FOR)
def test_an_interrupt_in_a_configuration_hook_or_check_names_it(tmp_path, synthetic_feph, monkeypatch, capfd, hook):
    """Ctrl-C there said only "interrupted". The KeyboardInterrupt stands for the signal's (a stop
    signal came: interrupt_may_be_a_stop)."""
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(plugin_manager, "interrupt_may_be_a_stop", lambda: True)
    get_plugins().pm.register(WaitsAtConfiguration(hook, interrupted), name="sleepy")
    from feph_finetune.cli import main

    assert main([str(sleepy_matrix(tmp_path, synthetic_feph)), "--dry-run"]) == 130
    error = capfd.readouterr().err
    assert error.strip().splitlines()[-1] == f"interrupted while {WAITED_FOR[hook]}", error
    assert "Traceback" not in error and "continue" not in error
