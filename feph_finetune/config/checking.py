"""The whole check of a configuration, in one pass, before any work.

:func:`check_configuration` checks everything a run of the matrix depends on: every key against
its declaration (:mod:`feph_finetune.config.schema`), inheritance, grids, plugin names, plugin
options and traits, the dataset (folds against its groups, files named by options), the executor
and its options (with ``--jobs`` and ``--devices``), the results folders, ``--only`` and
``--phase``, and the tables a client registers (the demo's ``[demo]``). A value that fails its
check is reported and checking goes on; only what depends on an invalid value is skipped. It
returns what a run needs, or raises one :class:`~feph_finetune.config.reading.ConfigError` with
every problem, each naming its place (``file:line key`` or the flag).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from feph_finetune.config.options import Option, as_option, option_problems
from feph_finetune.config.schema import EXPERIMENT_OPTIONS, PHASES
from feph_finetune.config.matrix import Matrix, MatrixBuilder, Run, select, selection_problems
from feph_finetune.config.reading import ConfigError, Problem, RawConfig, check_section, flag_and_set_problem, in_file_order
from feph_finetune.execution.executors import ExecutorChoice, check_executor
from feph_finetune.plugins import Plugins


#: ``--phase``: the phases a selection may name.
PHASE_OPTION = Option(PHASES[0], "run only this phase", choices=PHASES)


@dataclass(frozen=True)
class CheckedConfiguration:
    """What a run of a checked configuration needs: the matrix, the runs ``--only`` and
    ``--phase`` select (in the matrix's order), the executor and the results folder."""

    matrix: Matrix
    runs: list[Run]
    executor: ExecutorChoice
    output: Path


def check_configuration(
    raw: RawConfig,
    plugins: Plugins,
    *,
    only: list[str] | None = None,
    phase: str | None = None,
    output: Path | None = None,
    default_output: Path | None = None,
    executor: str | None = None,
    jobs: str | None = None,
    devices: str | None = None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    check_files: bool = True,
    pending_files: frozenset[str] = frozenset(),
    warn: Callable[[str], None] = warnings.warn,
) -> CheckedConfiguration:
    """Check ``raw`` (with its ``--set`` overrides applied) in one pass.

    ``output``: the results folder (default: ``default_output`` where a client has its own, the
    demo's ``runs/demo``, else the TOML's ``output``), refused where a ``--set output=...`` says
    another; ``executor``, ``jobs`` and ``devices``: the flags' text, None when not given, each
    refused likewise where a ``--set`` gives its setting another value. ``tables``: declarations of top-level
    tables a client of the core owns (``{"demo": DEMO_OPTIONS}``), checked when the file has
    them, whether the client runs or not; an experiment's settings among them (``[demo]
    defaults``) are checked as an experiment's, plugin names and options included.
    ``check_files=False`` (the demo, whose data and base models are written after the check)
    skips what needs files on disk: the dataset root and its index, files named by
    options; ``pending_files``: paths options may name before they exist, because the caller
    writes them before a run needs them. ``warn`` is called with each line of what is allowed
    but probably not meant (options of a tracking plugin that is not enabled), problems or not.
    The arguments are named in problems as ``raw.names`` writes them (flags or keyword arguments).

    Raises ConfigError with every problem; returns the :class:`CheckedConfiguration` otherwise.
    """
    builder = MatrixBuilder(raw, plugins, check_files=check_files, pending_files=pending_files)
    matrix = builder.matrix(check_root=check_files)
    problems: list[Problem] = []
    for name, declarations in (tables or {}).items():
        if name in raw.data:
            check_section(raw, raw.data[name], declarations, (name,), problems)
            for keys, table in settings_tables(raw.data[name], declarations, (name,)):
                builder.check_settings_table(table, keys)
    problems = builder.problems + problems
    problems += run_id_problems(matrix.runs, raw)
    problems += selection_problems(matrix, only, raw.names)
    if phase is not None:
        problems += [Problem(raw.names("phase", phase), message) for message in option_problems(phase, PHASE_OPTION)]
    folder = Path(output) if output is not None else Path(default_output) if default_output is not None else Path(matrix.output)
    if output is not None and (given_twice := flag_and_set_problem(raw, "output", str(output), folder, ("output",))):
        problems.append(given_twice)
    problems += output_problems(folder, matrix.report)
    choice, executor_problems = check_executor(raw, plugins, executor, jobs, devices)
    problems += executor_problems
    runs: list[Run] = []
    if not problems:  # with problems, a run left out by them would make "no runs selected" wrong
        try:
            runs = select(matrix, only, phase, raw.names)
        except ConfigError as error:
            problems += error.problems
    for line in builder.warnings:
        warn(line)
    if problems:
        raise ConfigError(in_file_order(problems))
    return CheckedConfiguration(matrix, runs, choice, folder)


def settings_tables(table: Any, declarations: Mapping[str, Any], keys: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """The tables inside a client's ``table`` that hold an experiment's settings (declared
    ``Option(table=EXPERIMENT_OPTIONS)``, as ``[demo] defaults``), each with its key path."""
    if not isinstance(table, dict):
        return
    for key, declaration in declarations.items():
        option = as_option(declaration)
        if option.table is None or key not in table:
            continue
        if option.table is EXPERIMENT_OPTIONS:
            yield keys + (key,), table[key]
        else:
            yield from settings_tables(table[key], option.table, keys + (key,))


def output_problems(output: Path, report: Mapping[str, Any]) -> list[Problem]:
    """A results folder (and ``[report] figures_dir``) that cannot be written, each a problem."""
    from feph_finetune.results.store import output_folder_problem

    folders = {"results directory": output}
    if report["figures"] and report["figures_dir"]:
        folders["report.figures_dir"] = Path(report["figures_dir"])
    return [Problem(f"{name} {folder}", problem) for name, folder in folders.items() if (problem := output_folder_problem(folder))]


def run_id_problems(runs: list[Run], raw: RawConfig) -> list[Problem]:
    """Run ids that cannot name a results folder: one longer than ``NAME_MAX`` bytes (the
    experiment's name makes it long; the folder could not be created), or one shared by two runs
    (a grid value that does not change the run: both would write one folder at once). Each
    problem names the experiment's place; a shared id names both runs."""
    from feph_finetune.data.user_files import NAME_MAX

    problems, first_with, longest_id = [], {}, {}
    for run in runs:
        longest_id[run.experiment] = max(longest_id.get(run.experiment, ""), run.id, key=lambda text: len(text.encode("utf-8")))
        other = first_with.setdefault(run.id, run)
        if other is not run:
            place = raw.where("experiments", run.experiment, *(("grid",) if run.variant else ()))
            problems.append(Problem(place, f"two runs have the id {run.id}: {_run_source(other)} and {_run_source(run)} make the same run, "
                                           "which would be run twice into one folder; remove the setting that does not change the run"))
    for experiment, run_id in longest_id.items():
        size = len(run_id.encode("utf-8"))
        if size > NAME_MAX:
            problems.append(Problem(raw.where("experiments", experiment),
                                    f"the experiment's name is too long: its run id {run_id[:40]}... names a results folder and has {size} bytes, "
                                    f"more than the {NAME_MAX} a file name may have; shorten the name to at most {len(experiment) - (size - NAME_MAX)} characters"))
    return problems


def _run_source(run: Run) -> str:
    """A run as the configuration makes it: its experiment and grid point."""
    point = ", ".join(f"{key}={value!r}" for key, value in run.variant.items())
    return f"experiments.{run.experiment}" + (f" (grid {point})" if point else "")
