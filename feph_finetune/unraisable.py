"""Errors Python cannot raise (an object's ``__del__`` that raises, a generator's ``finally``
at garbage collection), which it prints as an "Exception ignored in: ..." traceback: shown
by a command as one warning line instead, naming the plugin whose object it was.

:func:`unraisable_as_warnings` installs the :data:`sys.unraisablehook` for one command and puts
the previous one back after it, so that a test or a notebook calling ``cli.main`` keeps its own;
the command-line process keeps :func:`print_warning` until it exits (``feph_finetune.__main__``),
for the objects collected as the interpreter shuts down.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator

from feph_finetune.printable import printable


def warning_line(unraisable: Any) -> str:
    """One line for ``unraisable`` (:data:`sys.unraisablehook`'s argument: ``exc_type``,
    ``exc_value``, ``object``, ``err_msg``), escaped: what failed, in which object, and the
    plugin that object belongs to when its code is a plugin's (:func:`plugin_of`)."""
    error = unraisable.exc_value if unraisable.exc_value is not None else unraisable.exc_type()
    where = f" in {_safe_repr(unraisable.object)}" if unraisable.object is not None else ""
    plugin = plugin_of(unraisable.object)
    owner = f"plugin {plugin!r}: " if plugin else ""
    return printable(f"warning: {owner}error ignored{where}: {type(error).__name__}: {_safe_str(error)}")


def plugin_of(thing: Any) -> str | None:
    """The registered plugin whose module defines ``thing`` (a function, or an object's class):
    the plugin itself, or a module under it; None for the core's code or an unknown module."""
    module = getattr(thing, "__module__", None) or getattr(type(thing), "__module__", None)
    if not isinstance(module, str):
        return None
    try:
        from feph_finetune.plugins import get_plugins

        registered = get_plugins().pm.list_name_plugin()
    except Exception:  # the registry failing (or, at the interpreter's exit, its import): name no plugin
        return None
    for name, plugin in registered:
        own = getattr(plugin, "__name__", None) if isinstance(plugin, type(sys)) else getattr(type(plugin), "__module__", None)
        if isinstance(own, str) and (module == own or module.startswith(own + ".")):
            return name
    return None


def _safe_repr(thing: Any) -> str:
    try:
        return repr(thing)
    except Exception:  # a plugin's __repr__ raising too
        return f"<{type(thing).__name__} object>"


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return "(its text could not be made)"


def print_warning(unraisable: Any) -> None:
    """The :data:`sys.unraisablehook` of a command: :func:`warning_line` on stderr."""
    try:
        sys.stderr.write(warning_line(unraisable) + "\n")
        sys.stderr.flush()
    except Exception:  # stderr closed, or gone at the interpreter's exit: nothing to tell
        pass


@contextmanager
def unraisable_as_warnings() -> Iterator[None]:
    """Within the block, an error Python cannot raise prints one warning line on stderr
    (:func:`warning_line`), no traceback; the previous hook is put back after it."""
    previous = sys.unraisablehook
    sys.unraisablehook = print_warning
    try:
        yield
    finally:
        sys.unraisablehook = previous
