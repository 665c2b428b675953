"""The plugin manager: built-in plugins, entry-point plugins, and calling one plugin's hook.

Built-in plugins are registered from :data:`DEFAULT_PLUGINS`; third-party plugins come from the
``feph_finetune`` entry-point group. ``FEPH_FINETUNE_LOAD_PLUGINS`` restricts entry-point loading to
a comma-separated list of distribution names (set but empty: load none).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pluggy

from feph_finetune import hookspecs

ENTRY_POINT_GROUP = "feph_finetune"
LOAD_PLUGINS_ENV = "FEPH_FINETUNE_LOAD_PLUGINS"

#: The built-in plugins, registered under the last part of their module name (the executors are
#: core machinery, registered through the same hook a third-party executor uses).
DEFAULT_PLUGINS = (
    "feph_finetune_plugins.face_crop",
    "feph_finetune_plugins.normalize",
    "feph_finetune_plugins.flip",
    "feph_finetune_plugins.mobilenet",
    "feph_finetune_plugins.efficientnet",
    "feph_finetune_plugins.adam",
    "feph_finetune_plugins.adam_sgd",
    "feph_finetune_plugins.sam",
    "feph_finetune_plugins.sam_sgd",
    "feph_finetune_plugins.class_weights",
    "feph_finetune_plugins.paper_metrics",
    "feph_finetune.executors",  # the built-in executors: inline, process, ray
)


class PluginLoadError(Exception):
    """A plugin could not be loaded or implements hooks that do not exist."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    origin: str
    hooks: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "origin": self.origin, "hooks": list(self.hooks)}


class PluginCallError(Exception):
    """A hook implementation raised; carries the plugin and hook for the run's error record."""

    def __init__(self, plugin: str, hook: str, error: BaseException):
        super().__init__(f"plugin {plugin!r} failed in hook {hook!r}: {type(error).__name__}: {error}")
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


def _load_entry_point_plugins(pm: pluggy.PluginManager, origins: dict[str, str]) -> None:
    allowed = _allowed_distributions()
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or ""
        if allowed is not None and _normalise_distribution(dist_name) not in allowed:
            continue
        for entry_point in dist.entry_points:
            if entry_point.group != ENTRY_POINT_GROUP or pm.has_plugin(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:
                raise PluginLoadError(
                    f"entry point {entry_point.name!r} of distribution {dist_name} {dist.version} "
                    f"could not be imported: {type(error).__name__}: {error}"
                ) from error
            pm.register(plugin, name=entry_point.name)
            origins[entry_point.name] = f"{dist_name} {dist.version}"


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """Refuse implementations of hooks that do not exist (a misspelling would otherwise be ignored)."""
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
    """The registered plugins, their origins, and per-plugin hook calls."""

    def __init__(self, pm: pluggy.PluginManager, origins: dict[str, str]):
        self.pm = pm
        self.origins = origins

    def names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin())

    def hooks_of(self, name: str) -> tuple[str, ...]:
        plugin = self.pm.get_plugin(name)
        implemented = {caller.name for caller in self.pm.get_hookcallers(plugin) or ()}
        return tuple(hook for hook in hook_names() if hook in implemented)

    def implements(self, name: str, hook: str) -> bool:
        return self.pm.has_plugin(name) and hook in self.hooks_of(name)

    def info(self) -> list[PluginInfo]:
        return [PluginInfo(name, self.origins.get(name, "builtin"), self.hooks_of(name)) for name in self.names()]

    def call(self, name: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on plugin ``name`` alone; a plugin without that hook returns None.

        An exception from the implementation is re-raised as :class:`PluginCallError` naming the
        plugin, so that a failed run says who failed.
        """
        if not self.implements(name, hook):
            return None
        others = [plugin for other, plugin in self.pm.list_name_plugin() if other != name]
        caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
        try:
            return caller(**kwargs)
        except Exception as error:
            raise PluginCallError(name, hook, error) from error

    def option_defaults(self, name: str) -> dict[str, Any]:
        return dict(self.call(name, "plugin_options") or {})


def _build_manager() -> Plugins:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    origins: dict[str, str] = {}
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name.rsplit(".", 1)[-1])
    _load_entry_point_plugins(pm, origins)
    _check_hook_names(pm)
    return Plugins(pm, origins)


@lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    """The process-wide plugin registry (built once; tests may register extra plugins on it)."""
    return _build_manager()


def reset_plugins() -> None:
    """Forget the registry so the next :func:`get_plugins` rebuilds it (environment changed)."""
    get_plugins.cache_clear()
