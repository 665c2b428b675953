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
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, TypeVar

from feph_finetune import interrupts
from feph_finetune.plugins import hook_listener

Item = TypeVar("Item")


class FrameStepDidNotReturn(KeyboardInterrupt):
    """A stop while the worker ran a frame step that did not return within the grace; a
    KeyboardInterrupt, so the command answers it as the stop it is (exit 130), and its text is
    the line that says who held it."""


class HookNow:
    """The plugin hook a thread is in now (a :data:`~feph_finetune.plugins.hook_listener`)."""

    def __init__(self):
        self.now: tuple[str, str] | None = None

    def __call__(self, plugin: str | None, hook: str | None) -> None:
        self.now = None if plugin is None else (plugin, str(hook))

    def holder(self) -> str:
        """Who holds the thread, in the words of a run's timeout: ``plugin 'x' (preprocess)``."""
        return f"plugin {self.now[0]!r} ({self.now[1]}) in a frame step" if self.now else "the decoding of a frame"


def prefetched(produce: Callable[[], Item | None], stop: threading.Event) -> Iterator[Item]:
    """``produce()``'s items until it returns None, each produced in a worker thread while the
    caller works on the previous one; its error is raised here. When the caller stops early
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
            item, error = ready.get()
            if error is not None:
                raise error
            if item is None:
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
