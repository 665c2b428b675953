"""Running a matrix from Python: the workflow behind ``python -m feph_finetune EXPERIMENTS.toml``.

A :class:`Session` holds one invocation's choices (the configuration, which runs, where they
execute, where results go) and does the work in two steps, like pytest's session that its
command line drives: :meth:`Session.plan` checks everything and returns the runs, running
nothing; :meth:`Session.run` executes the unfinished ones and returns a :class:`MatrixResult`.
The command line only parses its flags into a session and prints; :func:`run_matrix` and
:func:`plan_matrix` are the one-call forms for a notebook or a script.

A client that makes its data at run time (the demo, :mod:`feph_finetune.demo.session`) subclasses
:class:`Session` and overrides :meth:`Session.read` (lay settings over the configuration),
:meth:`Session.executor_choice` (its default executor options), :meth:`Session.prepare` (write the data
once every check has passed) and :meth:`Session.groups` (start runs as what they need is ready).
Nothing here imports TensorFlow; the first run does.
"""

from __future__ import annotations

import multiprocessing
import warnings
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from rich.console import Console

from feph_finetune.config.matrix import Matrix, Run
from feph_finetune.config.arguments import check_arguments, listed
from feph_finetune.config.reading import PYTHON, ArgumentNames, RawConfig
from feph_finetune.printable import EscapingConsole, counted, printable
from feph_finetune.results.collection import Results

@dataclass(frozen=True)
class Plan:
    """What :meth:`Session.plan` checked and resolved: the configuration, the installed plugins,
    the matrix, the selected runs (in the matrix's order), the results store and the executor."""

    raw: RawConfig
    plugins: Any  # feph_finetune.plugins.Plugins
    matrix: Matrix
    runs: list[Run]
    store: Any  # feph_finetune.results.store.RunStore
    executor: Any  # feph_finetune.execution.executors.Executor


@dataclass(frozen=True)
class MatrixResult:
    """What :meth:`Session.run` did: the selected runs, the ids of those that finished now
    (``done``), were already finished (``skipped``) or failed (``failed``: details in each run's
    ``result.json`` and its record's ``error``), the usable records of the selected runs, and the
    results folder."""

    runs: list[Run]
    done: list[str]
    skipped: list[str]
    failed: list[str]
    records: Results
    output: Path

    @property
    def ok(self) -> bool:
        """True when no selected run failed."""
        return not self.failed


class Session:
    """One invocation of a matrix; see the module's docstring.

    ``config``: the experiments TOML, or its tables as a dict (for a notebook; problems are then
    named by dotted key, without a line). ``only``: experiment names to keep (or one name); ``phase``:
    ``"exploratory"`` or ``"cv"``; ``overrides``: ``KEY=VALUE`` strings as ``--set`` takes them.
    ``executor``, ``jobs`` and ``devices`` are ``--executor``, ``--jobs`` and ``--devices``
    (text, as on the command line; ``jobs`` may be an int, ``devices`` a list of GPU indices
    such as ``[0, 1]``): None leaves the TOML's ``[executor]`` table to decide,
    whose default is ``process``. ``force``: set the selected runs' results aside first and run
    them again. ``output``: the results folder (default: the TOML's ``output``). ``track``:
    tracking plugins to enable besides ``[tracking] plugins`` (``--track``). ``tables``:
    declarations of top-level tables a client of the core owns (the command line passes the
    demo's ``{"demo": DEMO_OPTIONS}``), checked with the rest. ``console``:
    where progress, tables and log lines go (default: a rich console on stdout that shows control
    characters from data escaped, :class:`feph_finetune.printable.EscapingConsole`; a console you
    pass prints as it is made to; ``Console(quiet=True)`` is silent). ``warn``: called with one
    line per warning (a plugin that cannot be used, a ``result.json`` that cannot be read, options
    of a tracker that is not enabled); default :func:`warnings.warn`, the line escaped with
    :func:`~feph_finetune.printable.printable`. ``argument_names``: how problems name these arguments (default
    :data:`feph_finetune.config.reading.PYTHON`: ``jobs``, ``only='B'``; the command line passes
    ``COMMAND_LINE``: ``--jobs``, ``--only B``).

    Configuration mistakes raise :class:`feph_finetune.config.reading.ConfigError` listing every
    problem, before any run starts; so does an argument of the wrong type (:func:`feph_finetune.config.arguments.check_arguments`),
    at once.
    """

    #: Whether :meth:`plan` checks the files the configuration names (the dataset root, weights
    #: files); a client that writes them in :meth:`prepare` sets it False.
    check_files = True
    #: Whether the session is the synthetic demo's (``--demo``): its runs record it, so that a
    #: command suggested to run them again says ``--demo`` too.
    demo = False

    def __init__(
        self,
        config: "str | Path | Mapping[str, Any]",
        *,
        only: Iterable[str] | None = None,
        phase: str | None = None,
        overrides: Iterable[str] = (),
        executor: str | None = None,
        jobs: str | int | None = None,
        devices: str | Iterable[int] | None = None,
        force: bool = False,
        output: str | Path | None = None,
        track: Iterable[str] = (),
        tables: Mapping[str, Mapping[str, Any]] | None = None,
        console: Console | None = None,
        warn: Callable[[str], None] | None = None,
        argument_names: ArgumentNames = PYTHON,
    ):
        only, overrides, devices, track = (listed(value) for value in (only, overrides, devices, track))
        check_arguments(argument_names, config=config, only=only, overrides=overrides, executor=executor, devices=devices,
                        force=force, output=output, track=track, console=console, warn=warn)
        self.config = config
        self.only = None if only is None else [only] if isinstance(only, str) else list(only)
        self.phase = phase
        self.overrides = [overrides] if isinstance(overrides, str) else list(overrides)
        self.executor_name = executor
        self.jobs = None if jobs is None else str(jobs)
        self.devices = devices if devices is None or isinstance(devices, str) else ",".join(map(str, devices))
        self.force = force
        self.output = None if output is None else Path(output)
        self.track = [track] if isinstance(track, str) else list(track)
        self.tables = dict(tables or {})
        self.console = console or EscapingConsole(log_path=False)
        self.warn = warn or _python_warning
        self.argument_names = argument_names
        self._plan: Plan | None = None

    # --- checking --------------------------------------------------------------------------------

    def plan(self) -> list[Run]:
        """Check the configuration, the selection, the results folder and the executor, and
        return the selected runs; nothing is run or written. Checked once per session."""
        if self._plan is None:
            self._plan = self._check()
        return self._plan.runs

    def _check(self) -> Plan:
        """Every check of an invocation, in one pass
        (:func:`feph_finetune.config.checking.check_configuration`)."""
        from feph_finetune.config.checking import check_configuration
        from feph_finetune.results.store import RunStore

        raw = self.read()
        plugins = self.load_plugins()
        checked = check_configuration(
            raw, plugins, only=self.only, phase=self.phase, output=self.output, default_output=self.default_output(), executor=self.executor_name,
            jobs=self.jobs, devices=self.devices, tables=self.tables, check_files=self.check_files, warn=self.warn,
        )
        choice = self.executor_choice(checked.executor, raw)
        return Plan(raw, plugins, checked.matrix, checked.runs, RunStore(checked.output, warn=self.warn), choice.create())

    def read(self) -> RawConfig:
        """The configuration with the overrides and ``track`` applied (a client lays its
        settings over it here)."""
        from feph_finetune.config.reading import config_from_dict, read_config

        names = self.argument_names
        raw = config_from_dict(self.config, self.overrides, names) if isinstance(self.config, Mapping) else read_config(Path(self.config), self.overrides, names)
        raw.track = list(self.track)
        return raw

    def load_plugins(self):
        """The plugin registry, after passing its warnings (unusable plugins, executors left out) to ``warn``."""
        from feph_finetune.execution.executors import executor_warnings
        from feph_finetune.plugins import get_plugins

        plugins = get_plugins()
        for warning in [*plugins.warnings, *executor_warnings(plugins)]:
            self.warn(warning)
        return plugins

    def default_output(self) -> Path | None:
        """The results folder when none is given; None: the TOML's ``output``."""
        return None

    def executor_choice(self, choice, raw: RawConfig):
        """The executor choice (:class:`feph_finetune.execution.executors.ExecutorChoice`) as
        used; a client may change the options that neither the flags nor the TOML decide."""
        return choice

    def rebuild(self, plan: Plan, pending_files: Iterable[str | Path] = ()) -> Plan:
        """``plan`` with its matrix built again, now checking the files the configuration names
        (which :meth:`prepare` wrote), except ``pending_files``, written later while runs run.
        The data's fingerprint enters the run ids here."""
        from feph_finetune.config.matrix import build_matrix, select

        matrix = build_matrix(plan.raw, plan.plugins, pending_files=frozenset(str(path) for path in pending_files))
        return replace(plan, matrix=matrix, runs=select(matrix, self.only, self.phase, plan.raw.names))

    # --- running ---------------------------------------------------------------------------------

    @property
    def matrix(self) -> Matrix:
        """The checked matrix (all its runs, not only the selected ones)."""
        self.plan()
        return self._plan.matrix

    @property
    def plugins(self):
        """The plugin registry the matrix was checked against (:class:`feph_finetune.plugins.Plugins`)."""
        self.plan()
        return self._plan.plugins

    @property
    def store(self):
        """The results folder as a :class:`feph_finetune.results.store.RunStore` (one per
        session: an unusable ``result.json`` is warned about once)."""
        self.plan()
        return self._plan.store

    def finished_runs(self) -> list[str]:
        """The ids of the selected runs finished in the results folder, by this command or an
        earlier one: what a command stopped early (a full disk) may say is saved."""
        if self._plan is None:
            return []
        return [run.id for run in self._plan.runs if self._plan.store.is_done(run.id)]

    def runner(self, source=None, executor=None):
        """A :class:`feph_finetune.execution.runner.MatrixRunner` for this session's matrix and
        store (tests and benchmarks run single runs through it); ``source``: a
        :class:`feph_finetune.data.preparation.DataSource` to share its caches; ``executor``: an
        :class:`feph_finetune.Executor` instance instead of the session's."""
        from feph_finetune.execution.runner import MatrixRunner

        self.plan()
        return MatrixRunner(self._plan.matrix, self._plan.plugins, self.store, self.console, source=source, executor=executor or self._plan.executor,
                            invocation=self.invocation())

    def invocation(self) -> dict[str, Any]:
        """What each run records of the command that asked for it (:mod:`feph_finetune.invocation`)."""
        from feph_finetune.invocation import invocation_record

        return invocation_record(self.config, self.overrides, demo=self.demo)

    def prepare(self, plan: Plan) -> Plan:
        """Called by :meth:`run` once every check has passed, before the first run: a client
        writes the data its configuration names here and returns :meth:`rebuild`'s plan."""
        return plan

    def groups(self, runs: list[Run], is_done: Callable[[str], bool]) -> Iterator[list[Run]]:
        """The runs in groups, each run to its end before the next is asked for (a client starts
        runs as what they need becomes ready); closed early on an error or an interrupt."""
        yield runs

    def earlier_runs(self) -> dict[str, str]:
        """The selected runs that finished under an earlier version's id, each with that
        folder's name (:func:`feph_finetune.results.earlier_ids.earlier_folders`): :meth:`run`
        renames them to their ids and does not run them again; ``--dry-run`` lists them."""
        from feph_finetune.config.matrix import recorded_id_rules
        from feph_finetune.results.earlier_ids import earlier_folders

        self.plan()
        plan = self._plan
        return earlier_folders(plan.store, [run.id for run in plan.runs], [run.id for run in plan.matrix.runs], recorded_id_rules(plan.raw, plan.plugins), self.warn)

    def carry_over_earlier_runs(self) -> None:
        """Rename the :meth:`earlier_runs` to their ids, saying so in one line."""
        from feph_finetune.results.earlier_ids import WHY, carry_over

        carried = carry_over(self.store, self.earlier_runs())
        if carried:
            self.console.print(f"{counted(carried, 'finished run')} carried over to their new ids ({WHY})", markup=False, highlight=False)

    def rename_finished_runs(self) -> None:
        """Give the selected finished runs the labels and order their configuration gives now
        (:func:`feph_finetune.results.display_fields.rename_finished_runs`), saying so in one line."""
        from feph_finetune.results.display_fields import DISPLAY_FIELDS, rename_finished_runs

        renamed = rename_finished_runs(self.store, self._plan.runs)
        if renamed:
            fields = [name for name in DISPLAY_FIELDS if any(name in changed for changed in renamed.values())]
            self.console.print(f"{counted(len(renamed), 'finished run')} take{'s' if len(renamed) == 1 else ''} the {', '.join(fields)} the configuration gives now "
                               f"(names only, not settings: not run again): {', '.join(renamed)}", markup=False, highlight=False)  # a list of run ids: wrapped between ids, never inside one

    def run(self) -> MatrixResult:
        """Run the selected runs that are not finished (all of them with ``force``), then print
        the tables of their records and write the figures that ``[report]`` asks for.

        Raises ConfigError before any run for a configuration mistake,
        :class:`~feph_finetune.results.output_lock.OutputBusyError` at once when another command
        runs a matrix in the same results folder (:func:`~feph_finetune.results.output_lock.output_locked`); an interrupt (Ctrl-C,
        SIGTERM) raises KeyboardInterrupt after stopping the running runs, finished ones saved.
        """
        from feph_finetune.execution.runner import MatrixOutcome
        from feph_finetune.interrupts import stop_signals_as_interrupt
        from feph_finetune.results.output_lock import output_locked

        refuse_while_a_child_imports_main()
        self.plan()
        with output_locked(self._plan.store.root):  # one command per results folder; released however this process ends
            self._plan = plan = self.prepare(self._plan)
            store = plan.store
            self.carry_over_earlier_runs()
            if self.force:
                for run in plan.runs:
                    store.discard(run.id)
            else:
                self.rename_finished_runs()
            runner, outcome = self.runner(), MatrixOutcome()
            groups = self.groups(plan.runs, store.is_done)
            with stop_signals_as_interrupt(), closing(groups):  # an interrupt closes the groups at once
                for group in groups:
                    outcome.add(runner.run_all(group))
            result = MatrixResult(plan.runs, outcome.done, outcome.skipped, outcome.failed, Results.from_store(store, [run.id for run in plan.runs]), store.root)
            self.report(result)
        return result

    def report(self, result: MatrixResult) -> None:
        """What the command line prints after the runs: skipped runs, the tables, the figures."""
        from feph_finetune.results.reports import configuration_warnings, render
        from feph_finetune.results.store import RESULT_FILE

        if result.skipped:
            self.console.print(f"skipped {counted(len(result.skipped), 'finished run')} (use --force to rerun them)")
            self._print_unsaved_models(result)
        if result.records:
            report = self._plan.matrix.report
            for line in configuration_warnings(result.records.to_json(), lambda run_id: str(self.store.run_dir(run_id) / RESULT_FILE)):
                self.warn(line)  # records edited by hand: the matrix's own runs are one configuration each
            render(result.records.to_json(), "table", self.console, paper=report["paper"])
            if report["figures"]:
                write_figures(result.records.to_json(), result.output, Path(report["figures_dir"] or result.output / "report"), report["paper"], self.console, self.warn)

    def _print_unsaved_models(self, result: MatrixResult) -> None:
        """Say which skipped runs ask for ``save_model`` but finished without one: the setting does
        not change a run's id (:data:`feph_finetune.config.reading.RESULT_NEUTRAL_KEYS`), so only ``--force``
        runs them again to save it."""
        from feph_finetune.predict.bundle import MANIFEST, saves_model

        store = self.store  # a No-FT run saves none however run (the configuration's check warns of its save_model)
        unsaved = [run.id for run in result.runs if run.id in result.skipped and saves_model(run.config) and not (store.run_dir(run.id) / MANIFEST).is_file()]
        if unsaved:
            from feph_finetune.invocation import matrix_command

            runs = [run for run in result.runs if run.id in unsaved]
            experiments = list(dict.fromkeys(run.experiment for run in runs))
            phases = {run.phase for run in runs}
            command = matrix_command(self.invocation(), store.root, experiments, phases.pop() if len(phases) == 1 else None, force=True)
            self.console.print(f"{len(unsaved)} of them finished without a saved model although save_model = true ({', '.join(unsaved)}); "
                               f"to run them again and save it: {command}", highlight=False, soft_wrap=True)


def write_figures(records: list[dict], outdir: Path, figures_dir: Path, paper: bool, console: Console, warn: Callable[[str], None]) -> None:
    """The figures and report.md of ``records`` into ``figures_dir`` (the report command, and [report] figures)."""
    from feph_finetune.results.figures import write_report
    from feph_finetune.results.reports import configurations
    from feph_finetune.results.store import writing_to

    with writing_to(figures_dir):
        written = write_report(configurations(records, paper=paper), outdir, figures_dir, source=str(outdir), warn=warn)
    console.print(f"wrote {len(written) - 1} figures and {figures_dir / 'report.md'}", markup=False)


def refuse_while_a_child_imports_main() -> None:
    """RuntimeError saying what to write when a script calls :meth:`Session.run` at its top level
    and a run's child process is importing it: the ``process`` executor starts children with
    ``forkserver``, which imports the main module in each, so the call would run there again."""
    # multiprocessing's own test for a child still importing the main module (its spawn.py)
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError("run_matrix (Session.run) was called while a run's child process imported your script: the process "
                           "executor starts each run in a child that imports the script's main module; put the calls under "
                           "`if __name__ == \"__main__\":`")


def _python_warning(line: str) -> None:
    warnings.warn(printable(line), stacklevel=3)  # Python shows a warning's text raw


def plan_matrix(config: "str | Path | Mapping[str, Any]", **options: Any) -> list[Run]:
    """The runs that :func:`run_matrix` with the same arguments would run, checked, running
    nothing (``--dry-run``). ``run.id``, ``run.experiment``, ``run.phase``, ``run.fold`` and
    ``run.describe()`` say what each is."""
    return Session(config, **options).plan()


def run_matrix(config: "str | Path | Mapping[str, Any]", **options: Any) -> MatrixResult:
    """Run a matrix as ``python -m feph_finetune`` does and return what happened; the arguments
    are :class:`Session`'s. Finished runs in the results folder are skipped (``force=True``
    reruns them); ``result.records`` are the selected runs' typed records."""
    return Session(config, **options).run()
