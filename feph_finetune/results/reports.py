"""The paper's reports: run records aggregated into Tables 4 and 5, and rendered four ways.

The results store hands over one plain dict per run (see :func:`summarize`). ``summarize`` turns
them into one row per (phase, experiment, variant): means over the finished runs, standard
deviations over cross-validation folds, failures, cost, and a paired t-test against the No-FT
baseline of the same backbone. ``render`` prints those rows as rich tables laid out like the
paper's (``table``), GitHub markdown, CSV or JSON. Nothing here imports TensorFlow, so reporting
stays instant.
"""

from __future__ import annotations

import os

import csv
import io
import json
import math
import numbers
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
from rich import box
from rich.cells import cell_len
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from feph_finetune.api import CLASSES
from feph_finetune.printable import printable, reading_key
from feph_finetune.results.number_text import SMALL, format_count, format_number
from feph_finetune.results.paper import published
from feph_finetune.results.run_configurations import CONFIGURATION
from feph_finetune.results.records import (BaselineTest, FoldSpread, Metrics, RecordShapeError, RunFailure, RunRecord, SummaryRow, class_names,
                                           confusion_classes)
from feph_finetune.results.stats import paired_t

if TYPE_CHECKING:
    from rich.console import Console

#: The output formats ``render`` accepts.
FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json")

_PHASE_RANK = {"exploratory": 0, "cv": 1}
_PAPER_SCALARS = ("accuracy", "avg_sensitivity")
_MESSAGE_LIMIT = 160
#: The title of the note naming the rows whose data had no grouping.
UNGROUPED_TITLE = ("Data without grouping: every image was its own group, so frames of one video may sit on both "
                   "sides of a split and these accuracies may be too high (set dataset.group_by or dataset.group_pattern)")


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def summarize(records: Iterable[dict], paper: bool = False) -> list[dict]:
    """Aggregate run records into report rows, one per (phase, experiment, variant).

    Rows come in report order: the exploratory phase first, then by the experiment's ``order``
    in the TOML, then by variant. Each row is a :class:`~feph_finetune.results.records.SummaryRow`
    as JSON (:meth:`~feph_finetune.results.records.SummaryRow.to_json`), which documents its keys:
    means over the finished runs, standard deviations over cross-validation folds, failures,
    cost, the paired t-test against the No-FT baseline of the same backbone (cross-validation
    rows), and with ``paper`` the accuracy the paper published for the same configuration (see
    :func:`feph_finetune.results.paper.published`).
    """
    return [row for row, _ in configurations(records, paper)]


def configurations(records: Iterable[dict], paper: bool = False) -> list[tuple[dict, list[dict]]]:
    """Each summary row of :func:`summarize` with the run records behind it (finished or not).

    The figures need the runs themselves: per-fold accuracies, confusion matrices, histories.
    """
    return [(row.to_json(), runs) for row, runs in summary_rows(records, paper)]


def summary_rows(records: Iterable[dict], paper: bool = False) -> list[tuple[SummaryRow, list[dict]]]:
    """:func:`configurations` with each row as a typed :class:`~feph_finetune.results.records.SummaryRow`."""
    groups = _group_runs(records)
    rows = [_summarize_group(runs) for runs in groups]
    fold_accuracies = [_fold_accuracies(runs) for runs in groups]
    for index, row in enumerate(rows):
        if row.is_cv:
            row.versus_baseline = _versus_baseline(index, rows, fold_accuracies)
        if paper:  # the paper's numbers are for FePh's seven classes only
            fephs = tuple(_classes_of(groups[index])) == CLASSES
            row.paper, row.with_paper = (published(row.model, row.phase, row.label, row.cv_label) if fephs else None), True
    return list(zip(rows, groups))


def finished(runs: Iterable[dict]) -> list[dict]:
    """The runs that finished with metrics (the ones a row's means are taken over)."""
    return [run for run in runs if _is_finished(run)]


def short_name(row: dict) -> str:
    """The row's c/v abbreviation (else its experiment key) with its variant, e.g. ``M2 [seed=3]``."""
    return _short_name(row)


def configuration_name(row: dict) -> str:
    """The row's configuration label with its variant, e.g. ``FT-SGD + IP + HF [seed=3]``."""
    return _configuration_name(row)


def rows_told_apart(rows: list[dict]) -> list[dict]:
    """``rows`` (summary rows) with those whose names would read the same in the tables told
    apart by their experiment, ``label`` or ``cv_label`` followed by ``(experiment NAME)``: rows
    of one phase and backbone with the same :func:`configuration_name` (the exploratory table, the
    runs and counters), cross-validation rows with the same :func:`short_name` (Table 5, the paired
    comparisons, ``--confusion``) of several experiments, names compared as they read
    (:func:`~feph_finetune.printable.reading_key`: NFC and NFD text alike). A configuration refuses such
    experiments; records made elsewhere or edited by hand may still have them. A row whose name is
    its experiment's key stays as it is (so do rows of one experiment on other data, which the
    data note tells apart); the others are copies, the rest of each row unchanged."""
    told = [dict(row) for row in rows]
    for field_name, same in (("label", lambda row: (row["phase"], row["model"], reading_key(_configuration_name(row)))),
                             ("cv_label", lambda row: (row["phase"], reading_key(_short_name(row))) if row["phase"] == "cv" else None)):
        experiments: dict[Any, set[str]] = {}
        for row in told:
            experiments.setdefault(same(row), set()).add(row["experiment"])
        for row in told:
            own = row[field_name] or row["experiment"]
            if same(row) is not None and len(experiments[same(row)]) > 1 and own != row["experiment"]:
                row[field_name] = f"{own} (experiment {row['experiment']})"
    return told


def configuration_warnings(records: Iterable[dict], file_of: Callable[[str], str] = str) -> list[str]:
    """One warning per experiment whose rows are not simply its runs grouped as
    :func:`summarize` groups them: runs of several configurations (:mod:`~feph_finetune.results.run_configurations`),
    or runs of one configuration whose records disagree on what a row shows (:data:`_ROW_FIELDS`),
    each configuration a row of its own; a record whose ``variant``, ``data`` or ``model`` contradicts its
    config.json, counted as config.json says (:func:`_as_configured`); a fold recorded twice,
    counted once; a row's metric that some of its finished runs lack, its mean over fewer runs
    than the row counts; or a run's confusion matrix left out, the order of its rows unknown. ``file_of``
    names the file of a run id (a results folder's ``result.json``). ``summarize`` splits and
    counts the same way whether warned or not; a caller prints these once (the figures group
    the runs again)."""
    told: dict[str, list[str]] = {}
    for split in _grouping(records)[1]:
        told.setdefault(split.experiment, []).extend(split.lines(file_of))
    return [f"experiment {experiment}: {'; '.join(lines)}" for experiment, lines in told.items()]


def _group_runs(records: Iterable[dict]) -> list[list[dict]]:
    """The records grouped by (phase, experiment, variant, data) and configuration, groups in
    report order (:func:`_grouping`)."""
    return _grouping(records)[0]


#: What a report row shows of its runs besides their metrics: runs of one configuration whose
#: records disagree on one of these (a hand edit) are rows of their own.
_ROW_FIELDS = ("model", "baseline", "label", "cv_label", "classes")
_SHOWN_VALUE = 48


@dataclass
class _Split:
    """The runs of one (phase, experiment, variant, data) that are not one row as they are: the
    configurations they were made under (several where ``differing`` names what differs), the
    folds recorded twice (each ``(counted, left out)``), the metrics a row's mean takes from
    some of its runs only (each ``(metric, runs without it, runs the row counts)``), the runs
    whose confusion matrix is left out, the order of its rows unknown
    (:func:`~feph_finetune.results.records.confusion_classes`), and the records that
    contradicted their config.json (each ``(run, field, recorded, configured)``:
    :func:`_as_configured`)."""

    experiment: str
    phase: str
    configurations: list[tuple[dict, list[dict]]]
    differing: list[str]
    twice: list[tuple[dict, dict]]
    unmeasured: list[tuple[str, list[dict], int]]
    unordered: list[dict] = field(default_factory=list)
    contradicted: list[tuple[dict, str, Any, Any]] = field(default_factory=list)

    def lines(self, file_of: Callable[[str], str]) -> list[str]:
        """What this split says, in parts of one warning line."""
        def files(runs: list[dict]) -> str:
            return ", ".join(_file_of(run, file_of) for run in runs)

        said = []
        if len(self.configurations) > 1:
            rows = "; ".join(f"{_with_variant(self.experiment, shown)}: {files(runs)}" for shown, runs in self.configurations)
            configurations = {_configuration_id(runs[0]) for _, runs in self.configurations}
            kinds = (f"runs of {len(configurations)} configurations in these results, which differ in" if len(configurations) > 1
                     else "runs of one configuration whose records disagree on")
            said.append(f"{self.phase} {kinds} {', '.join(self.differing)}; each is a row of its own, named by what differs ({rows})")
        for counted, left_out in self.twice:
            split = "run" if counted.get("fold") is None else f"fold {counted['fold']}"
            said.append(f"{self.phase} {split} recorded twice ({files([counted, left_out])}); the row counts {files([counted])} only")
        for metric, lacking, counted in self.unmeasured:
            said.append(f"{self.phase} {metric} missing from {files(lacking)}; the row's {metric} is the mean of "
                        f"{counted - len(lacking)} of its {counted} runs")
        if self.unordered:
            said.append(f"{self.phase} confusion matrix of {files(self.unordered)} left out: the record lists no classes and its "
                        "sensitivity names other classes than FePh's seven, so the order of the matrix's rows cannot be told")
        for run, name, recorded, configured in self.contradicted:
            said.append(f"{self.phase} {files([run])} records {name} {_json_text(recorded)}, its config.json {_json_text(configured)} "
                        f"(what its run id hashes); counted as config.json says")
        return said


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _file_of(run: dict, file_of: Callable[[str], str]) -> str:
    return file_of(run["id"]) if run.get("id") else "a record without an id"


def _grouping(records: Iterable[dict]) -> tuple[list[list[dict]], list[_Split]]:
    """The records grouped into report rows, in report order, and what was split to get there.

    Runs on different data (another data fingerprint) are never averaged together, nor runs of
    different configurations (:func:`_by_configuration`); a row counts each fold once."""
    slots: dict[tuple[str, str, str, str], list[dict]] = {}
    contradicting: dict[tuple[str, str, str, str], list[tuple[dict, str, Any, Any]]] = {}
    for position, record in enumerate(records):
        record, contradicted = _as_configured(_measured_nothing(_checked(position, record)))
        variant_key = json.dumps(record.get("variant") or {}, sort_keys=True, default=str)
        slot = (record["phase"], record["experiment"], variant_key, str(record.get("data") or ""))
        slots.setdefault(slot, []).append(record)
        contradicting.setdefault(slot, []).extend((record, *contradiction) for contradiction in contradicted)
    groups, splits = [], []
    for slot, runs in slots.items():
        configurations, differing = _told_apart(_by_configuration(runs))
        twice, unmeasured, unordered = [], [], []
        for _, group in configurations:
            kept, left_out = _each_fold_once(group)
            groups.append(kept)
            twice += left_out
            unmeasured += _unmeasured(kept)
            unordered += [run for run in finished(kept) if run["metrics"].get("confusion") is not None and confusion_classes(run) is None]
        if len(configurations) > 1 or twice or unmeasured or unordered or contradicting[slot]:
            splits.append(_Split(runs[0]["experiment"], runs[0]["phase"], configurations, differing, twice, unmeasured, unordered, contradicting[slot]))
    return sorted(groups, key=_group_sort_key), splits


def _measured_nothing(record: dict) -> dict:
    """``record``, or when it is "done" with ``metrics`` null (a hand edit: a run never writes
    that) the same record measuring nothing: counted in its row, each metric the row's other
    runs have said missing from it (:func:`_unmeasured`) as for a metric left null; it was left
    out of its row without a word (a CV mean over fewer folds, its time and counters dropped)."""
    if record.get("status") == "done" and record.get("metrics") is None:
        return {**record, "metrics": Metrics().to_json()}
    return record


def _as_configured(record: dict) -> tuple[dict, list[tuple[str, Any, Any]]]:
    """``record`` with the fields its configuration records too
    (:data:`~feph_finetune.results.run_configurations.RECORDED_IN_CONFIG`: ``variant``, ``data``, ``model``)
    as its ``config.json`` gives them, and each ``(field, recorded, configured)`` the record
    contradicted. A run's configuration is what its id hashes, these fields included, so a
    record saying otherwise (a hand edit) is the one in error: it is counted in its
    configuration's row, not as a row of a grid value or data that never ran. A record that
    leaves a field empty (null, or no fingerprint) takes it without a word."""
    configuration = record.get(CONFIGURATION)
    configured = configuration.get("recorded") if isinstance(configuration, dict) else None
    if not isinstance(configured, dict):
        return record, []
    contradicted = [(name, record.get(name), value) for name, value in configured.items()
                    if record.get(name) not in (None, "") and record.get(name) != value]
    return {**record, **configured}, contradicted


def _by_configuration(runs: list[dict]) -> list[list[dict]]:
    """``runs`` of one slot in groups, one per configuration (:func:`_configuration_id`) and per
    value of each of :data:`_ROW_FIELDS`. Runs whose configuration is unknown (no readable
    ``config.json``) join the slot's one known configuration, if it has one; a run that leaves
    a field empty (an older or a failed run's record) joins the group of its most common value."""
    known = {_configuration_id(run) for run in runs} - {None}
    only = next(iter(known)) if len(known) == 1 else None
    groups: list[list[dict]] = list(_split_by(runs, lambda run: _configuration_id(run) or only).values())
    for name in _ROW_FIELDS:
        groups = [part for group in groups for part in _split_by(group, lambda run: _field_key(run, name)).values()]
    return groups


def _split_by(runs: list[dict], value_of: Callable[[dict], Any]) -> dict[str, list[dict]]:
    """``runs`` by the value ``value_of`` gives (as JSON), runs without one (None, "") in the
    group of the value most runs have."""
    keys = [json.dumps(value_of(run), sort_keys=True, default=str, ensure_ascii=False) if value_of(run) not in (None, "") else None for run in runs]
    given = [key for key in keys if key is not None]
    most = max(given, key=given.count) if given else None
    groups: dict[str, list[dict]] = {}
    for key, run in zip(keys, runs):
        groups.setdefault(key if key is not None else most, []).append(run)
    return groups


def _configuration_id(run: dict) -> str | None:
    configuration = run.get(CONFIGURATION)
    return configuration["id"] if isinstance(configuration, dict) and isinstance(configuration.get("id"), str) else None


def _row_fields(run: dict) -> dict[str, Any]:
    """What a row shows of ``run`` (:data:`_ROW_FIELDS`) as its record gives it (None or "" where it says nothing)."""
    listed = class_names(run)
    return {"model": run.get("model"), "baseline": run.get("baseline"), "label": run.get("label"),
            "cv_label": run.get("cv_label"), "classes": ",".join(listed)}


def _field_key(run: dict, name: str) -> Any:
    """What of field ``name`` of ``run`` must agree within a row: the set of ``classes`` (a fold
    listing them in another order is summed class by class), any other field as it is."""
    value = _row_fields(run)[name]
    return ",".join(sorted(value.split(","))) if name == "classes" and value else value


def _description(run: dict) -> dict[str, Any]:
    """The settings of ``run``'s configuration (dotted names) with what its row shows."""
    configuration = run.get(CONFIGURATION)
    settings = configuration.get("settings") if isinstance(configuration, dict) else None
    return {**(settings if isinstance(settings, dict) else {}), **_row_fields(run)}


def _told_apart(groups: list[list[dict]]) -> tuple[list[tuple[dict, list[dict]]], list[str]]:
    """Each group of runs with what tells it from the others (``{setting: value}``, added to its
    runs' variant, so that its row's name shows it as a grid variant's does), and the names of
    those settings; a configuration that differs in nothing shown is told by its id."""
    if len(groups) == 1:
        return [({}, groups[0])], []
    descriptions = [_description(group[0]) for group in groups]
    names = list(dict.fromkeys(name for description in descriptions for name in description))
    differing = [name for name in names if len({json.dumps(description.get(name), sort_keys=True, default=str) for description in descriptions}) > 1]
    if not differing:
        differing, descriptions = ["configuration"], [{"configuration": _configuration_id(group[0]) or "unknown"} for group in groups]
    told = []
    for description, group in zip(descriptions, groups):
        shown = {name: _shown_setting(description.get(name)) for name in differing}
        told.append((shown, [{**run, "variant": {**(run.get("variant") or {}), **shown}} for run in group]))
    return told, differing


def _shown_setting(value: Any) -> Any:
    """A setting's value as a row's name shows it: numbers and short texts as they are; lists
    joined (an empty one ``none``); anything longer than :data:`_SHOWN_VALUE` characters shortened."""
    if isinstance(value, list):
        value = ",".join(map(str, value)) or "none"
    if value is None:
        return "unset"
    text = str(value)
    return value if len(text) <= _SHOWN_VALUE else text[:_SHOWN_VALUE - 1] + "…"


def _each_fold_once(runs: list[dict]) -> tuple[list[dict], list[tuple[dict, dict]]]:
    """``runs`` (of one configuration and phase) with each fold's finished record once, the
    exploratory phase's one split too (records without a configuration, a copy): the one
    :func:`_preference` gives; and the pairs ``(counted, left out)``. Failed records are kept:
    no mean counts them."""
    counted: dict[int | None, dict] = {}
    for run in sorted(filter(_is_finished, runs), key=_preference, reverse=True):
        counted.setdefault(run.get("fold"), run)
    kept = [run for run in runs if not _is_finished(run) or counted[run.get("fold")] is run]
    kept_ids = {id(run) for run in kept}
    return kept, [(counted[run.get("fold")], run) for run in runs if id(run) not in kept_ids]


def _unmeasured(runs: list[dict]) -> list[tuple[str, list[dict], int]]:
    """The row's scalar metrics (accuracy, average sensitivity, further metrics) that some of
    its finished ``runs`` have and others lack (null, a hand edit, a plugin that measured some
    folds only): ``(metric, runs without it, finished runs)`` each. Its mean is over the runs
    that have it while the row says how many it counts. A class's sensitivity may be null where
    a fold's test set has no sample of that class; its mean over the others is what it means."""
    finished = [run for run in runs if _is_finished(run)]
    unmeasured = []
    for metric in (*_PAPER_SCALARS, *_extra_names(finished)):
        lacking = [run for run in finished if _scalar(run["metrics"].get(metric)) is None]
        if 0 < len(lacking) < len(finished):
            unmeasured.append((metric, lacking, len(finished)))
    return unmeasured


def _preference(run: dict) -> tuple[bool, float]:
    """Which finished record of a fold counts: one whose id names that fold (``M2-cv1-...`` for
    fold 1, where the other was edited to it), then the one finished last."""
    return f"-cv{run.get('fold')}-" in str(run.get("id") or ""), float((run.get("timing") or {}).get("finished") or 0.0)


class RecordError(ValueError):
    """A run record that cannot be reported (see :class:`feph_finetune.results.records.RunRecord`)."""


def _checked(position: int, record: Any) -> dict:
    """The record checked and normalised as :meth:`feph_finetune.results.store.RunStore.result` does
    (records handed to :func:`summarize` directly, not read from a store, are checked here)."""
    try:
        return RunRecord.from_json(record).to_json()
    except RecordShapeError as error:
        run_id = record.get("id", "?") if isinstance(record, dict) else "?"
        raise RecordError(f"run record {position} (id {run_id}): {error}") from None


def _group_sort_key(runs: list[dict]) -> tuple:
    first = runs[0]
    order = first.get("order")
    return (
        _PHASE_RANK.get(first["phase"], len(_PHASE_RANK)),
        first["phase"],
        order if isinstance(order, numbers.Real) else math.inf,
        first["experiment"],
        _variant_sort_key(first.get("variant") or {}),
    )


def _variant_sort_key(variant: dict) -> tuple:
    """Sort variants by their values, numbers numerically (seed 3 before seed 10)."""

    def value_key(value: Any) -> tuple:
        if _is_number(value):
            return (0, float(value), "")
        return (1, 0.0, str(value))

    return tuple((name, value_key(variant[name])) for name in sorted(variant))


def _summarize_group(runs: list[dict]) -> SummaryRow:
    first = runs[0]
    finished = [run for run in runs if _is_finished(run)]
    failed = [run for run in runs if run.get("status") == "failed"]
    scalars = {name: [_scalar(run["metrics"].get(name)) for run in finished] for name in _PAPER_SCALARS}
    sensitivities = {
        name: [_scalar((run["metrics"].get("sensitivity") or {}).get(name)) for run in finished]
        for name in _classes_of(runs)
    }
    extras = {name: [_scalar(run["metrics"].get(name)) for run in finished] for name in _extra_names(finished)}
    spread = None if first["phase"] != "cv" else FoldSpread(
        accuracy=_std(scalars["accuracy"]),
        avg_sensitivity=_std(scalars["avg_sensitivity"]),
        sensitivity={key: _std(series) for key, series in sensitivities.items()},
        extra={key: _std(series) for key, series in extras.items()},
    )
    return SummaryRow(
        experiment=first["experiment"],
        label=first.get("label") or first["experiment"],
        cv_label=first.get("cv_label") or "",
        model=first.get("model") or "",
        baseline=bool(first.get("baseline")),
        order=first.get("order"),
        phase=first["phase"],
        variant=dict(first.get("variant") or {}),
        data=str(first.get("data") or ""),
        folds=len(finished),
        failed=len(failed),
        failures=[RunFailure.of(run) for run in failed],
        accuracy=_mean(scalars["accuracy"]),
        avg_sensitivity=_mean(scalars["avg_sensitivity"]),
        sensitivity={key: _mean(series) for key, series in sensitivities.items()},
        extra={key: _mean(series) for key, series in extras.items()},
        time_s=_mean([_scalar((run.get("timing") or {}).get("total_s")) for run in finished]),
        counters=_summed_counters(finished),
        spread=spread,
        grouped=_grouped(runs),
    )


def _grouped(runs: list[dict]) -> bool | None:
    """False when any run's data formed no groups, True when every run's did, else None
    (records from before the runs said)."""
    recorded = [run.get("grouped") for run in runs]
    if False in recorded:
        return False
    return True if recorded and all(recorded) else None


def _is_finished(run: dict) -> bool:
    return run.get("status") == "done" and isinstance(run.get("metrics"), dict)


def _classes_of(runs: list[dict]) -> list[str]:
    """The class names of the runs, in their order; the paper's seven when records name none."""
    names: list[str] = []
    for run in runs:
        names.extend(name for name in class_names(run) if name not in names)
    return names or list(CLASSES)


def _extra_names(finished: list[dict]) -> list[str]:
    """Scalar metrics beyond the paper's, in order of first appearance (third-party evaluations)."""
    names: list[str] = []
    for run in finished:
        for name, value in run["metrics"].items():
            if name not in _PAPER_SCALARS and name not in names and _is_number(value):
                names.append(name)
    return names


def _summed_counters(finished: list[dict]) -> dict[str, int | float]:
    totals: dict[str, int | float] = {}
    for run in finished:
        for name, value in (run.get("counters") or {}).items():
            if _is_number(value):
                totals[name] = totals.get(name, 0) + value
    return totals


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _scalar(value: Any) -> float | None:
    """A finite number as float; anything else (missing, None, NaN) as None, left out of means."""
    if _is_number(value) and math.isfinite(value):
        return float(value)
    return None


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return _scaled(present, np.mean) if present else None


def _std(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return _scaled(present, lambda scaled: np.std(scaled, ddof=1)) if len(present) >= 2 else None


def _scaled(values: list[float], statistic: Callable[[np.ndarray], float]) -> float:
    """``statistic`` of ``values``; where that overflows (a plugin's metric may be any finite
    float, and the sum or the squares of values near 1e308 do not fit one), computed on them
    divided by their largest magnitude and scaled back, so that the mean and the spread of finite
    values are finite (the spread of +-1.7e308 excepted, shown as ``inf``). Values that do not
    overflow get exactly the plain statistic, as every report gave them before."""
    array = np.asarray(values, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        plain = float(statistic(array))
        if math.isfinite(plain):
            return plain
        scale = float(np.max(np.abs(array)))
        return float(scale * statistic(array / scale))


def _fold_accuracies(runs: list[dict]) -> dict[int, float]:
    """Accuracy per fold index of the finished runs (averaged should a fold appear twice)."""
    per_fold: dict[int, list[float]] = {}
    for run in runs:
        accuracy = _scalar(run["metrics"].get("accuracy")) if _is_finished(run) else None
        if accuracy is not None and isinstance(run.get("fold"), int):
            per_fold.setdefault(run["fold"], []).append(accuracy)
    return {fold: float(np.mean(values)) for fold, values in per_fold.items()}


def _versus_baseline(index: int, rows: list[SummaryRow], fold_accuracies: list[dict[int, float]]) -> BaselineTest | None:
    row = rows[index]
    if row.baseline:
        return None
    baseline_index = _baseline_index(row, rows)
    if baseline_index is None:
        return None
    ours, theirs = fold_accuracies[index], fold_accuracies[baseline_index]
    common = sorted(set(ours) & set(theirs))
    test = paired_t([ours[fold] - theirs[fold] for fold in common])
    baseline = rows[baseline_index]
    return BaselineTest(
        baseline=_with_variant(baseline.cv_label or baseline.experiment, baseline.variant),
        folds=test["n"],
        mean_diff=test["mean"],
        ci95=list(test["ci95"]) if test["ci95"] is not None else None,
        t=test["t"],
        p=test["p"],
    )


def _baseline_index(row: SummaryRow, rows: list[SummaryRow]) -> int | None:
    """The cv No-FT row of the same model: same variant first, else the plain one, else the first."""
    candidates = [
        index
        for index, other in enumerate(rows)
        if other.phase == row.phase and other.baseline and other.model == row.model
    ]
    for wanted in (row.variant, {}):
        for index in candidates:
            if rows[index].variant == wanted:
                return index
    return candidates[0] if candidates else None


def _short_name(row: dict) -> str:
    """The paper's c/v abbreviation of a row (else its experiment key), with its variant."""
    return _with_variant(row["cv_label"] or row["experiment"], row["variant"])


def _configuration_name(row: dict) -> str:
    return _with_variant(row["label"], row["variant"])


def _with_variant(name: str, variant: dict) -> str:
    if not variant:
        return name
    return f"{name} [{', '.join(f'{key}={value}' for key, value in variant.items())}]"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def render(records: Iterable[dict], fmt: str, console: "Console", paper: bool = False) -> None:
    """Print the report of ``records`` on ``console`` in ``fmt``: one of :data:`FORMATS`.

    ``table`` and ``markdown`` show the exploratory phase like the paper's Table 4 and the
    cross-validation phase like its Table 5 (percentages, best value per column and backbone in
    bold), then cost and fallback counts, the paired comparisons with the baseline and the failed
    runs. ``csv`` writes one row per summary row; ``json`` writes the summary rows themselves.
    With ``paper``, every format adds the paper's published accuracy (and its std over folds)
    beside the rows that are the paper's configurations (:mod:`feph_finetune.results.paper`).

    ``table`` is laid out for the console's width and fits 80 columns: class names are
    abbreviated (a legend follows each table), backbones head their sections instead of taking a
    column, cross-validation cells put the std under the mean, and metrics of third-party plugins
    get a table of their own. Only the configuration names wrap; no number is ever cut.
    """
    if fmt not in FORMATS:
        raise ValueError(f"report format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    rows = summarize(records, paper=paper)
    if fmt == "json":
        console.out(json.dumps(_json_safe(rows), indent=2, allow_nan=False), highlight=False)
    elif fmt == "csv":
        console.out(_csv_text(rows).rstrip("\n"), highlight=False)
    elif not rows:
        console.out("No runs recorded.", highlight=False)
    elif fmt == "markdown":
        console.out(markdown_report(rows), highlight=False)
    else:
        _print_rich(_printable_blocks(_report_blocks(rows, compact=True)), console)


def markdown_report(rows: list[dict]) -> str:
    """The report of summary rows (from :func:`summarize`) as GitHub markdown, one ``###`` per table."""
    return _markdown_text(_printable_blocks(_report_blocks(rows, compact=False)))


def _printable_blocks(blocks: list[_Grid | _Notes]) -> list[_Grid | _Notes]:
    """``blocks`` with every text but the numbers shown through
    :func:`~feph_finetune.printable.printable`: the names in them come from data, and a control
    character must neither act on the terminal nor split a table's line."""
    shown = []
    for block in blocks:
        if isinstance(block, _Notes):
            shown.append(_Notes(printable(block.title), [printable(line) for line in block.lines]))
            continue
        shown.append(replace(
            block, title=printable(block.title), headers=[printable(header) for header in block.headers],
            rows=[[cell if numeric else replace(cell, text=printable(cell.text))  # numbers may stack mean over std
                   for cell, numeric in zip(cells, block.numeric)] for cells in block.rows],
            legend={printable(short): printable(name) for short, name in block.legend.items()},
            notes=[printable(note) for note in block.notes]))
    return shown


@dataclass
class _Cell:
    text: str
    bold: bool = False


@dataclass
class _Grid:
    """A table independent of its output format; ``section_ends`` are row indices ending a section.

    ``flexible`` is the column that may wrap (configuration names) when the table must fit the
    console; ``spread`` the number columns (one per class, or every count) that a console too
    narrow for all of them gets in several tables (:func:`spread_columns`), the name columns
    before them repeated in each; ``spread_name`` says what one and several of them are
    (``("class", "classes")``; None: the tables are numbered as parts). The caption follows the table: the
    ``legend`` of the abbreviated headers it has (header: what it stands for), then ``notes``.
    """

    title: str
    headers: list[str]
    numeric: list[bool]
    rows: list[list[_Cell]] = field(default_factory=list)
    section_ends: set[int] = field(default_factory=set)
    flexible: int | None = None
    spread: range | None = None
    spread_name: tuple[str, str] | None = ("class", "classes")
    legend: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def caption(self) -> str:
        pairs = ", ".join(f"{short} {name}" for short, name in self.legend.items() if short in self.headers)
        return "; ".join(part for part in [pairs, *self.notes] if part)


@dataclass
class _Notes:
    title: str
    lines: list[str]


@dataclass
class _Column:
    """A metric column of the paper's tables: how to read its mean and std from a row.

    ``blank`` is shown where the row has no value (the paper's column for rows it never ran).
    """

    header: str
    mean: Callable[[dict], float | None]
    std: Callable[[dict], float | None]
    percent: bool = True
    bold_best: bool = True
    blank: str = "–"
    per_class: bool = False


def _report_blocks(rows: list[dict], compact: bool) -> list[_Grid | _Notes]:
    """The report's tables and notes; ``compact`` lays them out for an 80-column console."""
    rows = rows_told_apart(rows)
    blocks: list[_Grid | _Notes] = []
    for phase in dict.fromkeys(row["phase"] for row in rows):
        for group, other in _class_groups([row for row in rows if row["phase"] == phase]):
            columns = _metric_columns(group, compact)
            extras = [column for column in columns if not column.percent]
            if compact:
                columns = [column for column in columns if column.percent]
            grid = _cross_validation_grid(group, columns, compact) if phase == "cv" else _single_split_grid(phase, group, columns, compact)
            if other:
                grid.title += f"; runs with other classes: {', '.join(_names_across(group, 'sensitivity'))}"
            blocks.append(grid)
            if compact and extras:
                blocks.append(_extra_grid(phase, group, extras))
    blocks.append(_cost_grid(rows, compact))
    comparisons = [_comparison_line(row) for row in rows if row.get("versus_baseline")]
    if comparisons:
        title = "Paired comparisons with the No-FT baseline (accuracy per fold, two-sided paired t-test)"
        blocks.append(_Notes(title, comparisons))
    data_lines = _data_lines(rows)
    if data_lines:
        blocks.append(_Notes("Data each row came from (python -m feph_finetune data ROOT shows it)", data_lines))
    ungrouped = _rows_named([row for row in rows if row.get("grouped") is False], rows)
    if ungrouped:
        blocks.append(_Notes(UNGROUPED_TITLE, ungrouped))
    failures = [_failure_line(failure) for row in rows for failure in row["failures"]]
    if failures:
        blocks.append(_Notes("Failed runs", failures))
    return blocks


def _class_groups(rows: list[dict]) -> list[tuple[list[dict], bool]]:
    """``rows`` split by the classes their runs had (as a set: the order does not matter), each
    with whether it is a group of other classes: the first group is the paper's seven classes, or
    the most common set; rows without sensitivities (no finished run) join it. Rows of other
    classes get tables of their own instead of doubling every table's class columns."""
    groups: dict[frozenset, list[dict]] = {}
    for row in rows:
        groups.setdefault(frozenset(row["sensitivity"]), []).append(row)
    unknown = groups.pop(frozenset(), [])
    if not groups:
        return [(unknown, False)]
    main = frozenset(CLASSES) if frozenset(CLASSES) in groups else max(groups, key=lambda key: len(groups[key]))
    chosen = {id(row) for row in [*groups[main], *unknown]}
    first = [row for row in rows if id(row) in chosen]
    return [(first, False)] + [(group, True) for key, group in groups.items() if key != main]


def _metric_columns(rows: list[dict], compact: bool) -> list[_Column]:
    """Accuracy, the paper's accuracy (when asked), the sensitivities, their average, then others.

    Third-party metrics are shown as they are (not in %) and never bolded: whether more is
    better is unknown for them. ``compact`` abbreviates the class names (:func:`class_abbreviations`).
    """
    classes, extras = _names_across(rows, "sensitivity"), _names_across(rows, "extra")
    short = _class_headers(classes, compact)
    shown_extras = dict(zip(extras, headers_told_apart(extras, "metric", taken=short.values())))

    def scalar(header: str, name: str) -> _Column:
        return _Column(header, lambda row: row[name], lambda row: row.get(f"{name}_std"))

    def keyed(header: str, group: str, key: str, percent: bool = True) -> _Column:
        return _Column(
            header,
            lambda row: row[group].get(key),
            lambda row: (row.get(f"{group}_std") or {}).get(key),
            percent=percent,
            bold_best=percent,
            per_class=group == "sensitivity",
        )

    paper = []
    if _shows_paper(rows):
        paper = [
            _Column(
                "paper" if compact else "paper acc.",
                lambda row: (row.get("paper") or {}).get("accuracy"),
                lambda row: (row.get("paper") or {}).get("accuracy_std"),
                bold_best=False,
                blank="",
            )
        ]
    return [
        scalar("acc.", "accuracy"),
        *paper,
        *(keyed(short[name], "sensitivity", name) for name in classes),
        scalar("avg. sens.", "avg_sensitivity"),
        *(keyed(shown_extras[name], "extra", name, percent=False) for name in extras),
    ]


#: The headers of the report's own columns in its tables: a class, a further metric or a counter
#: of that name is told apart from them (:func:`headers_told_apart`).
_OWN_HEADERS = frozenset({"phase", "architecture", "configuration", "c/v", "acc.", "paper", "paper acc.", "avg. sens.",
                          "runs", "failed", "time", "time per run"})


def headers_told_apart(names: list[str], kind: str, taken: Iterable[str] = ()) -> list[str]:
    """The headers of columns named by data (``kind``: class, metric, counter): each name as it
    is, or where it would read as one of the report's own headers (:data:`_OWN_HEADERS`), one in
    ``taken`` or an earlier one, ``"<kind> <name>"``, so that no two columns of a table read the
    same (compared as they read: :func:`~feph_finetune.printable.reading_key`, so the classes
    ``é`` and ``e`` + U+0301 of two datasets get two headers that differ on screen)."""
    seen, headers = {reading_key(header) for header in (*_OWN_HEADERS, *taken)}, []
    for name in names:
        header = name
        while reading_key(header) in seen:
            header = f"{kind} {header}"
        seen.add(reading_key(header))
        headers.append(header)
    return headers


def class_abbreviations(classes: Iterable[str]) -> dict[str, str]:
    """Short, distinct column headers for class names: the first three letters, longer on a clash.

    The paper's seven become ang, dis, fea, hap, neu, sad, sur. A name of three letters or fewer
    stays as it is. Names that share a long prefix (``marker_01``, ``marker_02``) keep their
    first letter and what tells them apart (``m01``, ``m02``), so that many classes stay narrow.
    """
    names = list(dict.fromkeys(classes))
    short = {name: _first_clusters(name, 3) for name in names}
    for prefix in set(short.values()):
        clashing = [name for name in names if short[name] == prefix]
        common = len(os.path.commonprefix(clashing))
        if len(clashing) > 1 and all(len(name) > common for name in clashing):
            short.update({name: _first_clusters(name, 1) + _first_clusters(name[common:], 4) for name in clashing})
    if _read_apart(short.values(), len(names)):
        return short
    for length in range(3, max((len(name) for name in names), default=3) + 1):
        short = {name: _first_clusters(name, length) for name in names}
        if _read_apart(short.values(), len(names)):
            return short
    return {name: name for name in names}  # names that read the same: told apart by headers_told_apart


def _read_apart(headers: Iterable[str], count: int) -> bool:
    """Whether ``count`` headers all read differently (:func:`~feph_finetune.printable.reading_key`)."""
    return len({reading_key(header) for header in headers}) == count


def _first_clusters(name: str, count: int) -> str:
    """The first ``count`` character clusters of ``name`` (a Devanagari consonant with its vowel
    sign, an emoji sequence, count as one), so that an abbreviation never splits a character."""
    end = 0
    for _ in range(count):
        if end >= len(name):
            break
        end = _cluster_end(name, end)
    return name[:end]


def _shows_paper(rows: list[dict]) -> bool:
    """Whether a table of ``rows`` gets the paper's column: the report was asked for the paper's
    numbers, and the table's classes are FePh's seven (or unknown: no run finished)."""
    classes = set(_names_across(rows, "sensitivity"))
    return any("paper" in row for row in rows) and classes in (set(), set(CLASSES))


def _class_legend(rows: list[dict], compact: bool) -> dict[str, str]:
    """The abbreviated class headers of a table and the class each stands for (console only)."""
    if not compact:
        return {}
    classes = _names_across(rows, "sensitivity")
    short = _class_headers(classes, compact)
    return {short[name]: name for name in classes if short[name] != name}


def _class_headers(classes: list[str], compact: bool) -> dict[str, str]:
    """Each class's column header: its abbreviation (``compact``, :func:`class_abbreviations`) or
    its name, told apart from the table's own headers (:func:`headers_told_apart`)."""
    short = class_abbreviations(classes) if compact else {name: name for name in classes}
    return dict(zip(classes, headers_told_apart([short[name] for name in classes], "class")))


def _grid_notes(rows: list[dict], compact: bool) -> list[str]:
    """What the caption says besides the legend: the paper's column, or why it is missing."""
    if _shows_paper(rows):
        return ["paper: the published accuracy"] if compact else []
    if any("paper" in row for row in rows):
        return ["no paper column: the paper published results for FePh's seven classes only"]
    return []


def _single_split_grid(phase: str, rows: list[dict], columns: list[_Column], compact: bool) -> _Grid:
    """Paper Table 4: one row per configuration, sections per architecture, values in %."""
    title = "Exploratory phase (paper Table 4)" if phase == "exploratory" else f"Phase {phase}"
    leading = ["configuration", "c/v"] if compact else ["architecture", "configuration", "c/v"]
    grid = _Grid(
        title=f"{title}: accuracy, sensitivity per class and average sensitivity (%)",
        headers=[*leading, *(column.header for column in columns)],
        numeric=[*(False for _ in leading), *(True for _ in columns)],
        flexible=0 if compact else None,
        spread=_class_columns(columns, len(leading)),
        legend=_class_legend(rows, compact),
        notes=_grid_notes(rows, compact),
    )
    for section in _sections_by_model(rows):
        metric_cells = _metric_cells(section, columns, with_std=False, compact=compact)
        if compact:
            grid.rows.append([_Cell(section[0]["model"], bold=True)] + [_Cell("") for _ in grid.headers[1:]])
        for position, (row, cells) in enumerate(zip(section, metric_cells)):
            names = [_Cell(_configuration_name(row)), _Cell(row["cv_label"])]
            if not compact:
                names.insert(0, _Cell(row["model"] if position == 0 else ""))
            grid.rows.append(names + cells)
        grid.section_ends.add(len(grid.rows) - 1)
    return grid


def _cross_validation_grid(rows: list[dict], columns: list[_Column], compact: bool) -> _Grid:
    """Paper Table 5: one row per c/v configuration, "mean (std)" over folds, values in %."""
    grid = _Grid(
        title="Cross-validation phase (paper Table 5): mean (std) over folds (%)"
        if not compact
        else "Cross-validation phase (paper Table 5): mean over folds, ± std (%)",
        headers=["c/v", *(column.header if compact else f"{column.header} (std)" for column in columns)],
        numeric=[False, *(True for _ in columns)],
        flexible=0 if compact else None,
        spread=_class_columns(columns, 1),
        legend=_class_legend(rows, compact),
        notes=_grid_notes(rows, compact),
    )
    for section in _sections_by_model(rows):
        for row, cells in zip(section, _metric_cells(section, columns, with_std=True, compact=compact)):
            grid.rows.append([_Cell(_short_name(row))] + cells)
        grid.section_ends.add(len(grid.rows) - 1)
    return grid


def _class_columns(columns: list[_Column], leading: int) -> range:
    """The indices, in a grid with ``leading`` name columns before ``columns``, of the
    sensitivity columns (one per class)."""
    positions = [leading + index for index, column in enumerate(columns) if column.per_class]
    return range(positions[0], positions[-1] + 1) if positions else range(leading, leading)


def _extra_grid(phase: str, rows: list[dict], columns: list[_Column]) -> _Grid:
    """The metrics of third-party evaluate plugins, beside the paper's table (console only)."""
    cv = phase == "cv"
    names = {"cv": "Cross-validation: further metrics (mean ± std over folds)", "exploratory": "Exploratory phase: further metrics"}
    grid = _Grid(
        title=names.get(phase, f"Phase {phase}: further metrics"),
        headers=["configuration", *(column.header for column in columns)],
        numeric=[False, *(True for _ in columns)],
        flexible=0,
        spread=range(1, 1 + len(columns)),
        spread_name=("metric", "metrics"),
    )
    for section in _sections_by_model(rows):
        for row, cells in zip(section, _metric_cells(section, columns, with_std=cv, compact=True)):
            grid.rows.append([_Cell(_short_name(row) if cv else f"{_configuration_name(row)} ({row['model']})")] + cells)
        grid.section_ends.add(len(grid.rows) - 1)
    return grid


def _names_across(rows: list[dict], group: str) -> list[str]:
    """The keys of the ``group`` dict (sensitivity, extra, counters) over all rows, first seen first."""
    return list(dict.fromkeys(key for row in rows for key in row[group]))


def _sections_by_model(rows: list[dict]) -> list[list[dict]]:
    """The rows grouped by backbone, in order of first appearance, keeping their order within."""
    sections: dict[str, list[dict]] = {}
    for row in rows:
        sections.setdefault(row["model"], []).append(row)
    return list(sections.values())


def _metric_cells(section: list[dict], columns: list[_Column], with_std: bool, compact: bool) -> list[list[_Cell]]:
    """The metric cells of one section's rows, the best value of each column bolded.

    "Best" compares the values as printed, so ties at the shown precision are all bold (as in
    the paper); a column with a single value has no best to point out.
    """
    shown = [[_shown_value(column, column.mean(row)) for column in columns] for row in section]
    best = []
    for index, column in enumerate(columns):
        present = [values[index] for values in shown if values[index] is not None]
        best.append(max(present) if column.bold_best and len(present) >= 2 else None)
    cells = []
    for row, values in zip(section, shown):
        cells.append(
            [
                _Cell(_format_metric(column, row, with_std, compact), bold=value is not None and value == best[index])
                for index, (column, value) in enumerate(zip(columns, values))
            ]
        )
    return cells


def _shown_value(column: _Column, value: float | None) -> float | None:
    if value is None:
        return None
    return round(100.0 * value, 1) if column.percent else round(value, 3)


def _format_metric(column: _Column, row: dict, with_std: bool, compact: bool = False) -> str:
    """"62.4 (3.2)" in markdown; "62.4" over "±3.2" in the console (``compact``), to save width."""
    mean = column.mean(row)
    if mean is None:
        return column.blank
    text = _format_number(column, mean)
    if compact and text == "100.0":
        text = "100"  # as narrow as "99.9": a perfect class must not widen its column past 80 columns
    if not with_std:
        return text
    std = column.std(row)
    spread = _format_number(column, std) if std is not None else "–"
    if compact:
        return f"{text}\n{'±' + spread if std is not None else spread}"
    return f"{text} ({spread})"


def _format_number(column: _Column, value: float) -> str:
    """A metric as its column shows it: a percentage with one decimal, a further metric with three
    (:func:`~feph_finetune.results.number_text.format_number`: scientific notation when wide or tiny)."""
    return format_number(100.0 * value, 1) if column.percent else format_number(value, 3, small=SMALL)


def _cost_grid(rows: list[dict], compact: bool) -> _Grid:
    """Runs, failures, time and counters per row; ``compact`` heads each phase with a row instead of a column."""
    counter_names = _names_across(rows, "counters")
    leading = ["architecture", "configuration"] if compact else ["phase", "architecture", "configuration"]
    grid = _Grid(
        title="Runs, mean training time per run and counters (counters summed over finished runs)",
        headers=[*leading, "runs", "failed", "time" if compact else "time per run", *headers_told_apart(counter_names, "counter")],
        numeric=[*(False for _ in leading), True, True, True, *(True for _ in counter_names)],
        flexible=1 if compact else None,
        spread=range(len(leading), len(leading) + 3 + len(counter_names)),
        spread_name=None,
    )
    for phase in dict.fromkeys(row["phase"] for row in rows):
        if compact:
            grid.rows.append([_Cell(phase, bold=True)] + [_Cell("") for _ in grid.headers[1:]])
        for row in (row for row in rows if row["phase"] == phase):
            cells = [row["model"], _configuration_name(row), str(row["folds"]), str(row["failed"])]
            if not compact:
                cells.insert(0, row["phase"])
            cells.append(_format_duration(row["time_s"]))
            cells.extend(format_count(row["counters"].get(name, 0)) for name in counter_names)
            grid.rows.append([_Cell(text) for text in cells])
        if compact:
            grid.section_ends.add(len(grid.rows) - 1)
    return grid


def _data_lines(rows: list[dict]) -> list[str]:
    """Which data each row came from: one line per data fingerprint, naming its rows when several."""
    if not any(row["data"] for row in rows):
        return []
    by_data: dict[str, list[str]] = {}
    for row in rows:
        by_data.setdefault(row["data"] or "unknown (recorded before fingerprints)", []).append(
            f"{_short_name(row)} ({'cv' if row['phase'] == 'cv' else 'x'})")
    if len(by_data) == 1:
        return [f"{next(iter(by_data))}: all rows"]
    return [f"{data}: {', '.join(names)}" for data, names in by_data.items()]


def _rows_named(chosen: list[dict], rows: list[dict]) -> list[str]:
    """One line naming the ``chosen`` rows (``all rows`` when they are all), none for none."""
    if not chosen:
        return []
    if len(chosen) == len(rows):
        return ["all rows"]
    return [", ".join(f"{_short_name(row)} ({'cv' if row['phase'] == 'cv' else 'x'})" for row in chosen)]


def _format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _comparison_line(row: dict) -> str:
    """E.g. "M2 vs M0: +18.3 points, 95% CI [10.1, 26.5], p = 0.003 (5 folds)"."""
    test = row["versus_baseline"]
    name = f"{_short_name(row)} vs {test['baseline']}"
    if test["folds"] == 0:
        return f"{name}: no fold finished by both"
    difference = f"{100.0 * test['mean_diff']:+.1f} points"
    if test["p"] is None:
        return f"{name}: {difference} (1 paired fold: too few for a test)"
    low, high = (100.0 * bound for bound in test["ci95"])
    return f"{name}: {difference}, 95% CI [{low:.1f}, {high:.1f}], {_format_p(test['p'])} ({test['folds']} folds)"


def _format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _failure_line(failure: dict) -> str:
    where = ".".join(part for part in (failure["plugin"], failure["hook"]) if part) or "core"
    kind = f"{failure['type']}: " if failure.get("type") else ""
    message = " ".join(str(failure["message"]).split())
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 1] + "…"
    return f"{failure['id']}: {where}: {kind}{message}"


def _print_rich(blocks: list[_Grid | _Notes], console: "Console") -> None:
    # Text objects throughout: labels such as "FT [seed=3]" must not be read as rich markup.
    # Notes wrap at the console's width with a hanging indent, so a pipe at 80 columns reads well.
    # Titles and legends are printed apart from their tables, to wrap at the console's width
    # rather than at a narrow table's.
    for block in blocks:
        if isinstance(block, _Grid):
            for index, part in enumerate(_console_parts(block, console.width)):
                if index:
                    console.print()
                console.print(Text(part.title, style="table.title"))
                console.print(_rich_table(part, console.width))
                if part.caption:
                    console.print(Text(part.caption, style="table.caption"))
        else:
            console.print(Text(block.title, style="bold"))
            for line in block.lines:
                console.print(Padding(Text(line, overflow="fold"), (0, 0, 0, 2), expand=False))
        console.print()


#: Columns of a console table are separated by one space of padding and one of the box's divider.
_COLUMN_GAP = 2
#: The narrowest the wrapping column of a console table gets, whatever the console's width.
_FLEXIBLE_MIN = 10


def spread_columns(widths: list[int], spread: range, room: int) -> list[list[int]]:
    """The columns of a table, by index, split into the columns of several tables with the same
    rows when they do not fit ``room`` display cells in one: each table has the columns before
    ``spread`` (names), a run of ``spread``'s (one per class), and the last table the columns
    after it too, or (when even one of ``spread``'s beside them does not fit) a table of their
    own. As few tables as fit, with runs of equal length give or take one (12 classes at 80
    columns: two tables of 6); a single table when everything fits (or ``spread`` is empty); the
    narrowest layout when nothing fits. ``widths``: each column's width in cells; columns are
    :data:`_COLUMN_GAP` apart."""
    def width(columns: list[int]) -> int:
        return sum(widths[index] for index in columns) + _COLUMN_GAP * (len(columns) - 1)

    before, after = list(range(spread.start)), list(range(spread.stop, len(widths)))
    tables = [before + list(spread) + after]
    for separate in (False, True) if after else (False,):
        for count in range(1, len(spread) + 1):
            size = -(-len(spread) // count)
            runs = [list(spread[start:start + size]) for start in range(0, len(spread), size)]
            if separate:
                tables = [before + run for run in runs] + [before + after]
            else:
                tables = [before + run + (after if index == len(runs) - 1 else []) for index, run in enumerate(runs)]
            if all(width(columns) <= room for columns in tables):
                return tables
    return tables


def _console_parts(grid: _Grid, width: int) -> list[_Grid]:
    """``grid``, or when its ``spread`` columns do not fit ``width`` beside its name columns, the
    tables :func:`spread_columns` splits it into, each titled with the classes it shows (or its
    part's number). The name columns keep the width of their longest name where that is at
    most half of ``width`` and one ``spread`` column fits beside them, so that names stay whole;
    else (a name too long to be worth more tables) they give up width as in
    :func:`_text_column_widths` and fold."""
    if grid.spread is None:
        return [grid]
    widths = _text_column_widths(grid, width, stages=2)
    names = sum(wide for wide, numeric in zip(widths, grid.numeric) if not numeric)
    if names > width // 2 or any(sum(widths[index] for index in columns) + _COLUMN_GAP * (len(columns) - 1) > width
                                 for columns in spread_columns(widths, grid.spread, width)):
        widths = _text_column_widths(grid, width, stages=4)
    tables = spread_columns(widths, grid.spread, width)
    if len(tables) == 1:
        return [grid]
    spread = list(grid.spread)
    parts = []
    for part, columns in enumerate(tables, start=1):
        shown = [spread.index(index) + 1 for index in columns if index in grid.spread]
        span = f"{shown[0]}-{shown[-1]}" if len(shown) > 1 else f"{shown[0]}" if shown else ""
        which = f"{grid.spread_name[len(shown) > 1]} {span} of {len(spread)}" if grid.spread_name and shown else f"part {part} of {len(tables)}"
        parts.append(_Grid(
            title=f"{grid.title}, {which}",
            headers=[grid.headers[index] for index in columns],
            numeric=[grid.numeric[index] for index in columns],
            rows=[[cells[index] for index in columns] for cells in grid.rows],
            section_ends=grid.section_ends,
            flexible=grid.flexible if grid.flexible in columns else None,
            legend=grid.legend,
            notes=grid.notes,
        ))
    return parts


def _rich_table(grid: _Grid, width: int) -> Table:
    """The grid as a rich table no wider than ``width`` (in display cells) where its numbers fit.

    Numeric columns are as wide as their widest cell line, so no number ever wraps or is cut
    (headers wrap at spaces); the text columns (names) give up the width the table lacks
    (:func:`_table_layout`) and wrap their names between words, breaking a word longer than
    its column at a ``.``/``=``/``_``... where it has one (:func:`fold_long_words`) rather than
    cutting it with an ellipsis.
    """
    widths, gap = _table_layout(grid, width)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, gap - 1), collapse_padding=True, pad_edge=False, show_edge=False)
    for index, (header, numeric) in enumerate(zip(grid.headers, grid.numeric)):
        table.add_column(Text(fold_long_words(header, widths[index])), justify="right" if numeric else "left", width=widths[index],
                         overflow="ellipsis" if numeric else "fold")
    for index, cells in enumerate(grid.rows):
        styled = [Text(_numbers_wrapped(cell.text, widths[column]) if numeric else fold_long_words(cell.text, widths[column]),
                       style="bold" if cell.bold else "")
                  for column, (cell, numeric) in enumerate(zip(cells, grid.numeric))]
        table.add_row(*styled, end_section=index in grid.section_ends)
    return table


def _width_steps(grid: _Grid) -> list[tuple[list[int], dict[int, int]]]:
    """The steps by which a table's columns give up width, each ``(columns, floor)``: (1) from
    ``grid.flexible`` down to its longest name, (2) from every text column down to its longest
    name, (3) down to :data:`_FLEXIBLE_MIN` or its header's longest word (a name longer than that
    folds), (4) down to its header's longest word; (5) a numeric column whose header is wider
    than its numbers gives up that width (the header folds after a ``_``...,
    :func:`fold_long_words`), (6) then down to its widest number with its unit (a duration
    ``138888 h 53 min`` wraps between ``138888 h`` and ``53 min``; no number is ever cut)."""
    text = [index for index, numeric in enumerate(grid.numeric) if not numeric]
    numbers = [index for index, numeric in enumerate(grid.numeric) if numeric]
    names = {index: _longest_name(grid, index) for index in text}
    flexible = [grid.flexible] if grid.flexible is not None else []
    headers = {index: max(cell_len(word) for word in grid.headers[index].split() or [""]) for index in text}
    return [(flexible, names), (text, names), (text, {index: max(_FLEXIBLE_MIN, headers[index]) for index in text}), (text, headers),
            (numbers, {index: _natural_width(grid, index, header=False) for index in numbers}),
            (numbers, {index: _unbroken_width(grid, index) for index in numbers})]


#: The steps of :func:`_width_steps` that break words: names below their longest word, numbers' headers.
_BREAKING_WORDS = (2, 3, 4)


def _excess(widths: list[int], room: int, gap: int = _COLUMN_GAP) -> int:
    """How many cells columns of ``widths``, ``gap`` apart, take beyond ``room``."""
    return sum(widths) + gap * (len(widths) - 1) - room


def _text_column_widths(grid: _Grid, width: int, stages: int) -> list[int]:
    """Each column's width: its natural width (:func:`_natural_width`), less what the table lacks
    to fit ``width`` (:data:`_COLUMN_GAP` apart), taken by the first ``stages`` of
    :func:`_width_steps` (how :func:`_console_parts` weighs a grid's names against its numbers)."""
    widths = [_natural_width(grid, index) for index in range(len(grid.headers))]
    for columns, floor in _width_steps(grid)[:stages]:
        _shrink(widths, columns, floor, _excess(widths, width))
    return widths


def _table_layout(grid: _Grid, width: int) -> tuple[list[int], int]:
    """Each column's width and the gap between columns (:data:`_COLUMN_GAP`, or 1: the rich
    table's padding dropped) of a console table that fits ``width``: the steps of
    :func:`_width_steps` one after another at the usual gap, a step that fits only with a gap of
    1 taken with that gap before the next step (which would break more words); where none fits,
    the text columns give up the rest at a gap of 1 (:func:`names_narrowed`: their names and
    headers fold, a 13-digit counter beside them at 40 columns). A number never gets less than
    its width (were the table still too wide, rich would cut numbers with "…", never fold them
    into wrong ones)."""
    natural = [_natural_width(grid, index) for index in range(len(grid.headers))]
    widths = list(natural)
    if _excess(widths, width) <= 0:
        return widths, _COLUMN_GAP
    steps = _width_steps(grid)
    for step, (columns, floor) in enumerate(steps):
        # a gap of 1 before a step that breaks words (the names' or the numbers' headers) or the last resort
        for gap in (_COLUMN_GAP, 1) if step + 1 in (*_BREAKING_WORDS, len(steps)) else (_COLUMN_GAP,):
            tried = list(widths)
            _shrink(tried, columns, floor, _excess(tried, width, gap))
            if _excess(tried, width, gap) <= 0:
                if step == len(steps) - 1:  # a duration that wraps anyway wraps at its narrowest, and the names get the room
                    unwrapped = steps[step - 1][1]
                    tried = [floor[index] if index in floor and tried[index] < unwrapped[index] else wide for index, wide in enumerate(tried)]
                return _regrown(tried, natural, grid, width, gap), gap
        _shrink(widths, columns, floor, _excess(widths, width))
    texts = {index: [grid.headers[index], *(cells[index].text for cells in grid.rows)] for index, numeric in enumerate(grid.numeric) if not numeric}
    return names_narrowed(widths, texts, width, gap=1), 1


def _regrown(widths: list[int], natural: list[int], grid: _Grid, room: int, gap: int) -> list[int]:
    """``widths`` with the room a step freed beyond what the table lacked given back to the text
    columns below their natural width, ``grid.flexible`` first, then the one short of most."""
    grown = list(widths)
    while _excess(grown, room, gap) < 0:
        short = [index for index, numeric in enumerate(grid.numeric) if not numeric and grown[index] < natural[index]]
        if not short:
            break
        index = grid.flexible if grid.flexible in short else max(short, key=lambda index: natural[index] - grown[index])
        grown[index] += 1
    return grown


def _unbroken_width(grid: _Grid, index: int) -> int:
    """The width a numeric column needs so that its cells wrap between words only after a number's
    unit (``138888 h`` / ``53 min``, ``18.2 s``): its widest number with the words after it."""
    groups = [group for cells in grid.rows for line in cells[index].text.split("\n") for group in _NUMBER_WITH_UNIT.findall(line)]
    return max([cell_len(group) for group in groups] + [1])


def _numbers_wrapped(text: str, width: int) -> str:
    """``text`` (a numeric cell) with each line wider than ``width`` cells wrapped between its
    numbers with their units (``138888 h`` / ``53 min``), never between a number and its unit."""
    lines = []
    for line in text.split("\n"):
        current = ""
        for group in _NUMBER_WITH_UNIT.findall(line) if cell_len(line) > width else [line]:
            if current and cell_len(f"{current} {group}") > width:
                lines.append(current)
                current = group
            else:
                current = f"{current} {group}" if current else group
        lines.append(current)
    return "\n".join(lines)


#: A word and the words after it that are not numbers (a number with its unit: ``53 min``).
_NUMBER_WITH_UNIT = re.compile(r"\S+(?: [^\s\d±+-]\S*)*")


def names_narrowed(widths: list[int], names: dict[int, list[str]], room: int, gap: int = _COLUMN_GAP) -> list[int]:
    """``widths`` (each column's, in display cells, ``gap`` apart) with the name
    columns narrowed, widest first, until the table fits ``room`` cells: the last resort of every
    console table (the report's, ``report --confusion``, ``predict``'s summary), taken only
    when even one number column beside the names does not fit, so that a number is never cut.
    ``names``: the name columns by index, each with its texts (header and cells), which the
    caller then folds to the column's width (:func:`fold_long_words`); a column never gets
    narrower than its widest character cluster (2 cells for a CJK character), which never splits."""
    narrowed = list(widths)
    floors = {index: _widest_cluster(texts) for index, texts in names.items()}
    _shrink(narrowed, list(names), floors, _excess(narrowed, room, gap))
    return narrowed


def words_whole(columns: list[list[str]], room: int, gap: int = _COLUMN_GAP) -> list[int] | None:
    """The widths of a table of text columns (each given by its texts: header and cells), ``gap``
    apart, that fit ``room`` display cells with every word whole: each column as wide as its
    longest line, the widest narrowed first, none below its widest word; None when even that does
    not fit (the caller then lists the rows instead of cutting words, as ``plugins`` does)."""
    widths = [max([cell_len(line) for text in texts for line in text.split("\n")] + [1]) for texts in columns]
    floors = {index: max([cell_len(word) for text in texts for word in text.split()] + [1]) for index, texts in enumerate(columns)}
    _shrink(widths, list(floors), floors, _excess(widths, room, gap))
    return widths if _excess(widths, room, gap) <= 0 else None


def _widest_cluster(texts: list[str]) -> int:
    """The display width of the widest character cluster in ``texts`` (at least 1)."""
    widest = 1
    for text in texts:
        start = 0
        while start < len(text):
            end = _cluster_end(text, start)
            widest, start = max(widest, cell_len(text[start:end])), end
    return widest


def _shrink(widths: list[int], columns: list[int], floor: dict[int, int], excess: int) -> None:
    """Take ``excess`` cells from ``columns`` (in place), always from the widest, none below its ``floor``."""
    while excess > 0:
        candidates = [index for index in columns if widths[index] > floor[index]]
        if not candidates:
            return
        widest = max(candidates, key=lambda index: widths[index])
        widths[widest] -= 1
        excess -= 1


#: Where a word too long for its column may break (after one of these), before any other place:
#: between a path's folders first (so a file's name, ``multi.tiff``, stays whole where it fits),
#: then between the parts of a dotted option name or a key and its value, then inside a name.
_BREAKS_AFTER = ("/", ".=:,", "_-+")


def fold_long_words(text: str, width: int) -> str:
    """``text`` with every word wider than ``width`` display cells broken into lines that fit:
    after the last ``/`` that fits (``/data/v/`` / ``take1.avi``), else after the last
    ``.``/``=``... (``options.flip.`` / ``mode=double``), else after a
    ``_``/``-``, else at the width; never inside a number (``lr=0.`` / ``001`` would read as two
    numbers) unless the number alone is wider than ``width``, never inside a character's cluster (a combining mark, a ZWJ emoji sequence), and a
    wide CJK character counts two cells."""
    if width < 1:
        return text
    return "\n".join(" ".join(_fold_word(word, width) for word in line.split(" ")) for line in text.split("\n"))


#: A number inside a word (``0.25``, ``1e-05``, ``-3``, ``1,000``): a word never breaks inside one.
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?")


def _fold_word(word: str, width: int) -> str:
    pieces = []
    while cell_len(word) > width:
        fits = _clusters_within(word, width)
        inside_numbers = {end for match in _NUMBER.finditer(word) for end in range(match.start() + 1, match.end())}
        boundaries = [end for end in _cluster_ends(word, fits) if end not in inside_numbers]
        cut = boundaries[-1] if boundaries else fits
        for separators in _BREAKS_AFTER:
            breaks = [end for end in boundaries if end > fits // 3 and end < fits and word[end - 1] in separators]
            if breaks:
                cut = breaks[-1]
                break
        pieces.append(word[:cut])
        word = word[cut:]
    return "\n".join([*pieces, word])


def _clusters_within(word: str, width: int) -> int:
    """How many characters of ``word`` (at least one cluster) fit in ``width`` cells, ending
    between clusters."""
    end, cells = 0, 0
    while end < len(word):
        cluster = _cluster_end(word, end)
        size = cell_len(word[end:cluster])
        if cells + size > width and end > 0:
            break
        end, cells = cluster, cells + size
    return end


def _cluster_ends(word: str, stop: int) -> list[int]:
    """The ends of ``word``'s character clusters up to ``stop`` (places a word may break)."""
    ends = [_cluster_end(word, 0)]
    while ends[-1] < stop:
        ends.append(_cluster_end(word, ends[-1]))
    return [end for end in ends if end <= stop]


def _cluster_end(word: str, start: int) -> int:
    """The end of the character cluster at ``start``: a base character with its combining marks,
    variation selectors and ZWJ-joined successors."""
    end = start + 1
    while end < len(word) and (unicodedata.category(word[end]).startswith("M") or word[end] in "\u200d\ufe0e\ufe0f" or word[end - 1] == "\u200d"):
        end += 1
    return end


def _longest_name(grid: _Grid, index: int) -> int:
    """The display width of the longest word of a column's header and cells that is a name (a
    configuration label's word, an architecture), which the column never breaks; a grid
    variant's ``key=value`` may fold when it is longer than the room left."""
    words = [word for text in [grid.headers[index], *(cells[index].text for cells in grid.rows)] for word in text.split() if "=" not in word]
    return max([cell_len(word) for word in words] + [1])


def _natural_width(grid: _Grid, index: int, header: bool = True) -> int:
    """The width a column needs, in terminal cells (a CJK character takes two): its widest cell
    line, and (with ``header``) its header's longest word (headers wrap)."""
    lines = [line for cells in grid.rows for line in cells[index].text.split("\n")]
    header_words = (grid.headers[index].split() or [""]) if header else []
    return max([cell_len(line) for line in lines] + [cell_len(word) for word in header_words] + [1])


def _markdown_text(blocks: list[_Grid | _Notes]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, _Grid):
            parts.append(f"### {_markdown_escape(block.title)}\n\n{_markdown_table(block)}" + (f"\n\n{_markdown_escape(block.caption)}" if block.caption else ""))
        else:
            lines = "\n".join(f"- {_markdown_escape(line)}" for line in block.lines)
            parts.append(f"### {_markdown_escape(block.title)}\n\n{lines}")
    return "\n\n".join(parts)


def _markdown_table(grid: _Grid) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [
        line([_markdown_escape(header) for header in grid.headers]),
        line(["---:" if numeric else "---" for numeric in grid.numeric]),
    ]
    for cells in grid.rows:
        texts = [_markdown_escape(cell.text) for cell in cells]
        lines.append(line([f"**{text}**" if cell.bold and text else text for cell, text in zip(cells, texts)]))
    return "\n".join(lines)


def _markdown_escape(text: str) -> str:
    """``text`` read as itself in GitHub markdown: no table pipes, emphasis or raw HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


# --------------------------------------------------------------------------------------------
# CSV and JSON
# --------------------------------------------------------------------------------------------


def _csv_text(rows: list[dict]) -> str:
    if not rows:
        return ""
    names = {group: _names_across(rows, group) for group in ("sensitivity", "extra", "counters")}
    flat = [_flat_row(row, names) for row in rows]
    columns = list(flat[0])
    return "".join([_csv_record(columns), *(_csv_record([_csv_value(values[name]) for name in columns]) for values in flat)])


def _csv_record(values: list) -> str:
    """One CSV record ending in ``"\\n"``. The csv module quotes a field holding a character of
    its line terminator: written with ``"\\r\\n"`` (then given ``"\\n"``), a ``"\\r"`` inside a
    class name is quoted too, where with ``"\\n"`` it would stand bare and end the record for a
    reader."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()[:-2] + "\n"


#: The CSV's columns besides the metrics' (whatever the rows hold), and the prefixes and the
#: suffix of the columns it makes of names (``sensitivity_<class>``, ``counter_<name>``,
#: ``<metric>_std``): a further metric whose name is one of these columns or has one of these
#: prefixes or suffix gets the column ``metric_<name>`` (:func:`csv_metric_columns`).
CSV_OWN_COLUMNS = ("phase", "experiment", "label", "cv_label", "model", "baseline", "order", "data", "folds", "failed", "variant",
                   "accuracy", "accuracy_std", "avg_sensitivity", "avg_sensitivity_std", "time_s")
CSV_OWN_PREFIXES = ("sensitivity_", "counter_", "vs_", "paper_", "metric_")
_STD = "_std"


def csv_metric_columns(classes: list[str], metrics: list[str]) -> dict[tuple[str, str], str]:
    """The CSV column of each class's sensitivity (``("sensitivity", class)``: ``sensitivity_<class>``)
    and of each further metric (``("extra", name)``: its name, or ``metric_<name>`` where the name
    could be taken for one of the report's own columns, :data:`CSV_OWN_COLUMNS`,
    :data:`CSV_OWN_PREFIXES` or a ``_std`` suffix); each column's std follows it as
    ``<column>_std``. Names that would still meet (class ``a`` and ``a_std``) get ``metric_``
    once more, so that no column holds two values: the one place the CSV tells names apart."""
    taken = set(CSV_OWN_COLUMNS)
    columns: dict[tuple[str, str], str] = {}
    for group, name in [*(("sensitivity", name) for name in classes), *(("extra", name) for name in metrics)]:
        column = f"sensitivity_{name}" if group == "sensitivity" else name
        if group == "extra" and (name in CSV_OWN_COLUMNS or name.startswith(CSV_OWN_PREFIXES) or name.endswith(_STD)):
            column = f"metric_{name}"
        while column in taken or column + _STD in taken:
            column = f"metric_{column}"
        taken.update((column, column + _STD))
        columns[group, name] = column
    return columns


def _flat_row(row: dict, names: dict[str, list[str]]) -> dict[str, Any]:
    """One summary row as scalar columns, the same columns for every row; metrics stay fractions
    (their columns: :func:`csv_metric_columns`)."""
    flat: dict[str, Any] = {
        name: row[name]
        for name in ("phase", "experiment", "label", "cv_label", "model", "baseline", "order", "data", "folds", "failed")
    }
    flat["variant"] = json.dumps(row["variant"], sort_keys=True) if row["variant"] else ""
    for name in _PAPER_SCALARS:
        flat[name] = row[name]
        flat[f"{name}{_STD}"] = row.get(f"{name}{_STD}")
    if "paper" in row:
        published_row = row["paper"] or {}
        flat["paper_accuracy"] = published_row.get("accuracy")
        flat["paper_accuracy_std"] = published_row.get("accuracy_std")
        flat["paper_table"] = published_row.get("table")
    for (group, key), column in csv_metric_columns(names["sensitivity"], names["extra"]).items():
        flat[column] = row[group].get(key)
        flat[f"{column}{_STD}"] = (row.get(f"{group}{_STD}") or {}).get(key)
    flat["time_s"] = row["time_s"]
    for name in names["counters"]:
        flat[f"counter_{name}"] = row["counters"].get(name, 0)
    versus = row.get("versus_baseline") or {}
    ci95 = versus.get("ci95") or (None, None)
    flat.update(
        vs_baseline=versus.get("baseline"),
        vs_folds=versus.get("folds"),
        vs_mean_diff=versus.get("mean_diff"),
        vs_ci95_low=ci95[0],
        vs_ci95_high=ci95[1],
        vs_t=versus.get("t"),
        vs_p=versus.get("p"),
    )
    return flat


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def _json_safe(value: Any) -> Any:
    """Plain JSON: tuples as lists, and infinite or NaN floats (t of a zero-spread test) as null."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    return value
