"""What a person watching a matrix sees: a live view on a terminal, one line per event otherwise.

The view consumes the run events of :mod:`feph_finetune.execution.job` (``started``, ``progress``,
``finished``), whichever executor produced them and however many runs execute at once. On a
terminal it shows the counts of queued, running, finished and failed runs, the elapsed time and an
estimate of the time left, each running run's stage, epoch and loss, and the last finished runs
with their accuracy; it fits 80 columns. In a log file or a pipe it prints one line per start,
new epoch and end of a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from feph_finetune.config.matrix import Run
from feph_finetune.printable import LOG_TIME, counted, printable

#: Finished runs listed under the running ones in the live view.
RECENT_FINISHED = 4


def epoch_words(stage: str, epoch: int | None, epochs: int | None, stage_number: int | None = None, stages: int | None = None) -> str:
    """Where training is, as the progress display says it: ``adam (stage 2/2) epoch 1/3``, the
    epoch counted within its stage (counted across stages, "adam epoch 2/2" read as the last of
    two Adam epochs where Adam had one); the stage's number only where a schedule has several."""
    place = f" (stage {stage_number}/{stages})" if stages and stages > 1 else ""
    return f"{stage}{place} epoch {epoch}/{epochs}"


@dataclass
class RunState:
    run: Run
    state: str = "queued"  # queued, running, done, failed
    started: float | None = None
    stage: str = ""
    stage_number: int | None = None
    stages: int | None = None
    epoch: int | None = None  # within the stage
    epochs: int | None = None  # of the stage
    loss: float | None = None
    accuracy: float | None = None
    seconds: float | None = None
    error: str = ""  # why a failed run failed

    def where(self) -> str:
        return self.run.phase if self.run.fold is None else f"{self.run.phase} fold {self.run.fold}"


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class MatrixView:
    """Tracks the runs of one invocation from their events and shows them on ``console``.

    Use as a context manager around the executor; pass :meth:`report` as its ``report``.
    ``concurrency`` (runs at once) feeds the estimate of the time left; None when the executor
    knows it only once it started (a Ray cluster's resources), from its ``concurrency`` event
    (``{"event": "concurrency", "runs": N, "why": TEXT}``). A ``note`` event
    (``{"event": "note", "message": TEXT}``) is the executor's word on the matrix as a whole
    (its runs wait for a busy cluster's CPUs): a log line, or a line of the live view.
    """

    def __init__(self, console: Console, runs: list[Run], concurrency: int | None = 1, executor: str = ""):
        self.console, self.executor = console, executor
        self.states = {run.id: RunState(run) for run in runs}
        self.concurrency = self.at_once(concurrency or 1)
        self.concurrency_known = concurrency is not None
        self.warned: set[str] = set()
        self.finished_order: list[str] = []
        self.began = time.monotonic()
        self.live: Live | None = None
        self.note = ""  # the executor's last note (a ``note`` event), shown under the counts

    def at_once(self, slots: int) -> int:
        """How many runs go at once when the executor has ``slots``: never more than the runs
        there are ("1 run ..., 2 at a time" said what cannot happen), never fewer than one."""
        return max(1, min(int(slots), len(self.states) or int(slots)))

    # --- lifecycle ---

    def __enter__(self) -> "MatrixView":
        self.began = time.monotonic()
        where = f" with executor {self.executor!r}" if self.executor else ""
        if self.console.is_terminal:
            self.live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False, get_renderable=self.render)
            self.live.start()
        else:
            self.line(f"running {counted(len(self.states), 'run')}{where}" + (f", {self.concurrency} at a time" if self.concurrency_known else ""))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)
            self.live.stop()
            self.live = None

    # --- events ---

    def report(self, event: dict[str, Any]) -> None:
        if event.get("event") == "concurrency":
            self.concurrency = self.at_once(event.get("runs") or 1)
            self.line(f"{self.concurrency} at a time ({event.get('why')})")
            return
        if event.get("event") == "note":  # the executor's word on the whole matrix (runs queued for a busy cluster's CPUs)
            self.note = str(event.get("message") or "")
            self.line(self.note)
            if self.live is not None:
                self.live.refresh()
            return
        state = self.states.get(event.get("run"))
        if state is None:
            return
        kind = event.get("event")
        if kind == "started":
            state.state, state.started = "running", time.monotonic()
            self.concurrency = max(self.concurrency, self.count("running"))  # an executor may run more than it said
            self.line(f"started {state.run.id} ({state.run.label}, {state.where()})")
        elif kind == "progress":
            new_epoch = (event.get("stage_number"), event.get("stage"), event.get("epoch")) != (state.stage_number, state.stage, state.epoch)
            state.stage, state.epoch, state.epochs, state.loss = event.get("stage", ""), event.get("epoch"), event.get("epochs"), event.get("loss")
            state.stage_number, state.stages = event.get("stage_number"), event.get("stages")
            if new_epoch:
                self.line(f"{state.run.id}: {epoch_words(state.stage, state.epoch, state.epochs, state.stage_number, state.stages)}")
        elif kind == "warning" and event.get("message") not in self.warned:
            self.warned.add(event.get("message"))
            self.console.print(f"warning: {event.get('message')}", markup=False, highlight=False, soft_wrap=True)
        elif kind == "finished":
            state.state = "done" if event.get("status") == "done" else "failed"
            state.accuracy, state.error = event.get("accuracy"), event.get("error") or ""
            state.seconds = event.get("seconds") or (time.monotonic() - state.started if state.started else None)
            self.finished_order.append(state.run.id)
            if state.state == "done":
                self.line(f"done {state.run.id}: accuracy {self.percent(state.accuracy)} in {clock(state.seconds)}")
            else:
                self.line(f"FAILED {state.run.id}: {state.error}")
        if self.live is not None:
            self.live.refresh()

    def line(self, message: str) -> None:
        """A log line when the output is not a terminal (the live view shows the same); the
        console shows a control character in ``message`` escaped (:mod:`feph_finetune.printable`)."""
        if self.live is None and not self.console.is_terminal:
            self.console.print(f"{time.strftime(LOG_TIME)} [{self.count('done') + self.count('failed')}/{len(self.states)}] {message}", markup=False, highlight=False, soft_wrap=True)

    # --- figures ---

    def count(self, state: str) -> int:
        return sum(1 for run in self.states.values() if run.state == state)

    def eta(self) -> float | None:
        """Seconds left: the mean duration of finished runs times the work left, spread over
        the runs at once; None before any run finishes."""
        durations = [state.seconds for state in self.states.values() if state.state in ("done", "failed") and state.seconds]
        if not durations:
            return None
        mean, now = sum(durations) / len(durations), time.monotonic()
        left = self.count("queued") * mean
        left += sum(max(mean - (now - state.started), 0.0) for state in self.states.values() if state.state == "running" and state.started)
        return left / self.concurrency

    @staticmethod
    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    # --- rendering ---

    def render(self) -> Group:
        elapsed = time.monotonic() - self.began
        counts = Text.assemble(
            (counted(len(self.states), "run"), "bold"), ": ",
            (f"{self.count('queued')} queued", "dim"), " · ", (f"{self.count('running')} running", "cyan"), " · ",
            (f"{self.count('done')} done", "green"), " · ", (f"{self.count('failed')} failed", "red" if self.count("failed") else "dim"),
        )
        eta = self.eta()
        times = Text(f"{clock(elapsed)} elapsed · " + (f"about {clock(eta)} left" if eta is not None else "time left known after the first run"), "dim")
        if self.note:
            times = Text.assemble(times, "\n", (printable(self.note), "yellow"))
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, expand=False)
        table.add_column("run", no_wrap=True, overflow="ellipsis", max_width=30)
        table.add_column("state", no_wrap=True)
        table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=44)
        for state in self.states.values():
            if state.state == "running":
                table.add_row(Text(printable(state.run.id)), Text("running", "cyan"), Text(printable(self.running_detail(state))))
        for run_id in self.finished_order[-RECENT_FINISHED:][::-1]:
            state = self.states[run_id]
            if state.state == "done":
                table.add_row(Text(printable(run_id)), Text("done", "green"), f"accuracy {self.percent(state.accuracy)} in {clock(state.seconds)}")
            else:
                table.add_row(Text(printable(run_id)), Text("failed", "red"), Text(printable(state.error)))
        return Group(counts, times, table) if table.row_count else Group(counts, times)

    @staticmethod
    def running_detail(state: RunState) -> str:
        took = clock(time.monotonic() - state.started) if state.started else "-"
        if state.epoch is None:
            return f"preparing  {took}"
        loss = "" if state.loss is None else f" loss {state.loss:.3f}"
        return f"{epoch_words(state.stage, state.epoch, state.epochs, state.stage_number, state.stages)}{loss}  {took}"
