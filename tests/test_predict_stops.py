"""``predict`` stops on Ctrl-C, SIGTERM or SIGHUP like every command (exit 130, nothing written),
even while a plugin's frame step, run one batch ahead in a worker thread, never returns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from feph_finetune import interrupts
from feph_finetune.plugins import plugin_code
from feph_finetune.predict.prefetch import FrameStepDidNotReturn, prefetched

from conftest import REPO, write_distribution
from fephfixture import write_png
from test_console_output import tiny_bundle

#: A plugin whose frame step touches ``entered`` and then sleeps (the GIL released) while
#: ``marker`` exists: a frame step that hangs, as a detector waiting on a lost device would.
HANGING_FRAME_STEP = '''
import time
from pathlib import Path

from feph_finetune import FrameResult, Preprocessing, hookimpl


@hookimpl
def plugin_options():
    return {"marker": "", "entered": ""}


@hookimpl
def preprocess(context):
    marker, entered = Path(context.options["marker"]), Path(context.options["entered"])

    def frame(image):
        entered.touch()
        while marker.exists():
            time.sleep(0.2)
        return FrameResult(image)

    return Preprocessing(frame=frame, cache_key="hangframe")
'''


def hanging_bundle(folder: Path, marker: Path, entered: Path) -> Path:
    """The tiny 7-class bundle, its one preprocessing step the hanging frame step."""
    bundle = tiny_bundle(folder)
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    manifest["preprocess"] = [{"plugin": "hangframe", "options": {"marker": str(marker), "entered": str(entered)}, "state": None}]
    (bundle / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle


@pytest.mark.slow(45)
@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT, signal.SIGINT), (signal.SIGTERM,)], ids=["three-ctrl-c", "sigterm"])
def test_a_stop_while_a_frame_step_hangs_ends_predict_with_130_naming_the_plugin(tmp_path, signals):
    """Before, the stop waited for the prefetch worker, which never reached its next frame: the
    command never ended (after three Ctrl-C it said "stopping: cleaning up first" and went on
    waiting). Now it ends after the grace, exit 130, naming the plugin, --out never written."""
    marker, entered = tmp_path / "marker", tmp_path / "entered"
    env = write_distribution(tmp_path / "site", "hangframe", HANGING_FRAME_STEP)
    bundle = hanging_bundle(tmp_path / "bundle", marker, entered)
    image, out = tmp_path / "face.png", tmp_path / "out" / "p.csv"
    write_png(image, (40, 40), channels=3)
    out.parent.mkdir()
    marker.touch()
    command = subprocess.Popen([sys.executable, "-m", "feph_finetune", "predict", str(bundle), str(image), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, **env, "COLUMNS": "1000"})
    try:
        ends = time.monotonic() + 300
        while not entered.exists() and command.poll() is None and time.monotonic() < ends:
            time.sleep(0.1)
        assert entered.exists(), f"predict never reached the frame step: {command.communicate()}"
        for signum in signals:
            command.send_signal(signum)
            time.sleep(0.5)
        try:
            _, stderr = command.communicate(timeout=120)  # the grace is 10 s; before the fix it never ended
        except subprocess.TimeoutExpired:
            command.kill()
            pytest.fail(f"predict did not end after the stop; it printed: {command.communicate()}")
    finally:
        marker.unlink(missing_ok=True)  # a predict still running ends its frame step
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == 130, stderr
    assert "plugin 'hangframe' (preprocess) in a frame step did not return within 10 s of the stop" in stderr, stderr
    assert f"interrupted: nothing was written to {out}" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert list(out.parent.iterdir()) == [], "neither --out nor its temporary file"


def hanging_producer(release: threading.Event, entered: threading.Event):
    """A ``produce`` for :func:`prefetched`: one item, then a frame step of plugin ``stuck`` that
    waits for ``release``."""
    calls = []

    def produce():
        calls.append(None)
        if len(calls) == 1:
            return "first"
        with plugin_code("stuck", "preprocess"):
            entered.set()
            release.wait()
        return None

    return produce


@pytest.fixture
def short_grace(monkeypatch):
    monkeypatch.setattr(interrupts, "STOP_GRACE_S", 0.2)


@pytest.mark.parametrize("stopped_by", ["interrupt", "error"])
def test_a_stop_or_error_while_the_worker_hangs_waits_only_the_grace(short_grace, stopped_by):
    """An interrupt while the worker is held in a plugin's frame step becomes
    FrameStepDidNotReturn naming the plugin; an error (a full disk, say) stays itself; neither
    waits for the worker beyond the grace."""
    release, entered = threading.Event(), threading.Event()
    stop = threading.Event()
    items = prefetched(hanging_producer(release, entered), stop)
    try:
        assert next(items) == "first"
        assert entered.wait(60), "the worker never reached the second frame step"
        raised = KeyboardInterrupt() if stopped_by == "interrupt" else OSError("no space left")
        with pytest.raises(FrameStepDidNotReturn if stopped_by == "interrupt" else OSError) as caught:
            items.throw(raised)
        assert stop.is_set()
        if stopped_by == "interrupt":
            assert str(caught.value).startswith("plugin 'stuck' (preprocess) in a frame step did not return within 0.2 s of the stop")
        else:
            assert caught.value is raised
    finally:
        release.set()


def test_a_worker_that_ends_normally_is_waited_for_and_its_error_raised_in_the_caller():
    stop = threading.Event()

    def failing():
        raise ValueError("a frame step's own failure")

    with pytest.raises(ValueError, match="a frame step's own failure"):
        list(prefetched(failing, stop))
    produced = iter(["a", "b", None])
    assert list(prefetched(lambda: next(produced), stop)) == ["a", "b"]


def test_a_frame_step_that_seems_to_hang_is_named_once_without_a_signal(monkeypatch):
    """predict has no timeout: a frame step that has run for SLOW_FRAME_STEP_S is named on the
    console, once, and predict goes on waiting for it (here it returns once named)."""
    from feph_finetune.predict import prefetch

    monkeypatch.setattr(prefetch, "SLOW_FRAME_STEP_S", 0.0)
    monkeypatch.setattr(prefetch, "WATCH_S", 0.05)
    release, said = threading.Event(), []
    produced = iter(["first", None])

    def produce():
        with plugin_code("slow", "preprocess"):
            release.wait(60)
        return next(produced)

    def warn(line: str) -> None:
        said.append(line)
        release.set()

    assert list(prefetched(produce, threading.Event(), warn)) == ["first"]
    assert len(said) == 1 and said[0].startswith("plugin 'slow' (preprocess) in a frame step has not returned for "), said
    assert said[0].endswith("s; predict waits for it (Ctrl-C ends the command)")
