"""Executors: where the runs of a matrix execute and how many at a time.

The matrix runner decides *what* to run (skipping finished runs); an executor decides *where*:
``inline`` runs them one by one in the calling process, ``process`` (the default) in a fresh
child process each, ``ray`` as tasks of a Ray cluster. Executors are classes registered through
the ``register_executors`` hook (:mod:`feph_finetune.hookspecs`), the built-in ones by this
module, which the plugin manager registers like any built-in plugin; a third party adds one
(Slurm, Kubernetes) with a plugin of its own.

The choice comes from ``--executor NAME`` or the TOML's ``[executor]`` table (``name``, and a
sub-table of options per executor, e.g. ``[executor.process] jobs = 2``). Each executor declares
its options as plugins do theirs (``options = {name: Option(...)}``), and they are checked with
every other key, in the same pass (:func:`feph_finetune.config.checking.check_configuration`),
before any work; so are the ``--jobs`` and ``--devices`` flags, against the same declarations.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NoReturn

from feph_finetune.config.options import Option, as_option, checked_as_owner, integer, name_problem, option_problems
from feph_finetune.errors import EXIT_FAILED_RUNS
from feph_finetune.config.reading import Problem, RawConfig, check_section, close_match, flag_and_set_problem, valid_values
from feph_finetune.execution.job import NEXT_RUN_FILES, Report, RunJob, ensure_run_space, finished_event
from feph_finetune.hookspecs import hookimpl
from feph_finetune.hook_results import result_problem
from feph_finetune.plugins import PluginCallError, PluginLoadError, Plugins, describe_error, is_plugin_failure
from feph_finetune.printable import shortened
from feph_finetune.data.preparation import DataSource
from feph_finetune.results.store import RunStore

#: The executor of the command line when neither ``--executor`` nor ``[executor] name`` says.
DEFAULT_EXECUTOR = "process"

#: The built-in executors: ``module:class``, registered by this module's hook implementation.
BUILTIN_EXECUTORS = (
    "feph_finetune.execution.executors.inline:InlineExecutor",
    "feph_finetune.execution.executors.process:ProcessExecutor",
    "feph_finetune.execution.executors.ray_tasks:RayExecutor",
)


class ExecutorError(Exception):
    """An executor cannot do its work at all (a cluster it cannot reach, say): the command stops
    with this one-line message and exit code 2. Failures of single runs are recorded in their
    ``result.json`` instead."""


class ExecutorLost(ExecutorError):
    """An executor lost what ran its runs midway (a Ray cluster that went away): the command stops
    with this message, the finished runs kept, and says how to continue (exit 2)."""


#: How to continue a matrix whose command ended at once (:func:`end_process`), said on its last
#: line: the command line sets it to its own command while it runs a matrix (in the thread that
#: runs it; read it there); a program calling the library keeps this default.
CONTINUE_COMMAND: ContextVar[str] = ContextVar("continue_command", default="the same matrix again")


def end_process(lines: list[str], code: int = EXIT_FAILED_RUNS) -> NoReturn:
    """Write ``lines`` on stderr and end this process at once with exit ``code`` (1: some runs
    failed; 2: a full disk; 130: a stop signal).

    For a run executing in this process that cannot be stopped (past its ``timeout``, a plugin
    swallows the stop, or native code never returns): no exception can leave the thread it
    holds, so nothing after it would ever run. Results written so far are kept (every file is
    renamed into place whole); ``atexit`` handlers and ``finally`` blocks do not run."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or its reader gone
            pass
    try:
        os.write(2, "".join(line + "\n" for line in lines).encode(errors="backslashreplace"))
    except OSError:  # stderr closed: the exit code still says it
        pass
    os._exit(code)


@dataclass
class InProcess:
    """The calling process's plugin registry and data cache, for executors that run jobs here,
    and ``end_command(lines, code=1)``, which ends the command at once (never returning) once a
    run here cannot be stopped: it says ``lines`` and exits ``code`` (:func:`end_process`; the
    runner's first closes its progress view)."""

    plugins: Plugins
    source: DataSource
    end_command: Callable[..., NoReturn] = end_process


class Executor:
    """Base class of executors. Subclasses set ``name``, ``summary`` and ``options`` and
    implement :meth:`execute`.

    ``options`` declares each option as a plugin's ``plugin_options`` does: ``{name: Option}``
    (:class:`~feph_finetune.config.options.Option`: default, help, choices, bounds, a check),
    or a plain default, which accepts values of its type. ``[executor.<name>]`` may set only
    these keys, and its values (and ``--jobs``/``--devices``) are checked against them with the
    rest of the configuration. An instance is made with the resolved options (defaults filled
    in) as ``self.settings``.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, settings: dict[str, Any]):
        self.settings = {**self.option_defaults(), **settings}

    @classmethod
    def declarations(cls) -> dict[str, Option]:
        """The executor's options as :class:`~feph_finetune.config.options.Option` declarations."""
        return {key: checked_as_owner(as_option(value), f"executor {cls.name!r}", key) for key, value in cls.options.items()}

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        return {key: option.default for key, option in cls.declarations().items()}

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this executor cannot work here (a missing package, with the command that installs
        it), or None. Called before any work; must not import the package."""
        return None

    def execute(self, jobs: list[RunJob], report: Report, here: InProcess) -> None:
        """Execute every job, in any order and as many at a time as the executor sees fit.

        Each job ends with a ``result.json`` in ``RunStore(job.output)`` (written by
        :func:`feph_finetune.execute_run`, or by the executor for a run whose worker died), after
        which the executor calls :meth:`report_finished`. Events of the runs (``started``,
        ``progress``) go to ``report``, from the calling thread. On KeyboardInterrupt (Ctrl-C, or
        SIGTERM, which the runner turns into one), stop the work and re-raise; keep the command's
        SIGTERM handler in place (a library that replaces it must have it put back).

        A run's ``timeout`` (:func:`feph_finetune.execution.job.timeout_of`, seconds from its
        ``started`` event; 0: none) is the executor's to enforce: stop the run, and record it
        with :func:`feph_finetune.execution.job.timed_out_record`, naming where it was from its
        events (:class:`feph_finetune.execution.job.Whereabouts`); the other jobs go on. An executor
        that cannot stop a run records it as failed, saying why, rather than ignore the limit.
        Raise :class:`ExecutorError` when the work cannot start at all (an unreachable cluster).
        A run whose files the results folder refused reports a
        :data:`~feph_finetune.execution.job.REFUSED_EVENT`: once it is recorded, raise
        :func:`~feph_finetune.execution.job.first_refused` of it, which stops the matrix.
        """
        raise NotImplementedError

    @staticmethod
    def report_finished(job: RunJob, report: Report, runs_to_start: bool = True) -> None:
        """Send the ``finished`` event of a job from its stored ``result.json``; then, while runs
        are yet to start (``runs_to_start``), raise :class:`~feph_finetune.results.store.NoSpaceError`
        if the results folder's disk has no room for the next one's files (``job``'s size), which
        stops the matrix like an interrupt (finished runs kept). The message names the next run's
        files, never ``job``: its files are written."""
        report(finished_event(job.id, RunStore(job.output).result(job.id)))
        if runs_to_start:
            ensure_run_space(job, NEXT_RUN_FILES)


@hookimpl
def register_executors(register):
    for entry in BUILTIN_EXECUTORS:
        module, name = entry.split(":")
        register(getattr(importlib.import_module(module), name))


#: The plugin that registers the built-in executors (this module): asked first, so that no third
#: party takes one of their names.
BUILTIN_EXECUTOR_PLUGIN = __name__.rsplit(".", 1)[-1]


def executor_classes(plugins: Plugins) -> dict[str, type[Executor]]:
    """Every usable executor by name, from each plugin's ``register_executors`` (:func:`executor_registry`)."""
    return executor_registry(plugins)[0]


def executor_warnings(plugins: Plugins) -> list[str]:
    """One warning per executor a third-party plugin registers that is left out, naming the plugin
    (:func:`executor_registry`); every command shows them, as it does a refused plugin's."""
    return executor_registry(plugins)[1]


def executor_registry(plugins: Plugins) -> tuple[dict[str, type[Executor]], list[str]]:
    """The usable executors by name, and a warning naming the plugin of each registration left out.

    The built-in executors come first; then each other plugin's, in name order. A third-party
    registration is left out (the plugin's others kept) when it is no :class:`Executor` subclass,
    its name or an option's cannot be written in a configuration (:func:`name_problem`: the name
    is a TOML table's, ``[executor.NAME]``), an option's default is no JSON value, or its name is
    taken (a built-in's: the built-in is used; another plugin's before it); a plugin whose
    ``register_executors`` raises has none. So one plugin's mistake never blocks a command that
    does not use its executor, and never blames another plugin. Raises :class:`PluginLoadError`
    for such a fault of the built-ins (a bug of the project)."""
    found: dict[str, type[Executor]] = {}
    owners: dict[str, str] = {}
    warnings: list[str] = []
    for plugin in sorted(plugins.names(), key=lambda name: name != BUILTIN_EXECUTOR_PLUGIN):
        offered: list[Any] = []
        try:
            plugins.call(plugin, "register_executors", register=offered.append)
        except PluginCallError as error:
            problems = [f"failed registering its executors, none is used: {describe_error(error.error)}"]
        else:
            problems = []
            for cls in offered:
                problem = registration_problem(cls) or _taken(cls.name, owners)
                if problem:
                    problems.append(problem)
                else:
                    found[cls.name], owners[cls.name] = cls, plugin
        if problems and plugin == BUILTIN_EXECUTOR_PLUGIN:
            raise PluginLoadError(f"the built-in executors: {'; '.join(problems)}")
        origin = plugins.origins.get(plugin, "builtin")
        warnings += [f"plugin {plugin!r} of {origin}: {problem}" for problem in problems]
    return found, warnings


def registration_problem(cls: Any) -> str:
    """Why ``cls``, given to ``register_executors``' ``register``, cannot be an executor ('' when
    it can): the rules of a plugin's name and options (:func:`name_problem`, the checks of
    ``plugin_options``' result), since ``[executor.NAME]`` is set like ``[defaults.options.PLUGIN]``."""
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        return f"register_executors must register Executor subclasses, got {_shortened(cls)}; it is left out"
    unaddressable = name_problem(cls.name) if cls.name != "" else "no name: set the class attribute name"
    if unaddressable:
        return f"executor class {cls.__name__} is left out: {unaddressable}"
    declared = result_problem("plugin_options", cls.options, {})
    if declared:
        return f"executor {cls.name!r} is left out: its options {declared.replace('must return', 'must declare', 1)}"
    return ""


def _taken(name: str, owners: dict[str, str]) -> str:
    """Why executor ``name`` is not registered again ('' when nobody has it yet). Names are
    taken in any letter case, as plugins' are: a third-party ``Process`` beside the built-in
    ``process`` would run where a user mistyped the case."""
    taken = next((known for known in owners if known.lower() == name.lower()), None)
    if taken is None:
        return ""
    same = repr(name) if taken == name else f"{name!r} (as {taken!r} in other letter case)"
    if owners[taken] == BUILTIN_EXECUTOR_PLUGIN:
        return f"registers executor {same}, the name of a built-in executor; ignored, the built-in is used: rename it"
    return f"registers executor {same}, already registered by plugin {owners[taken]!r}; ignored: uninstall one of them"


def _shortened(value: Any) -> str:
    """A plugin's value as a message quotes it: its type and short ``repr`` (the type alone where
    that ``repr`` raises: third-party code)."""
    try:
        return f"{type(value).__name__} {shortened(repr(value), 80)}"
    except Exception:
        return type(value).__name__


@dataclass(frozen=True)
class ExecutorChoice:
    """The chosen executor class and its resolved options."""

    cls: type[Executor]
    settings: dict[str, Any]

    def create(self) -> Executor:
        return self.cls(self.settings)


#: The ``[executor]`` table's own key; the others name executors, each a table of its options.
NAME_OPTION = Option(DEFAULT_EXECUTOR, "the executor (--executor wins)")


def check_executor(raw: RawConfig, plugins: Plugins, name: str | None = None, jobs: str | None = None, devices: str | None = None) -> tuple[ExecutorChoice | None, list[Problem]]:
    """The executor from the TOML's ``[executor]`` table and the ``--executor``, ``--jobs`` and
    ``--devices`` flags (which win), and every problem with them, each naming its place
    (``file:line key`` or the flag): every registered executor's table is checked against its
    declarations, the chosen one's flags too. The choice is None when no executor could be
    chosen; it is only to be used when there are no problems."""
    registered = executor_classes(plugins)
    problems: list[Problem] = []
    table = raw.data.get("executor", {})
    if not isinstance(table, dict):
        table = {}  # reported with the other keys of the top level
    for key, value in table.items():
        if key == "name":
            problems += [Problem(raw.where("executor", key), message) for message in option_problems(value, NAME_OPTION)]
        elif key not in registered:
            problems.append(Problem(raw.where("executor", key), f"unknown key {key!r}{close_match(key, ['name', *registered])}; [executor] takes name and a table per executor ({', '.join(registered)})"))
        else:
            check_section(raw, value, registered[key].declarations(), ("executor", key), problems, owner=f"executor {key!r}")
    chosen = name or table.get("name", DEFAULT_EXECUTOR)
    place = raw.names("executor") if name else raw.where("executor", "name")
    if name and (given_twice := flag_and_set_problem(raw, "executor", name, name, ("executor", "name"))):
        problems.append(given_twice)
    if not isinstance(chosen, str) or chosen not in registered:
        if isinstance(chosen, str):
            problems.append(Problem(place, f"no executor {chosen!r}{close_match(chosen, registered)}; installed: {', '.join(registered)}"))
        return None, problems
    cls = registered[chosen]
    declarations = cls.declarations()
    settings = valid_values(table.get(chosen), declarations)
    for key, value in (("jobs", jobs), ("devices", devices)):
        if value is None:
            continue
        flag = raw.names(key)
        if key not in declarations:
            problems.append(Problem(flag, f"executor {chosen!r} has no option {key!r}; its options: {', '.join(declarations) or 'none'}"))
            continue
        settings[key] = parse_flag(key, value)
        if given_twice := flag_and_set_problem(raw, key, value, settings[key], ("executor", chosen, key)):
            problems.append(given_twice)
        problems += [Problem(flag, message) for message in option_problems(settings[key], declarations[key])]
    reason = _unavailable(cls)
    if reason:
        problems.append(Problem(place, f"executor {chosen!r} is not available: {reason}"))
    return ExecutorChoice(cls, settings), list(dict.fromkeys(problems))


def _unavailable(cls: type[Executor]) -> str | None:
    """``cls.unavailable()``, an executor's (maybe a third party's) code: its failure is the reason."""
    try:
        reason = cls.unavailable()
    except BaseException as error:
        if not is_plugin_failure(error):
            raise
        return f"its unavailable() failed: {describe_error(error)}"
    return reason if reason is None or isinstance(reason, str) else f"its unavailable() must return a reason (str) or None, got {type(reason).__name__}"


def parse_flag(key: str, value: str) -> Any:
    """``--jobs 2`` is the integer 2 (``auto`` stays a word); ``--devices 0,1`` the list [0, 1]
    (the declarations check the values, a negative number included, and the empty text that an
    empty item leaves: ``0,,1`` and ``''`` are refused, not read as fewer devices)."""
    if key == "devices":
        return [_integer_or_text(part) for part in value.split(",")]
    return _integer_or_text(value)


def _integer_or_text(text: str) -> int | str:
    text = text.strip()
    return integer(text) if text.lstrip("-").isascii() and text.lstrip("-").isdigit() else text
