"""``predict``'s frame preparation one batch ahead, in a thread a stop never waits on for ever.

The next batch is decoded and put through the frame steps (plugin code: the face detector) in
a worker thread while the model predicts the current one (OpenCV and TensorFlow release the
GIL). A stop (Ctrl-C, SIGTERM, SIGHUP, or any error in the command) reaches the main thread
only; the worker is told to end before its next frame and given
:data:`~feph_finetune.interrupts.STOP_GRACE_S`, the grace a matrix's inline run gets. A frame
step that has not returned by then (one that hangs, a deadlock in native code) cannot be ended
from here: the command ends without it, saying which plugin held it
(:class:`FrameStepDidNotReturn`), so that ``predict`` ends on a stop like every command,
exit 130 and its temporary output removed. The worker is a daemon thread, so the process's exit
does not wait for it either.

``predict`` has no timeout of its own (README, "predict"); a frame step that has run for
:data:`SLOW_FRAME_STEP_S` is named on stderr once, so that a hang without a signal is not a
silent one.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator, TypeVar

from feph_finetune import interrupts
from feph_finetune.plugins import hook_listener

Item = TypeVar("Item")

#: Seconds one call of a frame step may take before predict says which plugin it waits for: a
#: face detector takes well under a second a frame, so a minute means it hangs.
SLOW_FRAME_STEP_S = 60.0
#: Seconds between two looks of the waiting caller at how long the frame step has run.
WATCH_S = 1.0


class FrameStepDidNotReturn(KeyboardInterrupt):
    """A stop while the worker ran a frame step that did not return within the grace; a
    KeyboardInterrupt, so the command answers it as the stop it is (exit 130), and its text is
    the line that says who held it."""


class HookNow:
    """The plugin hook a thread is in now (a :data:`~feph_finetune.plugins.hook_listener`)."""

    def __init__(self):
        self.now: tuple[str, str] | None = None
        self.since = 0.0  # time.monotonic() as the hook was entered

    def __call__(self, plugin: str | None, hook: str | None) -> None:
        self.now, self.since = None if plugin is None else (plugin, str(hook)), time.monotonic()

    def seconds_in_plugin(self) -> float:
        """How long the thread has been in the plugin hook it is in now; 0 outside one."""
        return time.monotonic() - self.since if self.now else 0.0

    def holder(self) -> str:
        """Who holds the thread, in the words of a run's timeout: ``plugin 'x' (preprocess)``."""
        return f"plugin {self.now[0]!r} ({self.now[1]}) in a frame step" if self.now else "the decoding of a frame"


def prefetched(produce: Callable[[], Item | None], stop: threading.Event, warn: Callable[[str], None] = lambda line: None) -> Iterator[Item]:
    """``produce()``'s items until it returns None, each produced in a worker thread while the
    caller works on the previous one; its error is raised here, and ``warn`` names a frame step
    the caller has waited on for :data:`SLOW_FRAME_STEP_S` (once). When the caller stops early
    (an interrupt, an error, closing this generator), ``stop`` is set, which ``produce`` must
    check between frames, and the worker is given the grace to end; one still in plugin code
    then, after a stop signal, raises :class:`FrameStepDidNotReturn`. Close this generator
    explicitly (``contextlib.closing``): left to the garbage collector, the wait and the error
    would come at an arbitrary point."""
    wanted: queue.Queue[bool] = queue.Queue()
    ready: queue.Queue[tuple[Item | None, BaseException | None]] = queue.Queue()
    hook = HookNow()

    def work() -> None:
        hook_listener.set(hook)  # this thread's own context: the frame steps say which plugin runs
        while wanted.get():
            try:
                item = produce()
            except BaseException as error:  # raised in the caller's thread, as if produced there
                ready.put((None, error))
                return
            ready.put((item, None))
            if item is None:
                return

    worker = threading.Thread(target=work, name="predict-prefetch", daemon=True)
    worker.start()
    wanted.put(True)
    try:
        while True:
            item, error = _next_ready(ready, hook, warn)
            if error is not None:
                raise error
            if item is None:
                worker.join()  # past its last produce(), it only returns: what it held is freed when this returns
                return
            wanted.put(True)
            yield item
    except BaseException as error:  # GeneratorExit too: the caller stopped early
        stop.set()
        wanted.put(False)
        worker.join(interrupts.STOP_GRACE_S)
        if worker.is_alive() and (isinstance(error, KeyboardInterrupt) or interrupts.stop_under_way()):
            raise FrameStepDidNotReturn(
                f"{hook.holder()} did not return within {interrupts.STOP_GRACE_S:g} s of the stop (it hangs, or runs native code that "
                "never returns); predict ends without waiting for it") from None
        raise


def _next_ready(ready: queue.Queue, hook: HookNow, warn: Callable[[str], None]) -> tuple:
    """The worker's next ``(item, error)``, waited for as long as it takes; a frame step that runs
    past :data:`SLOW_FRAME_STEP_S` meanwhile is named through ``warn``, once."""
    warned = False
    while True:
        try:
            return ready.get(timeout=WATCH_S)
        except queue.Empty:
            seconds = hook.seconds_in_plugin()
            if not warned and seconds >= SLOW_FRAME_STEP_S:
                warned = True
                warn(f"{hook.holder()} has not returned for {seconds:.0f} s; predict waits for it (Ctrl-C ends the command)")
