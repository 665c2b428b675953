"""The demo as a client of the core: a :class:`feph_finetune.session.Session` over its own data.

``python -m feph_finetune experiments.toml --demo`` runs a :class:`DemoSession`: the matrix of the
TOML with the ``[demo]`` table's settings laid over it (:func:`apply_demo`), its dataset the
synthetic one, each backbone's weights the base model pre-trained on synthetic faces
(:mod:`feph_finetune.demo.protocol`). Every check runs before anything is written; the data is
written once they pass, and the runs of each backbone start as its base model is ready.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from feph_finetune.config.matrix import Run
from feph_finetune.config.reading import RawConfig, deep_merge, set_dotted
from feph_finetune.demo import protocol
from feph_finetune.session import Plan, Session


class DemoSession(Session):
    """A session of the demo; takes :class:`feph_finetune.session.Session`'s arguments. Its
    results go to ``runs/demo`` unless ``output`` says otherwise."""

    check_files = False  # the data and the bases do not exist before prepare() writes them
    demo = True

    def __init__(self, config, **options: Any):
        options.setdefault("tables", {"demo": protocol.DEMO_OPTIONS})
        super().__init__(config, **options)

    def read(self) -> RawConfig:
        """The configuration with the ``[demo]`` settings laid over it (checked first)."""
        raw = super().read()
        self.settings = protocol.demo_settings(raw, check=False)  # [demo]'s problems are reported with every other
        self.paths = protocol.demo_paths(self.settings)
        apply_demo(raw, str(self.paths.data), {name: str(path) for name, path in self.paths.base_models.items()}, protocol.demo_table(raw))
        return raw

    def default_output(self) -> Path:
        return Path("runs/demo")

    def executor_choice(self, choice, raw: RawConfig):
        return with_demo_jobs(choice, raw, self.jobs, self.devices)

    def prepare(self, plan: Plan) -> Plan:
        """Write the synthetic data (once per settings), then build the matrix against it:
        checked, its fingerprint in the run ids. The bases are written later, beside the runs."""
        protocol.write_demo_data(self.settings, self.paths, self.console)
        return self.rebuild(plan, pending_files=self.paths.base_models.values())

    def groups(self, runs: list[Run], is_done: Callable[[str], bool]) -> Iterator[list[Run]]:
        """The runs as their backbones' bases are ready (:func:`feph_finetune.demo.protocol.runs_as_bases_are_ready`)."""
        return protocol.runs_as_bases_are_ready(runs, self.settings, self.paths, self.console, is_done)


def apply_demo(raw: RawConfig, demo_root: str, weights: dict[str, str], demo: dict[str, Any]) -> None:
    """Lay the ``[demo]`` table's settings over the configuration, for the synthetic demo.

    ``demo``: the table's valid values, defaults filled in (its ``folds`` and ``defaults``; its
    problems are reported by the check of the whole configuration). A value copied from it is
    named, in problems, where the ``[demo]`` table sets it.
    """
    if isinstance(raw.data.get("defaults", {}), dict):
        raw.data["defaults"] = deep_merge(raw.data.get("defaults", {}), demo["defaults"])
        for keys in _leaves(demo["defaults"]):
            raw.copied_from[("defaults", *keys)] = ("demo", "defaults", *keys)
        for plugin, path in weights.items():
            set_dotted(raw.data, ["defaults", "options", plugin, "weights"], path)
    if not isinstance(raw.data.get("dataset", {}), dict):
        return  # reported with the other keys
    set_dotted(raw.data, ["dataset", "root"], demo_root)
    if demo["folds"] and ("dataset", "folds") not in raw.overridden:  # --set dataset.folds wins
        set_dotted(raw.data, ["dataset", "folds"], demo["folds"])
        raw.copied_from[("dataset", "folds")] = ("demo", "folds")
    for key in ("labels", "images"):
        raw.data["dataset"].pop(key, None)


def _leaves(table: dict[str, Any]) -> list[tuple[str, ...]]:
    """The key paths of a nested table's values that are not tables."""
    return [(key, *rest) for key, value in table.items() for rest in (_leaves(value) if isinstance(value, dict) and value else [()])]


def with_demo_jobs(choice, raw: RawConfig, jobs: str | None, devices: str | None):
    """The demo runs one run per CPU core (:func:`feph_finetune.demo.protocol.demo_jobs`) with the
    ``process`` executor, unless ``--jobs``, ``--devices`` or ``[executor.process]`` decide."""
    decided = jobs is not None or devices is not None or bool({"jobs", "devices"} & set(raw.data.get("executor", {}).get("process", {})))
    if choice.cls.name != "process" or decided:
        return choice
    return replace(choice, settings={**choice.settings, "jobs": protocol.demo_jobs()})
