"""Shared fixtures: an isolated cache, synthetic FePh-format data, and tiny experiment files."""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest
from rich.console import Console

from feph_finetune.api import RunContext
from feph_finetune.plugins import reset_plugins
from feph_finetune.data.preparation import DataSource, RunData, prepare
from feph_finetune.session import Session

REPO = Path(__file__).resolve().parents[1]

#: A matrix small enough for two CPU cores: MobileNet alpha 0.25 at 32 px, one epoch per stage.
TINY_DEFAULTS = """
seed = 3

[dataset]
root = "{root}"
folds = 3

[defaults]
input_size = 32
batch_size = 16
preprocess = ["face_crop"]

[defaults.options.mobilenet]
weights = "none"
alpha = 0.25

[defaults.options.adam]
head_epochs = 1
epochs = 1
"""


def pytest_configure(config):
    """pytest-xdist first sends each worker a quarter of its share of the tests, in collection
    order: with the slow tests in front (below), one worker would get all of them. One test at a
    time (two queued) hands each to whichever worker is free. A ``--maxschedchunk`` given wins."""
    if config.pluginmanager.hasplugin("xdist") and config.getoption("maxschedchunk", None) is None:
        config.option.maxschedchunk = 1


def declared_seconds(item: pytest.Item) -> float:
    """The seconds a test's ``@pytest.mark.slow(seconds)`` declares; 0 for a test without it."""
    marker = item.get_closest_marker("slow")
    return float(marker.args[0]) if marker else 0.0


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slowest first, so that no long test starts late and sets the suite's wall time: modules
    by their slowest declared test, and in each module its slow tests first. A module stays in
    one piece (its module-scoped fixtures are built once per worker); the order depends only on
    the collection, so every xdist worker collects the same one."""
    module_seconds: dict[Path, float] = {}
    module_index: dict[Path, int] = {}
    for item in items:
        module_index.setdefault(item.path, len(module_index))
        module_seconds[item.path] = max(module_seconds.get(item.path, 0.0), declared_seconds(item))
    items.sort(key=lambda item: (-module_seconds[item.path], module_index[item.path], -declared_seconds(item)))


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Never write to the user's cache; one crop cache for the whole session."""
    previous = os.environ.get("FEPH_FINETUNE_CACHE")
    os.environ["FEPH_FINETUNE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("FEPH_FINETUNE_CACHE", None)
    else:
        os.environ["FEPH_FINETUNE_CACHE"] = previous


#: Devices tests point links at (a labels CSV, a record, a crop cache entry linked to /dev/zero).
#: As root, a writer that followed such a link would replace the device with a regular file and
#: break the machine for every later program: this happened once, to /dev/zero, during a change.
WATCHED_DEVICES = ("/dev/null", "/dev/zero")


@pytest.fixture(autouse=True)
def devices_left_alone():
    """Fail the test after which a watched device is no longer a character device."""
    yield
    replaced = [device for device in WATCHED_DEVICES if not stat.S_ISCHR(os.stat(device).st_mode)]
    assert not replaced, f"this test replaced {replaced} with a regular file: a writer followed a link to a device"


@pytest.fixture(autouse=True)
def no_terminal_size(monkeypatch):
    """Every test starts without COLUMNS and LINES, whoever runs it: pytest-xdist's workers
    inherit COLUMNS=80 and LINES=24, a plain ``pytest`` does not, and the command line's tables
    and log lines take their width from COLUMNS. A test that needs a width sets it."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Each test sees the plugins of its own environment (entry points, registrations)."""
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture(scope="session")
def synthetic_feph(tmp_path_factory) -> Path:
    """A small synthetic FePh-format dataset, written once per test session."""
    from feph_finetune.demo.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic") / "FePh"
    write_synthetic_dataset(root, images=120, seed=0)
    return root


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder ``build(folder)`` fills once per test run, for every pytest-xdist worker: the first
    worker to ask builds it while the others wait on a file lock, then all read the same files.
    For fixtures whose files cost a minute (the PyTorch sources of the converter's tests), which
    each worker would otherwise build again. Without xdist, a fresh temporary folder. A build
    that raised leaves no folder behind, so the next worker to ask builds it again (and reports
    the same error in its own tests). Tests must only read the folder: others read it too."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder above every worker's
    folder, built = shared / name, shared / f"{name}.built"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            built.touch()
    return folder


def write_matrix(path: Path, root: Path, experiments: str, extra: str = "") -> Path:
    """A tiny experiments TOML over ``root`` with the given experiment tables."""
    path.write_text(TINY_DEFAULTS.format(root=root) + textwrap.dedent(extra) + textwrap.dedent(experiments), encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    """The number of the last line of ``path`` that contains ``text`` (for ``file:line`` messages)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return max(number for number, line in enumerate(lines, start=1) if text in line)


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m feph_finetune ARGS`` in a subprocess (for exit codes and import checks)."""
    return subprocess.run(
        [sys.executable, "-m", "feph_finetune", *args],
        capture_output=True, text=True, cwd=cwd or REPO, env={**os.environ, **(env or {})}, timeout=600,
    )


class TinyMatrix:
    """A one-run-per-experiment matrix over the synthetic data, with a quiet runner (a
    :class:`feph_finetune.session.Session` running in this process)."""

    def __init__(self, tmp_path: Path, root: Path, experiments: str):
        path = write_matrix(tmp_path / "m.toml", root, experiments)
        session = Session(path, executor="inline", output=tmp_path / "runs", console=Console(file=io.StringIO()))
        self.runs = {run.experiment: run for run in session.plan()}
        self.matrix, self.plugins, self.store = session.matrix, session.plugins, session.store
        self.runner = session.runner(source=DataSource())

    def context(self, experiment: str, plugin: str) -> RunContext:
        return self.runner.context_factory(self.runs[experiment], {})(plugin)

    def prepare(self, experiment: str) -> RunData:
        run = self.runs[experiment]
        return prepare(run, self.plugins, self.runner.source, self.runner.context_factory(run, {}), self.matrix.seed)

    def run_result(self, experiment: str) -> dict:
        run = self.runs[experiment]
        self.runner.run_one(run)
        return self.store.result(run.id)


KILLER_PLUGIN = '''
import os
import signal
from pathlib import Path

from feph_finetune import hookimpl


@hookimpl
def plugin_options():
    return {"marker": ""}


@hookimpl
def augment(context):
    """While the marker file exists, the process running the run dies by SIGKILL."""
    if Path(context.options["marker"]).exists():
        os.kill(os.getpid(), signal.SIGKILL)
    return None
'''


def write_killer_distribution(site: Path) -> dict[str, str]:
    """An installed distribution ``feph-killer`` whose plugin ``killer`` SIGKILLs its process while
    ``options.killer.marker`` exists; returns the environment that makes children see it."""
    return write_distribution(site, "killer", KILLER_PLUGIN)


HANG_PLUGIN = '''
import os
import time
from pathlib import Path

from feph_finetune import hookimpl


@hookimpl
def plugin_options():
    return {"marker": "", "hook": "evaluate", "spare_pid": 0}


def hang_while_marked(context, hook):
    """While the marker file exists, the hook named by ``options.hang.hook`` never returns, except
    in the process ``options.hang.spare_pid`` (a Ray driver, which also calls preprocess)."""
    while context.options["hook"] == hook and Path(context.options["marker"]).exists() and os.getpid() != context.options["spare_pid"]:
        time.sleep(3600)


@hookimpl
def preprocess(context):
    hang_while_marked(context, "preprocess")
    return None


@hookimpl
def evaluate(y_true, y_prob, context):
    hang_while_marked(context, "evaluate")
    return {}
'''


def write_hang_distribution(site: Path) -> dict[str, str]:
    """An installed distribution ``feph-hang`` whose plugin ``hang`` sleeps forever in the hook
    ``options.hang.hook`` (preprocess or evaluate) while ``options.hang.marker`` exists, except
    in the process ``options.hang.spare_pid``."""
    return write_distribution(site, "hang", HANG_PLUGIN)


def write_distribution(site: Path, name: str, code: str) -> dict[str, str]:
    """An installed distribution ``feph-NAME`` with the plugin ``name`` (module ``feph_NAME``);
    returns the environment that makes child processes see it."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"feph_{name}.py").write_text(code, encoding="utf-8")
    info = site / f"feph_{name}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: feph-{name}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[feph_finetune]\n{name} = feph_{name}\n", encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))}


def synth_writing_images(out, poll_s: float = 0.05):
    """A ``synth OUT --images 100000`` process, returned once it has written its first images into
    its temporary folder (so that a signal then lands in the middle of the writing)."""
    import subprocess, sys, time
    command = subprocess.Popen([sys.executable, "-m", "feph_finetune", "synth", str(out), "--images", "100000"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(folder.is_dir() and any(folder.iterdir()) for folder in out.glob(".*.tmp.FePh_images")):
        assert time.monotonic() < deadline and command.poll() is None, "synth never started writing images"
        time.sleep(poll_s)
    return command
