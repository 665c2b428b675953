"""The ``inline`` executor: every run in the calling process, one after another.

The behaviour before executors existed, kept for debugging (a breakpoint in a plugin stops the
command itself) and for plugin objects registered at run time, which only this process knows.
TensorFlow's memory grows by what each finished run leaves behind (see README, "Executors").
"""

from __future__ import annotations

from feph_finetune.execution import Report, RunJob, execute_run
from feph_finetune.executors import Executor, InProcess


class InlineExecutor(Executor):
    name = "inline"
    summary = "every run in this process, one at a time (debugging; plugins registered at run time)"
    options = {}

    def execute(self, jobs: list[RunJob], report: Report, here: InProcess) -> None:
        for job in jobs:
            execute_run(job, here.plugins, here.source, report)
            self.report_finished(job, report)
