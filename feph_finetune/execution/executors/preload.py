"""Imported once by the server of :mod:`feph_finetune.execution.executors.forkserver`: TensorFlow and Keras,
quietly (:mod:`feph_finetune.training.quiet_tensorflow`; the server's descriptors 1 and 2 are the command's
console). The server ignores Ctrl-C, blocked from its start
(:func:`feph_finetune.execution.executors.forkserver.start_child`): the command handles it.

If the import raises, nothing is raised here: each child imports TensorFlow itself when its run
needs it, and the error lands in that run's ``stderr.log`` and result. If it crashes the server,
the runs fail as unable to start (:class:`feph_finetune.execution.executors.process.Child`).
The server ends with the command, even during the import
(:func:`feph_finetune.execution.executors.forkserver.die_with_parent`).
"""

from feph_finetune.standard_streams import reopen_closed_standard_streams

reopen_closed_standard_streams()  # a server started by a program without stderr: TensorFlow's files must not take fd 2

from feph_finetune.execution.executors.forkserver import die_with_parent, ignore_ctrl_c_in_server  # noqa: E402
from feph_finetune.training.quiet_tensorflow import discarded, import_tensorflow  # noqa: E402


def _import_quietly() -> None:
    try:
        with discarded(1):
            import_tensorflow(find_devices=False)  # no device touched: each child picks its GPU
    except Exception:  # the children meet the same error, where it is reported
        pass


ignore_ctrl_c_in_server()
die_with_parent()  # before the import: a command stopped meanwhile takes the server with it
_import_quietly()
