"""Import TensorFlow and Keras without their start-up notices on the console.

TensorFlow 2.21 prints notices from C++ while it is imported (absl's "All log messages before
absl::InitializeLog()", "Could not find cuda drivers", the CPU-instructions line), whatever
``TF_CPP_MIN_LOG_LEVEL`` says, and an error-level "failed call to cuInit" the first time it
looks for devices on a machine without a GPU driver (measured on this project's CPU machine).
They are written to file descriptor 2, below Python's ``sys.stderr``, so only pointing the
descriptor elsewhere while they are printed hides them. Every process that imports TensorFlow for
a command goes through :func:`import_tensorflow`: the fork server of the ``process`` executor
(:mod:`feph_finetune.execution.executors.preload`), ``predict``, ``convert`` and the ``inline`` executor's
runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def discarded(*descriptors: int) -> Iterator[None]:
    """Within the block, what is written to ``descriptors`` (1: stdout, 2: stderr) is discarded,
    from Python and from C++ alike; afterwards they are what they were."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(fd) for fd in descriptors]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in descriptors:
            os.dup2(devnull, fd)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd, copy in zip(descriptors, saved):
            os.dup2(copy, fd)
        for fd in saved + [devnull]:
            os.close(fd)


def import_tensorflow(find_devices: bool = True) -> None:
    """Import TensorFlow and Keras with their notices on stderr discarded.

    ``find_devices``: also let TensorFlow look for its devices now (``list_physical_devices``,
    which prints "failed call to cuInit" where there is no GPU driver); the fork server must not,
    so that each child still picks its GPU with ``CUDA_VISIBLE_DEVICES``. Threads can still be
    configured afterwards. An import that raises raises here, after stderr is back, so its error
    is seen; ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (warnings and errors only) for later logging.
    """
    if "tensorflow" in sys.modules and not find_devices:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with discarded(2):
        tensorflow = importlib.import_module("tensorflow")
        importlib.import_module("keras")
        if find_devices:
            tensorflow.config.list_physical_devices()
