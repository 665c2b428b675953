"""``python -m feph_finetune`` and the ``feph-finetune`` script: see :mod:`feph_finetune.cli`.

The process answers stop signals as 130 from its start to its exit
(:func:`feph_finetune.interrupts.run_command_process`); :func:`feph_finetune.cli.main`, which
tests and notebooks call, puts the handlers back when it returns.
"""

import sys

from feph_finetune.interrupts import run_command_process


def run() -> int:
    from feph_finetune.cli import main

    return run_command_process(main)


if __name__ == "__main__":
    sys.exit(run())
