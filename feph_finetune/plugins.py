"""The plugin manager: built-in plugins, entry-point plugins, and calling one plugin's hook.

Built-in plugins are registered from :data:`DEFAULT_PLUGINS`; third-party plugins come from the
``feph_finetune`` entry-point group. ``FEPH_FINETUNE_LOAD_PLUGINS`` restricts entry-point loading to
a comma-separated list of distribution names (set but empty: load none).

A third-party plugin that cannot be used never stops the others: it is listed with its status
and error (:class:`PluginInfo`), and only a configuration that names it is refused, with that
error. A third party may not replace a built-in; two distributions offering one name are both
left out until one is uninstalled or deselected.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
import re
import sys
import threading
import time
import warnings as pywarnings
from contextlib import contextmanager, nullcontext, redirect_stdout
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterator

import pluggy

from feph_finetune import hookspecs
from feph_finetune.api import PluginError
from feph_finetune.config.options import Option, as_option, checked_as_owner, name_problem
from feph_finetune.hook_arguments import protected_arguments
from feph_finetune.hook_results import normalised_result, result_problem
from feph_finetune.interrupts import interrupt_may_be_a_stop
from feph_finetune.last_resort import AFTER_WATCHDOG_S, deadline_until_exit
from feph_finetune.printable import printable

#: Who wants to know which plugin hook runs now: ``listener(plugin, hook)`` on entering a hook or
#: a function a hook returned, ``listener(None, None)`` on leaving it. The runner of a run sets it
#: (:func:`feph_finetune.execution.job.execute_run`), so that a run stopped for taking too long can
#: say where it was; a context variable, so that runs in threads of one process each have theirs.
hook_listener: ContextVar[Callable[[str | None, str | None], None] | None] = ContextVar("hook_listener", default=None)


@contextmanager
def plugin_code(plugin: str, hook: str) -> Iterator[None]:
    """Run plugin code within the block (a hook, or a function a hook returned): the
    :data:`hook_listener` is told, and the plugin's failure (:func:`is_plugin_failure`) is raised
    as :class:`PluginCallError` naming ``plugin`` and ``hook``; interrupts pass unchanged."""
    try:
        with inside_hook(plugin, hook):
            yield
    except BaseException as error:
        if not is_plugin_failure(error):
            raise
        raise PluginCallError(plugin, hook, error) from error


@contextmanager
def inside_hook(plugin: str, hook: str) -> Iterator[None]:
    """Tell the :data:`hook_listener` that ``plugin``'s ``hook`` runs within the block. Leaving it
    by an exception says nothing more: the hook is where the run stopped."""
    listener = hook_listener.get()
    if listener is None:
        yield
        return
    listener(plugin, hook)
    yield
    listener(None, None)


ENTRY_POINT_GROUP = "feph_finetune"
LOAD_PLUGINS_ENV = "FEPH_FINETUNE_LOAD_PLUGINS"

#: The built-in plugins, registered under the last part of their module name (the executors are
#: core machinery, registered through the same hook a third-party executor uses).
DEFAULT_PLUGINS = (
    "feph_finetune_plugins.feph",
    "feph_finetune_plugins.folders",
    "feph_finetune_plugins.csv",
    "feph_finetune_plugins.face_crop",
    "feph_finetune_plugins.normalize",
    "feph_finetune_plugins.flip",
    "feph_finetune_plugins.mobilenet",
    "feph_finetune_plugins.efficientnet",
    "feph_finetune_plugins.keras_model",
    "feph_finetune_plugins.adam",
    "feph_finetune_plugins.adam_sgd",
    "feph_finetune_plugins.sam",
    "feph_finetune_plugins.sam_sgd",
    "feph_finetune_plugins.class_weights",
    "feph_finetune_plugins.paper_metrics",
    "feph_finetune_plugins.tensorboard",
    "feph_finetune_plugins.mlflow",
    "feph_finetune.execution.executors",  # the built-in executors: inline, process, ray
)
BUILTIN_NAMES = frozenset(module.rsplit(".", 1)[-1] for module in DEFAULT_PLUGINS)
#: The built-in names by their lower case: a third-party "Flip" reads as the built-in "flip".
_BUILTIN_BY_CASE = {name.lower(): name for name in BUILTIN_NAMES}


class PluginLoadError(Exception):
    """A built-in plugin could not be loaded or implements hooks that do not exist (a core bug).

    Third-party plugins never raise this: a broken one is listed with its error and refused only
    where a configuration names it (:meth:`Plugins.missing`).
    """


#: The statuses of :class:`PluginInfo`: registered, or why not.
STATUSES = {
    "ok": "registered and usable",
    "broken": "could not be imported, implements a hook wrongly, or has a name or options a configuration cannot address",
    "conflict": "several entry points offer this name (or it in other letter case); none is loaded",
    "refused": "a third-party plugin may not replace a built-in of the same name, in any letter case",
    "filtered": f"its distribution is not named in {LOAD_PLUGINS_ENV}",
}


_STATUS_VERBS = {"broken": "is broken", "conflict": "is in conflict", "refused": "is refused", "filtered": "is not loaded"}


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``python -m feph_finetune plugins``: a plugin, or an entry point that is none.

    ``status`` is a key of :data:`STATUSES`; ``error`` says what is wrong (empty when "ok").
    """

    name: str
    origin: str
    hooks: tuple[str, ...]
    status: str = "ok"
    error: str = ""
    #: The options ``plugin_options`` declares, with their defaults (empty for an unusable plugin).
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "origin": self.origin, "hooks": list(self.hooks), "options": dict(self.options), "status": self.status, "error": self.error or None}


class CoreInterrupt(BaseException):
    """What the core raises into the code it runs, plugin code included, to stop it (a run past
    its ``timeout``): a BaseException, so that no ``except Exception`` swallows it, and never
    counted as the failure of the plugin it lands in (:func:`is_plugin_failure`)."""


def is_plugin_failure(error: BaseException) -> bool:
    """Whether ``error``, raised by plugin code (importing it, a hook, a function a hook returned),
    is that plugin's failure: any exception, ``SystemExit`` (``sys.exit()`` in a plugin) and
    ``GeneratorExit`` included (no call site of plugin code is a generator paused inside it, so
    only the plugin can have raised it), but not a stop asked for (a KeyboardInterrupt while a
    stop signal came: Ctrl-C, SIGTERM; :func:`~feph_finetune.interrupts.interrupt_may_be_a_stop`)
    nor the core's own :class:`CoreInterrupt`, which must reach the code that answers them. A
    KeyboardInterrupt the plugin raised itself, no signal having come, is its failure."""
    if isinstance(error, KeyboardInterrupt):
        return not interrupt_may_be_a_stop()
    return not isinstance(error, CoreInterrupt)


#: What stands for the text of a plugin's exception whose ``__str__`` (or ``__repr__``) raises.
UNSHOWABLE = "(its message could not be shown)"


def error_text(error: BaseException) -> str:
    """``str(error)``, or :data:`UNSHOWABLE` when the exception's own ``__str__`` raises: a
    plugin's exception is third-party code, and turning it into text must not fail in its turn."""
    try:
        return str(error)
    except Exception:
        return UNSHOWABLE


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return UNSHOWABLE


def describe_error(error: BaseException) -> str:
    """``error`` in the words of a message: "ValueError: bad", or "sys.exit(3)" for a SystemExit
    (whose own text is just the exit code); never raises (:func:`error_text`)."""
    if isinstance(error, SystemExit):
        return f"sys.exit({_safe_repr(error.code)})"
    text = error_text(error)
    if isinstance(error, KeyboardInterrupt):
        return f"raised KeyboardInterrupt without a Ctrl-C{': ' if text else ''}{text}"
    return f"{type(error).__name__}: {text}"


class PluginCallError(Exception):
    """A hook implementation raised; carries the plugin and hook for the run's error record."""

    def __init__(self, plugin: str, hook: str, error: BaseException):
        super().__init__(f"plugin {plugin!r} failed in hook {hook!r}: {describe_error(error)}")
        self.plugin = plugin
        self.hook = hook
        self.error = error


def _normalise_distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed_distributions() -> set[str] | None:
    """Distributions whose entry points may load; None means all."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {_normalise_distribution(part) for part in value.split(",") if part.strip()}


@dataclass(frozen=True)
class _EntryPoint:
    """A ``feph_finetune`` entry point and the distribution that declares it."""

    entry_point: importlib.metadata.EntryPoint
    distribution: str
    origin: str

    @property
    def name(self) -> str:
        return self.entry_point.name


def _installed_entry_points() -> tuple[list[_EntryPoint], set[str]]:
    """Every ``feph_finetune`` entry point, and the normalised names of all distributions.

    A distribution found twice on ``sys.path`` counts once, the first one, as Python imports
    it and as :func:`importlib.metadata.entry_points` resolves it.
    """
    seen: set[str] = set()
    found: list[_EntryPoint] = []
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or ""
        normalised = _normalise_distribution(dist_name)
        if normalised in seen:
            continue
        seen.add(normalised)
        found += [_EntryPoint(ep, dist_name, f"{dist_name} {dist.version}") for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
    return found, seen


def _required_arguments(function: Any) -> list[str]:
    """The arguments pluggy passes to an implementation: positional ones without a default."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in positional and p.default is inspect.Parameter.empty]


def _hook_problems(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """What is wrong with a plugin's hook implementations, checked before registering it.

    Two faults: a hook that does not exist (a misspelling would be ignored), and an argument the
    hook does not offer (pluggy refuses it with a traceback at registration).
    """
    known = hook_names()
    problems = []
    for attribute in dir(plugin):
        options = pm.parse_hookimpl_opts(plugin, attribute)
        if options is None:
            continue
        hook = options.get("specname") or attribute
        if hook not in known:
            if not options.get("optionalhook"):
                hint = difflib.get_close_matches(hook, known, n=1)
                problems.append(f"implements unknown hook {hook!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; hooks: {', '.join(known)}")
            continue
        offered = tuple(inspect.signature(getattr(hookspecs, hook)).parameters)
        unknown = [name for name in _required_arguments(getattr(plugin, attribute)) if name not in offered]
        if unknown:
            problems.append(
                f"hook {hook!r} takes argument(s) {', '.join(map(repr, unknown))} that the hook does not offer; "
                f"{hook} offers {', '.join(offered) or 'no arguments'}"
            )
    return problems


#: Seconds a plugin may take to import, or a hook of :data:`CONFIGURATION_HOOKS` or an option's
#: check to answer, before stderr says which plugin the command waits for (once).
SLOW_IMPORT_S = 5.0

#: The hooks called while a configuration is checked (``--dry-run``, before any run), when the
#: command shows nothing else: one that hangs would hang it without a word.
CONFIGURATION_HOOKS = frozenset({"plugin_options", "plugin_traits", "model_input"})


class PluginLoadInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, SIGHUP) while a third-party plugin imports or answers a configuration
    hook or an option check (:func:`named_while_slow`); its text says which, so that the
    command's "interrupted" line names the plugin that hung."""


@contextmanager
def named_while_slow(doing: str) -> Iterator[None]:
    """Run plugin code that the command waits for in silence (an import, a configuration hook, an
    option check) within the block, ``doing`` naming it ("loading plugin 'x' (module m)"): once
    it takes over :data:`SLOW_IMPORT_S`, stderr says so, and an interrupt that stops the command
    is raised as :class:`PluginLoadInterrupted` "while ``doing``". One that the code raised
    itself (no stop signal came) passes unchanged: the plugin's failure."""
    timer = threading.Timer(SLOW_IMPORT_S, _say_slow, (doing,))
    timer.daemon = True
    timer.start()
    try:
        yield
    except KeyboardInterrupt:
        if not interrupt_may_be_a_stop():  # the plugin raised it itself: its failure
            raise
        raise PluginLoadInterrupted(f"while {printable(doing)}") from None
    finally:
        timer.cancel()
        timer.join()  # gone before any fork (the process executor's server forks after loading)


#: The non-daemon threads third-party plugins started while imported, and which plugin started
#: each: the process must not wait for them at its exit (:func:`bound_the_exit`).
_IMPORT_THREADS: dict[threading.Thread, str] = {}


@contextmanager
def _import_side_effects_contained(name: str, warnings: list[str]) -> Iterator[None]:
    """Keep what a plugin's import does to the whole process from harming the command.

    - text it prints goes to stderr, so that a command's machine-readable stdout (``plugins
      --json``, ``report --format json``) still parses: Python's ``print`` and what native code
      writes to file descriptor 1 (a C extension's banner) alike;
    - a warning it issues becomes one line of ``warnings``, naming it, instead of Python's two;
    - the working directory it changes is put back (a relative ``dataset.root``, output folder or
      argument means what the user typed), with a warning;
    - the environment variables it sets, changes or removes are put back (``FEPH_FINETUNE_CACHE``
      set by one plugin's import would move every run's crop cache), with one warning;
    - a non-daemon thread it starts is remembered, so that the command does not wait for it at exit.
    """
    cwd = _working_directory()
    environment = dict(os.environ)
    threads_before = set(threading.enumerate())
    with _descriptor_1_to_2(), redirect_stdout(sys.stderr), pywarnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:
            warnings += [f"plugin {name!r} warned while imported: {message.category.__name__}: {error_text(message.message)}" for message in caught]
            _restore_cwd(name, cwd, warnings)
            _restore_environment(name, environment, warnings)
            for thread in set(threading.enumerate()) - threads_before:
                if not thread.daemon:
                    _IMPORT_THREADS[thread] = name


@contextmanager
def _descriptor_1_to_2() -> Iterator[None]:
    """Within the block, file descriptor 1 (stdout) writes to where descriptor 2 (stderr) does;
    nothing is changed where descriptor 1 is closed."""
    from feph_finetune.interrupts import interrupts_deferred

    sys.stdout.flush()  # the command's own output so far stays on stdout
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        with interrupts_deferred():  # no Ctrl-C between the dup2 and the try that undoes it
            os.dup2(2, 1)
        yield
    finally:
        with interrupts_deferred():
            os.dup2(saved, 1)
            os.close(saved)


def _working_directory() -> str | None:
    """The working directory, or None where it was removed (nothing to go back to then)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def _restore_cwd(name: str, cwd: str | None, warnings: list[str]) -> None:
    """Go back to ``cwd`` if plugin ``name``'s import left another working directory."""
    now = _working_directory() or "(a removed folder)"
    if cwd is not None and now != cwd:
        os.chdir(cwd)
        warnings.append(f"plugin {name!r} changed the working directory to {now!r} while imported; changed back to {cwd!r}")


def _restore_environment(name: str, before: dict[str, str], warnings: list[str]) -> None:
    """Put ``os.environ`` back as ``before`` if plugin ``name``'s import changed it; one warning
    naming the variables (not their values, which may be secrets)."""
    now = dict(os.environ)
    if now == before:
        return
    changes = {
        "set": sorted(set(now) - set(before)),
        "changed": sorted(key for key in set(now) & set(before) if now[key] != before[key]),
        "removed": sorted(set(before) - set(now)),
    }
    for key in changes["set"]:
        del os.environ[key]
    for key in changes["changed"] + changes["removed"]:
        os.environ[key] = before[key]
    said = "; ".join(f"{verb} {', '.join(keys)}" for verb, keys in changes.items() if keys)
    warnings.append(f"plugin {name!r} changed environment variables while imported ({said}); changed back: set them in the hook that needs them")


#: Seconds the process's exit waits for non-daemon threads before it ends without them: threads
#: that end as Python shuts down (a library's idle thread-pool workers, which Python's own shutdown
#: stops) end within it, and then the exit is the normal one, ``atexit`` handlers included.
EXIT_GRACE_S = 3.0
#: Seconds from the command's end within which its exit must be over, exit handlers included
#: (``atexit`` functions, and multiprocessing's, which joins the child processes still running):
#: Ray's shutdown and MLflow's flush of queued logs take seconds; a handler that never returns
#: (a plugin's) would hold the process for ever, deaf to a stop signal.
EXIT_BOUND_S = 30.0


def bound_the_exit(code: int) -> None:
    """Make sure the process's exit, which follows, ends within bounds, with ``code``, whatever a
    plugin left behind. Python's exit waits for every non-daemon thread other than the main one
    (a plugin's, started at import or by a hook) and then runs the exit handlers (``atexit``,
    multiprocessing's join of child processes still running): forever for a thread, handler or
    child that never ends, and a stop signal does not end the wait. A daemon watchdog gives such
    threads :data:`EXIT_GRACE_S` and the whole exit :data:`EXIT_BOUND_S`; past a bound it writes
    one warning line per thread still running (naming the plugin that started it where that is
    known) or one for the exit handlers, and ends the process with ``code`` (``os._exit``: stdout
    and stderr flushed first, the rest of the exit skipped). The watchdog needs the interpreter's
    lock, which a thread or handler hung in native code can hold for ever: the process then ends
    :data:`~feph_finetune.last_resort.AFTER_WATCHDOG_S` after the bound with every thread's stack
    on stderr and exit 1 (:func:`feph_finetune.last_resort.deadline_until_exit`). For a process's
    last step only (``python -m feph_finetune``, a run's child process)."""
    stray = [thread for thread in threading.enumerate() if thread.is_alive() and not thread.daemon and thread is not threading.main_thread()]
    deadline_until_exit(EXIT_BOUND_S + AFTER_WATCHDOG_S)
    threading.Thread(target=_watch_the_exit, args=(stray, code), name="feph-finetune-exit", daemon=True).start()


def _watch_the_exit(stray: list[threading.Thread], code: int) -> None:
    """The watchdog of :func:`bound_the_exit`; returns (and dies with the process) while the exit
    keeps within its bounds."""
    started = time.monotonic()
    for thread in stray:
        thread.join(max(0.0, started + EXIT_GRACE_S - time.monotonic()))
    alive = [thread for thread in stray if thread.is_alive()]
    if not alive:
        time.sleep(max(0.0, started + EXIT_BOUND_S - time.monotonic()))  # the exit handlers' time; a normal exit ends this thread
    lines = [f"thread {thread.name!r}, which {_starter(thread)}, is still running; exiting without waiting for it" for thread in alive]
    _end_now(code, lines or [f"the exit handlers (atexit functions or child processes that a plugin or library left) have not finished after {EXIT_BOUND_S:g} s; exiting without them"])


def _starter(thread: threading.Thread) -> str:
    return f"plugin {_IMPORT_THREADS[thread]!r} started while imported" if thread in _IMPORT_THREADS else "plugin code or a library started"


def _end_now(code: int, warnings: list[str]) -> None:
    """Flush stdout, write each of ``warnings`` on stderr as one escaped line, and end the process with ``code``."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout closed or full: the command's own error was already said
        pass
    for warning in warnings:
        try:
            sys.stderr.write(f"warning: {printable(warning)}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _import_plugin(candidate: _EntryPoint, warnings: list[str]) -> Any:
    """Import the plugin object of ``candidate``, saying on stderr which plugin is loading when
    its import takes over :data:`SLOW_IMPORT_S` (:func:`named_while_slow`: a hung import otherwise
    hangs every command with no word); its side effects on the process are contained (:func:`_import_side_effects_contained`,
    which adds to ``warnings``). Raises :class:`PluginLoadInterrupted` when interrupted meanwhile."""
    with named_while_slow(f"loading plugin {candidate.name!r} (module {candidate.entry_point.module})"):
        with _import_side_effects_contained(candidate.name, warnings):
            return candidate.entry_point.load()


def _say_slow(doing: str) -> None:
    """The timer thread's one line: which plugin code the command waits for."""
    try:
        sys.stderr.write(f"{printable(doing)} is taking long (over {SLOW_IMPORT_S:g} s); Ctrl-C stops the command\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the note is a courtesy
        pass


def _register_entry_point(pm: pluggy.PluginManager, candidate: _EntryPoint, warnings: list[str]) -> str:
    """Import and register one entry point; the error text when it cannot be, else ''. What its
    import warns about, or changes that it should not, is added to ``warnings``."""
    try:
        plugin = _import_plugin(candidate, warnings)
    except BaseException as error:  # any import-time failure of third-party code, sys.exit() too, marks it broken
        if not is_plugin_failure(error):
            raise
        return f"cannot be imported ({candidate.entry_point.value}): {describe_error(error)}"
    problems = _hook_problems(pm, plugin)
    if problems:
        return "; ".join(problems)
    loaded_as = pm.get_name(plugin)
    if loaded_as is not None:  # pluggy would refuse it with its whole registry in the message
        what = "module" if candidate.entry_point.attr is None else "object"
        return f"{what} {candidate.entry_point.value} is already loaded as plugin {loaded_as!r}; a plugin has one name: remove this entry point from {candidate.distribution}"
    try:
        pm.register(plugin, name=candidate.name)
    except BaseException as error:  # pluggy's own validation, or the plugin's attributes raising
        if not is_plugin_failure(error):
            raise
        if pm.has_plugin(candidate.name):
            pm.unregister(name=candidate.name)
        return " ".join(describe_error(error).split())
    with redirect_stdout(sys.stderr):  # as at import: the command's stdout may be JSON
        problem = _declaration_problem(Plugins(pm, {}), candidate.name)
    if problem:
        pm.unregister(name=candidate.name)
    return problem


def _declaration_problem(plugins: "Plugins", name: str) -> str:
    """Why plugin ``name``'s ``plugin_options`` cannot be used ('' when it can), called once at load.

    A plugin whose declarations raise would otherwise be listed as usable and fail only when a
    configuration is checked; like a wrong hook argument, it is broken from the start.
    """
    try:
        plugins.option_declarations(name)
    except PluginCallError as error:
        return f"plugin_options() failed: {describe_error(error.error)}"
    return ""


def _load_entry_point_plugins(pm: pluggy.PluginManager, origins: dict[str, str], unavailable: list[PluginInfo], warnings: list[str]) -> None:
    """Register the third-party plugins; record every entry point that is not registered, and why.

    The rules: an entry point whose name a configuration cannot address (:func:`name_problem`)
    is left out (broken); a third-party plugin may not replace a built-in, nor take its name in
    other letter case (refused, the built-in stays); entry points whose names differ at most in
    letter case are all left out (conflict), since which one would win depends on the order of
    ``sys.path`` (or on the case a user types); one that fails to import, implements a hook
    wrongly or is a module already loaded under another name is left out (broken). None of these
    stops the other plugins from loading.
    """
    allowed = _allowed_distributions()
    candidates, installed = _installed_entry_points()
    if allowed is not None:
        warnings += _unknown_allowed(allowed, installed, candidates)
    by_name: dict[str, list[_EntryPoint]] = {}
    for candidate in candidates:
        unaddressable = name_problem(candidate.name)
        if allowed is not None and _normalise_distribution(candidate.distribution) not in allowed:
            error = f"{LOAD_PLUGINS_ENV}={os.environ[LOAD_PLUGINS_ENV]!r} does not name its distribution {candidate.distribution!r}"
            unavailable.append(PluginInfo(candidate.name, candidate.origin, (), "filtered", error))
        elif unaddressable:
            error = f"the entry point's name {unaddressable}; rename it in {candidate.distribution}"
            unavailable.append(PluginInfo(candidate.name, candidate.origin, (), "broken", error))
        else:
            by_name.setdefault(candidate.name.lower(), []).append(candidate)
    for lower, group in by_name.items():
        if lower in _BUILTIN_BY_CASE:
            _refuse(group, _BUILTIN_BY_CASE[lower], unavailable, warnings)
        elif len(group) > 1:
            offers = " and ".join(candidate.origin if candidate.name == group[0].name else f"{candidate.origin} (as {candidate.name!r})" for candidate in group)
            error = f"offered by {offers}; none is loaded: uninstall all but one, or load one with {LOAD_PLUGINS_ENV}=DISTRIBUTION"
            unavailable += [PluginInfo(candidate.name, candidate.origin, (), "conflict", error) for candidate in group]
        else:
            (candidate,) = group
            error = _register_entry_point(pm, candidate, warnings)
            if error:
                unavailable.append(PluginInfo(candidate.name, candidate.origin, (), "broken", error))
            else:
                origins[candidate.name] = candidate.origin


def _refuse(group: list[_EntryPoint], builtin: str, unavailable: list[PluginInfo], warnings: list[str]) -> None:
    """Record the entry points of ``group``, named as the built-in ``builtin`` or so in other
    letter case, as refused, each with a warning every command shows."""
    for candidate in group:
        taken = f"replace the built-in {builtin!r}" if candidate.name == builtin else f"take the name of the built-in {builtin!r} in other letter case"
        error = f"a third-party plugin may not {taken}; the built-in is used. Rename the entry point in {candidate.distribution}"
        unavailable.append(PluginInfo(candidate.name, candidate.origin, (), "refused", error))
        warnings.append(f"plugin {candidate.name!r} of {candidate.origin} is ignored: {error}")


def _unknown_allowed(allowed: set[str], installed: set[str], candidates: list[_EntryPoint]) -> list[str]:
    """Warnings for names in ``FEPH_FINETUNE_LOAD_PLUGINS`` that select no plugin."""
    with_plugins = sorted({_normalise_distribution(candidate.distribution) for candidate in candidates})
    warnings = []
    for name in sorted(allowed - set(with_plugins)):
        if name in installed:
            warnings.append(f"{LOAD_PLUGINS_ENV} names {name!r}, which is installed but offers no feph_finetune plugins")
        else:
            hint = difflib.get_close_matches(name, with_plugins, n=1)
            found = f"; distributions with plugins: {', '.join(with_plugins)}" if with_plugins else "; no installed distribution offers plugins"
            warnings.append(f"{LOAD_PLUGINS_ENV} names {name!r}, which is not installed" + (f" (did you mean {hint[0]!r}?)" if hint else "") + found)
    return warnings


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """Refuse implementations of hooks that do not exist (a misspelling would otherwise be ignored).

    Run on the built-ins, where such a hook is a bug of the project; third-party plugins are
    checked one by one before they are registered (:func:`_hook_problems`).
    """
    known = hook_names()
    problems = []
    for hook, caller in vars(pm.hook).items():
        if isinstance(caller, pluggy.HookCaller) and not caller.has_spec():
            for impl in caller.get_hookimpls():
                if not impl.opts.get("optionalhook"):
                    hint = difflib.get_close_matches(hook, known, n=1)
                    problems.append(f"plugin {impl.plugin_name!r} implements unknown hook {hook!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    if problems:
        raise PluginLoadError("; ".join(problems) + f". Known hooks: {', '.join(known)}.")


def hook_names() -> tuple[str, ...]:
    """The names of all hook specifications, in the order of :mod:`feph_finetune.hookspecs`."""
    return tuple(name for name in vars(hookspecs) if hasattr(getattr(hookspecs, name), "feph_finetune_spec"))


class Plugins:
    """The registered plugins, their origins, and per-plugin hook calls.

    ``unavailable`` lists the third-party entry points that are not registered (broken, in
    conflict, refused or filtered; see :data:`STATUSES`), so that the listing shows them and a
    configuration naming one is told why (:meth:`missing`); ``warnings`` are the problems a user
    should see even when no configuration names the plugin.
    """

    def __init__(self, pm: pluggy.PluginManager, origins: dict[str, str], unavailable: list[PluginInfo] | None = None, warnings: list[str] | None = None):
        self.pm = pm
        self.origins = origins
        self.unavailable = list(unavailable or [])
        self.warnings = list(warnings or [])

    def names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin())

    def hooks_of(self, name: str) -> tuple[str, ...]:
        plugin = self.pm.get_plugin(name)
        implemented = {caller.name for caller in self.pm.get_hookcallers(plugin) or ()}
        return tuple(hook for hook in hook_names() if hook in implemented)

    def implements(self, name: str, hook: str) -> bool:
        return self.pm.has_plugin(name) and hook in self.hooks_of(name)

    def info(self) -> list[PluginInfo]:
        """Every registered plugin, then every unavailable entry point, sorted by name."""
        registered = [PluginInfo(name, self.origins.get(name, "builtin"), self.hooks_of(name), options=self.option_defaults(name)) for name in self.names()]
        return sorted(registered + self.unavailable, key=lambda info: (info.name, info.status != "ok"))

    def missing(self, name: str) -> str:
        """Why a configuration cannot use plugin ``name``, which is not registered: one sentence."""
        entries = [info for info in self.unavailable if info.name == name]
        if entries:
            info = next((entry for entry in entries if entry.status != "filtered"), entries[0])
            origin = "" if info.status == "conflict" else f" of {info.origin}"
            return f"plugin {name!r}{origin} {_STATUS_VERBS[info.status]}: {info.error}"
        installed = self.names()
        hint = difflib.get_close_matches(name, installed, n=1)
        return f"plugin {name!r} is not installed" + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; installed: {', '.join(installed)}"

    def call(self, name: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on plugin ``name`` alone; a plugin without that hook returns None.

        An exception from the implementation (``SystemExit`` too: :func:`is_plugin_failure`) is
        re-raised as :class:`PluginCallError` naming the plugin, so that a failed run says who failed;
        so is a result that breaks the hook's promise (:func:`feph_finetune.hook_results.result_problem`),
        before any caller uses it. A result that keeps it is returned in the plain types the core
        uses (:func:`feph_finetune.hook_results.normalised_result`). The plugin is given the core's
        data read-only or as copies (:func:`feph_finetune.hook_arguments.protected_arguments`): what
        the core uses after the hook, a plugin cannot change. A hook of :data:`CONFIGURATION_HOOKS`
        is named on stderr when slow, and by an interrupt (:func:`named_while_slow`).
        """
        if not self.implements(name, hook):
            return None
        others = [plugin for other, plugin in self.pm.list_name_plugin() if other != name]
        caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
        waited_for = named_while_slow(f"calling hook {hook!r} of plugin {name!r} (checking the configuration)") if hook in CONFIGURATION_HOOKS else nullcontext()
        with waited_for, plugin_code(name, hook):
            result = caller(**protected_arguments(kwargs))
        problem = result_problem(hook, result, kwargs)
        if problem:
            raise PluginCallError(name, hook, PluginError(problem))
        return normalised_result(hook, result)

    def option_declarations(self, name: str) -> dict[str, Option]:
        """The plugin's options as :class:`~feph_finetune.Option` declarations (plain defaults wrapped).

        Raises :class:`PluginCallError` when ``plugin_options`` raises or returns something other
        than a mapping of option names to defaults or Options.
        """
        declared = self.call(name, "plugin_options") or {}
        try:
            return {str(key): checked_as_owner(as_option(value), f"plugin {name!r}", str(key)) for key, value in dict(declared).items()}
        except (TypeError, ValueError) as error:
            raise PluginCallError(name, "plugin_options", TypeError(f"must return a mapping of option names to defaults or Options, got {declared!r}")) from error

    def option_defaults(self, name: str) -> dict[str, Any]:
        return {key: option.default for key, option in self.option_declarations(name).items()}

    def traits(self, name: str, options: dict[str, Any]) -> frozenset[str]:
        """What the plugin declares it does with these options (``plugin_traits``, checked by :meth:`call`)."""
        declared = self.call(name, "plugin_traits", options=options) or ()  # given as a copy (call)
        return frozenset((declared,) if isinstance(declared, str) else declared)


def _build_manager() -> Plugins:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    origins: dict[str, str] = {}
    unavailable: list[PluginInfo] = []
    warnings: list[str] = []
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name.rsplit(".", 1)[-1])
    _check_hook_names(pm)
    _load_entry_point_plugins(pm, origins, unavailable, warnings)
    return Plugins(pm, origins, unavailable, warnings)


@lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    """The process-wide plugin registry (built once; tests may register extra plugins on it)."""
    return _build_manager()


def reset_plugins() -> None:
    """Forget the registry so the next :func:`get_plugins` rebuilds it (environment changed)."""
    get_plugins.cache_clear()
