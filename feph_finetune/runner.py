"""Running a matrix: skip what is finished, run the rest, record failures, keep going.

Each run's files go to its own directory in the results store; its ``result.json`` is written
last, so an interrupted matrix resumes where it stopped and never trusts a half-written run.
"""

from __future__ import annotations

import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import feph_finetune
from feph_finetune.api import CLASSES, RunContext
from feph_finetune.frames import default_cache_dir
from feph_finetune.matrix import Matrix, Run
from feph_finetune.plugins import PluginCallError, Plugins
from feph_finetune.preparation import DataSource, prepare
from feph_finetune.results import RunStore


@dataclass
class MatrixOutcome:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def plugin_versions(plugins: Plugins, names: list[str]) -> dict[str, str]:
    return {name: plugins.origins.get(name, f"builtin {feph_finetune.__version__}") for name in names}


def run_record(run: Run, status: str) -> dict[str, Any]:
    """The part of ``result.json`` that describes the run itself (reports group by it)."""
    return {
        "id": run.id,
        "experiment": run.experiment,
        "label": run.label,
        "cv_label": run.cv_label,
        "model": run.config["model"],
        "baseline": not run.config["fine_tune"],
        "order": run.order,
        "phase": run.phase,
        "fold": run.fold,
        "seed": run.seed,
        "variant": run.variant,
        "status": status,
        "classes": list(CLASSES),
    }


class MatrixRunner:
    """Executes runs one after another against a results store."""

    def __init__(self, matrix: Matrix, plugins: Plugins, store: RunStore, console: Console, source: DataSource | None = None):
        self.matrix = matrix
        self.plugins = plugins
        self.store = store
        self.console = console
        self.source = source or DataSource()

    def context_factory(self, run: Run, counters: dict[str, int]):
        cache_dir = Path(run.dataset["cache_dir"]).expanduser() if run.dataset["cache_dir"] else default_cache_dir()

        def context_for(plugin: str) -> RunContext:
            return RunContext(
                run_id=run.id,
                experiment=run.experiment,
                phase=run.phase,
                fold=run.fold,
                seed=run.seed,
                input_size=run.config["input_size"],
                config=run.config,
                options=run.config["options"].get(plugin, {}),
                cache_dir=cache_dir,
                counters=counters,
            )

        return context_for

    def run_all(self, runs: list[Run], force: bool = False) -> MatrixOutcome:
        outcome = MatrixOutcome()
        for number, run in enumerate(runs, start=1):
            if not force and self.store.is_done(run.id):
                outcome.skipped.append(run.id)
                continue
            self.console.log(f"[{number}/{len(runs)}] {run.id}  ({run.label}, {run.phase}{'' if run.fold is None else f' fold {run.fold}'})")
            status = self.run_one(run)
            (outcome.done if status == "done" else outcome.failed).append(run.id)
        return outcome

    def run_one(self, run: Run) -> str:
        counters: dict[str, int] = {}
        context_for = self.context_factory(run, counters)
        self.store.write(run.id, "config.json", {"run": run.describe(), "config": run.config, "dataset": run.dataset})
        record = run_record(run, "failed")
        started = time.perf_counter()
        try:
            data = prepare(run, self.plugins, self.source, context_for, self.matrix.seed)
            counters["face_fallback"] = data.fallbacks
            from feph_finetune import training  # TensorFlow is imported here, when a run really starts

            with self.progress() as progress:
                outcome = training.train_and_predict(run, self.plugins, data, context_for, progress)
            metrics = self.evaluate(run, data.test.labels, outcome.y_prob, context_for)
            self.store.write_predictions(run.id, data.test.labels, outcome.y_prob)
            self.store.write(run.id, "history.json", outcome.history)
            self.store.write(run.id, "metrics.json", metrics)
            if run.config["save_model"] and outcome.model is not None:
                outcome.model.save(self.store.run_dir(run.id) / "model.keras")
            self.store.write(run.id, "environment.json", self.environment(run, training.environment()))
            record.update(status="done", metrics=metrics, error=None)
            if outcome.notes:  # how the results were obtained, beyond the configuration (No-FT's dropped classes)
                record["notes"] = outcome.notes
            record["timing"] = {"total_s": time.perf_counter() - started, "stages": outcome.stage_seconds}
        except PluginCallError as error:
            record.update(error=self.error_record(error.plugin, error.hook, error.error))
        except Exception as error:  # anything else (out of memory, a core bug) fails this run only
            record.update(error=self.error_record("core", "run", error))
        record.setdefault("timing", {"total_s": time.perf_counter() - started, "stages": {}})
        record["counters"] = counters
        self.store.finish(run.id, record)
        if record["status"] == "failed":
            error = record["error"]
            self.console.print(f"[red]run {run.id} failed[/red] in plugin {error['plugin']!r} ({error['hook']}): {error['type']}: {error['message']}")
        return record["status"]

    def evaluate(self, run: Run, y_true: np.ndarray, y_prob: np.ndarray, context_for) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        for name in run.config["evaluate"]:
            result = self.plugins.call(name, "evaluate", y_true=y_true, y_prob=y_prob, context=context_for(name)) or {}
            clashes = sorted(set(result) & set(metrics))
            if clashes:
                raise PluginCallError(name, "evaluate", KeyError(f"metrics {clashes} already set by an earlier evaluate plugin"))
            metrics.update(result)
        return metrics

    def environment(self, run: Run, framework: dict[str, Any]) -> dict[str, Any]:
        return {
            "feph_finetune": feph_finetune.__version__,
            "plugins": plugin_versions(self.plugins, run.plugins_used()),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "seed": run.seed,
            "split_seed": self.matrix.seed,
            "git_commit": git_commit(),
            **framework,
        }

    @staticmethod
    def error_record(plugin: str, hook: str, error: BaseException) -> dict[str, Any]:
        return {
            "plugin": plugin,
            "hook": hook,
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error))[-4000:],
        }

    def progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=self.console, transient=True, disable=not self.console.is_terminal
        )
