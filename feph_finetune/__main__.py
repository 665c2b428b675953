"""``python -m feph_finetune`` and the ``feph-finetune`` script: see :mod:`feph_finetune.cli`.

The process answers stop signals as 130 from its start to its exit
(:func:`feph_finetune.interrupts.run_command_process`); :func:`feph_finetune.cli.main`, which
tests and notebooks call, puts the handlers back when it returns.

The handlers are installed before the command-line modules are imported: until then only this
module, :mod:`feph_finetune.interrupts` and :mod:`feph_finetune.errors` are loaded (the package
imports its exports on first use), so a stop signal during the imports (a quarter of a second) is
answered as 130 too. What remains is the interpreter's own start-up (``site``, ``runpy``), before
any of the project's code runs: a signal there ends the process with the signal's exit.

Before anything else (importing this module is the start of both), a standard descriptor the
process was started without gets devnull (:mod:`feph_finetune.standard_streams`), so that no file
the command opens takes its number.
"""

import sys

from feph_finetune.standard_streams import reopen_closed_standard_streams

reopen_closed_standard_streams()

from feph_finetune.interrupts import run_command_process  # noqa: E402 (after the descriptors are open)


def _command_line() -> int:
    """The command line's :func:`~feph_finetune.cli.main`, imported with the handlers in place."""
    from feph_finetune.cli import main
    from feph_finetune.last_resort import own_this_process
    from feph_finetune.unraisable import print_warning

    own_this_process()  # an inline run's timeout may end this process even where native code holds the interpreter
    sys.unraisablehook = print_warning  # kept until the exit: objects collected at shutdown too (cli.main puts back its caller's)
    return main()


def run() -> int:
    """The command's exit code; the process ends with it even when a thread or exit handler a
    plugin left would keep it alive (:func:`feph_finetune.plugins.bound_the_exit`)."""
    code = run_command_process(_command_line)
    plugins = sys.modules.get("feph_finetune.plugins")  # not imported (a stop at the start): no plugin left anything
    if plugins is not None:  # importing it now would outlast the stop handlers, put back by now
        plugins.bound_the_exit(code)
    ray_connect = sys.modules.get("feph_finetune.execution.executors.ray_connect")
    if ray_connect is not None:  # a Ray cluster lost midway: its teardown would crash the exit
        ray_connect.end_if_cluster_lost(code)
    return code


if __name__ == "__main__":
    sys.exit(run())
