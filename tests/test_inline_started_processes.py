"""A run of the inline executor that is stopped (its timeout) ends the processes its hooks
started, whether the hook waits on them from Python (``Popen.wait``, which the timeout
interrupts) or from C (``os.system``, which it cannot)."""

from __future__ import annotations

import sys
import time

import pytest

from conftest import write_distribution, write_matrix
from feph_finetune.execution.executors.inline import InlineExecutor
from feph_finetune.execution.executors.started_processes import running
from feph_finetune.results.store import RunStore
from test_executors import quiet_runner

#: A plugin whose preprocess starts ``sleep 4321`` (writing its pid, or its shell's, to ``pids``) and waits on it.
SPAWN_PLUGIN = '''
import os
import subprocess
from pathlib import Path

from feph_finetune import hookimpl


@hookimpl
def plugin_options():
    return {"pids": "", "how": "popen"}


@hookimpl
def preprocess(context):
    pids = Path(context.options["pids"])
    if context.options["how"] == "popen":
        child = subprocess.Popen(["sleep", "4321"])
        pids.write_text(str(child.pid))
        child.wait()
    else:
        os.system(f"echo $$ > {pids}; exec sleep 4321")
    return None
'''

MATRIX = """
[experiments.spawns]
timeout = 3
preprocess = ["spawn"]
options.spawn.pids = "{pids}"
options.spawn.how = "{how}"
options.adam.head_epochs = 0
options.adam.epochs = 0
"""


@pytest.fixture
def spawn_plugin(tmp_path, monkeypatch):
    write_distribution(tmp_path / "site", "spawn", SPAWN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield
    sys.modules.pop("feph_spawn", None)


@pytest.mark.slow(15)
@pytest.mark.parametrize("how", ["popen", "system"])
def test_a_timed_out_inline_run_ends_the_processes_it_started(spawn_plugin, synthetic_feph, tmp_path, how):
    pids = tmp_path / "pids"
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, MATRIX.format(pids=pids, how=how))
    runner = quiet_runner(path, tmp_path / "runs", InlineExecutor({}))
    try:
        outcome = runner.run_all(runner.matrix.runs)
        record = RunStore(tmp_path / "runs").records()[0]
        assert len(outcome.failed) == 1 and record["error"]["message"] == "timed out after 3 s in plugin 'spawn' (preprocess)", record["error"]
        assert not running(int(pids.read_text())), "the hook's sleep 4321 runs on after its run timed out"
    finally:
        if pids.exists() and running(pid := int(pids.read_text())):
            import os, signal
            os.kill(pid, signal.SIGKILL)
