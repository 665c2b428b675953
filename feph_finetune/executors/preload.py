"""Imported once by the server of :mod:`feph_finetune.executors.forkserver`: TensorFlow and Keras,
quietly.

TensorFlow 2.21 prints start-up notices (absl's, oneDNN's, CUDA probing) on file descriptor 2
whatever ``TF_CPP_MIN_LOG_LEVEL`` says, and the server's descriptor 2 is the command's console;
they are discarded here. If the import raises, nothing is raised here: each child imports
TensorFlow itself when its run needs it, and the error lands in that run's ``stderr.log`` and
result. If it crashes the server, the runs fail as unable to start
(:class:`feph_finetune.executors.process.Child`).
"""

import importlib
import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_quietly() -> None:
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's to handle
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        importlib.import_module("tensorflow")
        importlib.import_module("keras")
    except Exception:  # the children meet the same error, where it is reported
        pass
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)
        signal.signal(signal.SIGINT, interrupt)


_import_quietly()
