"""A run's final record (``result.json``) as a typed value, checked field by field when it is read.

:meth:`RunRecord.from_json` is the one place where a record's shape is checked: every reader
(``report`` in all its modes, the figures, the matrix deciding what is done, the executors) gets
records through :meth:`feph_finetune.results.store.RunStore.result`, which uses it. It collects every
problem of a record, each naming its field (``metrics.sensitivity.anger``), so a hand-edited or
older record is refused whole, with one warning naming the file, instead of failing later in
whichever report mode first touches the odd field. :meth:`RunRecord.to_json` gives the record
back as the JSON object that was read, normalised (absent known fields are null); fields this
version does not know are kept as they are, so ``from_json(to_json(r)) == r``.

The shape (written by :func:`feph_finetune.execution.job.execute_run`; metrics by the ``evaluate``
plugins, the paper's by ``paper_metrics``):

- ``experiment``: non-empty text; ``phase``: one of :data:`~feph_finetune.config.schema.PHASES`;
  ``id``: non-empty text (the run folder's name) or null (read as the folder's name); an id of a
  run's shape (``NAME-x-HASH``, ``NAME-cvK-HASH``: :data:`RUN_ID`) must agree with the record's
  ``experiment`` (NAME), ``phase`` and ``fold`` (K), as a record hand-edited to another fold
  does not (it would count one fold twice);
  ``label``, ``cv_label``, ``model``, ``data``: text or null; ``status``: ``"done"``,
  ``"failed"`` or null; ``baseline``: true/false or null; ``order`` (the experiment's place in
  its TOML): a whole number from 0 below :data:`MAX_ORDER` or null;
  ``fold``: a whole number from 0 below :data:`MAX_FOLDS` in the ``cv`` phase, null (or absent)
  in the ``exploratory`` phase; ``seed``: a whole number from 0 to
  :data:`~feph_finetune.config.schema.SEED_MAXIMUM` (what the configuration accepts) or null;
  ``variant``: an object or null; ``notes`` (absent when there is nothing to say): an array of texts;
  ``grouped``: true/false or null (absent in older records): whether the data's images formed
  groups (false: every image its own group, so frames of one video may sit on both sides of a
  split);
- ``classes``: null or an array of distinct non-empty texts;
- ``metrics``: null or an object: ``accuracy`` and ``avg_sensitivity`` fractions from 0 to 1 or
  null; ``sensitivity`` an object of class name to a fraction or null, one per name of
  ``classes`` when the record lists them; ``confusion`` null or a
  square array of arrays of counts (whole numbers from 0), one row per class of the record
  (``classes``, else the ``sensitivity`` names, else the paper's seven), in the order
  :func:`confusion_classes` gives; any other metric is
  free, but named by text that is not empty or blank (a report column's title), and a number
  among them (reported as a further metric) must be finite;
- ``error``: null or an object whose ``plugin``, ``hook``, ``type``, ``message`` and
  ``traceback`` are text or null;
- ``timing``: null or an object: ``total_s`` (up to :data:`MAX_SECONDS`), ``started``,
  ``finished`` (up to :data:`MAX_UNIX_TIME`) finite numbers from 0 or null, ``stages`` an object
  of stage name to seconds (up to :data:`MAX_SECONDS`);
- ``counters``: null or an object of counter name to a whole number from 0 to :data:`MAX_COUNT`
  (a count; ``17.0`` is read as 17).

Every number, in free fields too (``variant``, further metrics, fields this version does not
know), must be one a float can hold: JSON integers have no limit, and one past about 1.8e308
would fail the reports' arithmetic; whole numbers must fit 64 bits, confusion counts
:data:`MAX_COUNT`. Reading the file (its kind, size and nesting) is
:func:`feph_finetune.data.user_files.read_json_file`'s part.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import dataclass, field, fields
from typing import Any, Iterator

from feph_finetune.api import CLASSES
from feph_finetune.config.schema import DATASET_OPTIONS, PHASES, SEED_MAXIMUM
from feph_finetune.data.user_files import MAX_TEXT_BYTES

#: Run statuses a record may carry (null: an older record that did not say).
STATUSES = ("done", "failed")
#: Folds are numbered from 0 below the most folds a configuration may ask for (``dataset.folds``).
MAX_FOLDS = int(DATASET_OPTIONS["folds"].maximum)
#: An experiment's ``order`` is its place in a TOML file of at most :data:`MAX_TEXT_BYTES`, where
#: each experiment takes more than one byte: no matrix has this many experiments.
MAX_ORDER = MAX_TEXT_BYTES
#: A run id as :func:`feph_finetune.config.matrix.run_id` makes it: experiment, phase and fold, hash.
RUN_ID = re.compile(r"(?P<experiment>.+)-(?:x|cv(?P<fold>0|[1-9][0-9]*))-[0-9a-f]{10}")


class RecordShapeError(ValueError):
    """A record of the wrong shape; ``problems`` lists each field's problem (one line each)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def json_kind(value: Any) -> str:
    """How a JSON value's kind reads in a message: "an object", "an array", "text", "NaN"..."""
    kinds = {dict: "an object", list: "an array", str: "text", bool: "a boolean", type(None): "null"}
    if type(value) in kinds:
        return kinds[type(value)]
    if isinstance(value, int) and abs(value) >= _LARGE_INTEGER:
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, numbers.Real):
        return "NaN" if math.isnan(value) else "an infinite number" if math.isinf(value) else f"the number {value}"
    return type(value).__name__


#: Integers from this magnitude are named by their digits in messages, not written out.
_LARGE_INTEGER = 10**20
#: The largest whole number a record holds (``fold``, ``seed``, a count): a signed 64-bit integer,
#: what numpy and the C parts of Python take; JSON integers have no limit of their own.
MAX_WHOLE = 2**63 - 1
#: The largest confusion count: a trillion test images is beyond any dataset, and 49 cells summed
#: over :data:`MAX_FOLDS` folds stay within :data:`MAX_WHOLE`.
MAX_COUNT = 10**12
#: Longest run a record may say it took (seconds): about 32 years. A larger time is a hand edit,
#: and the report's time column would print its hundreds of digits.
MAX_SECONDS = 1e9
#: Latest Unix time a record may give for ``started``/``finished``: the year 2286.
MAX_UNIX_TIME = 1e10


def is_float_number(value: Any) -> bool:
    """A JSON number a float can hold: an integer past about 1.8e308 cannot (``math.isfinite``,
    numpy and the reports' arithmetic raise OverflowError on it)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_WHOLE


def json_leaves(value: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    """Each value in ``value`` (JSON) that is no object or array, with where it is
    (``name.key[index]``); walked without recursion, so that no depth a file may have raises."""
    pending = [(value, name)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, dict):
            pending.extend((child, f"{where}.{key}" if where else str(key)) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
        else:
            yield where, item


def _overflowing_numbers(value: Any, name: str, check: "_Check") -> None:
    """Name each number in ``value`` (a free field's JSON) that no float can hold, so that no
    report later fails on it."""
    for where, item in json_leaves(value, name):
        if isinstance(item, int) and not isinstance(item, bool) and not is_float_number(item):
            check.fail(where, "a number a float can hold (within about 1.8e308)", item)


def free_value_problems(value: Any, name: str = "") -> list[str]:
    """What a record refuses in the JSON ``value`` of a free field named ``name`` (``variant``,
    a field this version does not know, such as the ``configuration`` a report attaches from a
    run's ``config.json``: :mod:`feph_finetune.results.run_configurations`), one line each; so
    that what is attached to a record is refused where its file is known, not when the record is
    checked again without it."""
    check = _Check()
    _overflowing_numbers(value, name, check)
    return check.problems


class _Check:
    """Collects ``field: expected ..., got ...`` lines while fields are taken from a JSON object."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, name: str, expected: str, value: Any) -> None:
        self.problems.append(f"{name}: expected {expected}, got {json_kind(value)}")

    def text(self, data: dict, key: str, prefix: str = "", required: bool = False) -> str | None:
        value = data.get(key)
        if isinstance(value, str) and (value or not required):
            return value
        if value is None and not required:
            return None
        self.fail(prefix + key, "non-empty text" if required else "text or null", value)
        return None

    def fraction(self, value: Any, name: str) -> float | None:
        if value is None or (is_float_number(value) and math.isfinite(value) and 0 <= value <= 1):
            return value
        self.fail(name, "a fraction from 0 to 1 or null", value)
        return None

    def finite(self, value: Any, name: str, minimum: float = -math.inf, maximum: float = math.inf) -> float | None:
        if value is None or (is_float_number(value) and math.isfinite(value) and minimum <= value <= maximum):
            return value
        bounds = (f" from {minimum:g}" if minimum > -math.inf else "") + (f" to {maximum:g}" if maximum < math.inf else "")
        self.fail(name, f"a finite number{bounds} or null", value)
        return None

    def count(self, value: Any, name: str) -> float | None:
        """A counter's value: a whole number from 0 to :data:`MAX_COUNT` (``17.0`` too, as a
        float holds it); a fraction (``0.0001``) would be summed into a count that reads whole
        ("17.0") and is not."""
        if value is None or (is_float_number(value) and math.isfinite(value) and 0 <= value <= MAX_COUNT and float(value).is_integer()):
            return value
        self.fail(name, f"a whole number from 0 to {MAX_COUNT:g} (a count) or null", value)
        return None

    def whole(self, value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
        if value is None or (_is_whole(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)):
            return value
        bounds = (f" from {minimum}" if minimum is not None else "") + (f" to {maximum}" if maximum is not None else " of at most 64 bits")
        self.fail(name, f"a whole number{bounds} or null", value)
        return None

    def texts(self, data: dict, key: str) -> None:
        """An optional array of texts (``notes``): absent, null or text lines."""
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(line, str) for line in value)):
            self.fail(key, "an array of texts or null", value)

    def choice(self, data: dict, key: str, choices: tuple[str, ...], required: bool = False) -> str | None:
        value = data.get(key)
        if value in choices or (value is None and not required):
            return value
        names = ", ".join(f'"{choice}"' for choice in choices)
        expected = f"one of {names}" + ("" if required else " or null")
        if isinstance(value, str):
            self.problems.append(f'{key}: expected {expected}, got "{value}"')
        else:
            self.fail(key, expected, value)
        return None

    def mapping(self, value: Any, name: str, what: str = "an object or null") -> dict | None:
        if value is None or isinstance(value, dict):
            return value
        self.fail(name, what, value)
        return None


@dataclass
class RunError:
    """Why a run failed: the plugin and hook (``core``/``run`` for the core), the exception."""

    plugin: str | None = None
    hook: str | None = None
    type: str | None = None
    message: str | None = None
    traceback: str | None = None
    more: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, data: dict, check: _Check) -> "RunError":
        names = [item.name for item in fields(cls) if item.name != "more"]
        return cls(**{name: check.text(data, name, "error.") for name in names}, more={k: v for k, v in data.items() if k not in names})

    def to_json(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "hook": self.hook, "type": self.type, "message": self.message, "traceback": self.traceback, **self.more}


@dataclass
class Metrics:
    """A finished run's metrics; fractions, not percentages (see the module's docstring)."""

    accuracy: float | None = None
    avg_sensitivity: float | None = None
    sensitivity: dict[str, float | None] | None = None
    confusion: list[list[int]] | None = None
    more: dict[str, Any] = field(default_factory=dict)  # further metrics of other evaluate plugins

    @classmethod
    def read(cls, data: dict, check: _Check, classes: list[str] | None) -> "Metrics":
        sensitivity = check.mapping(data.get("sensitivity"), "metrics.sensitivity", "an object (class name: fraction or null) or null")
        if sensitivity is not None:
            sensitivity = {name: check.fraction(value, f"metrics.sensitivity.{name}") for name, value in sensitivity.items()}
            _same_classes(sensitivity, classes, check)
        rows = len(classes or sensitivity or CLASSES)
        known = ("accuracy", "avg_sensitivity", "sensitivity", "confusion")
        blank = [name for name in data if not name.strip()]
        if blank:  # a report column without a title
            check.problems.append(f"metrics: expected metric names that are not empty or blank, got {blank[0]!r}")
        for name, value in data.items():
            if name not in known and isinstance(value, numbers.Real) and not isinstance(value, bool):
                check.finite(value, f"metrics.{name}")
            elif name not in known:
                _overflowing_numbers(value, f"metrics.{name}", check)
        return cls(
            accuracy=check.fraction(data.get("accuracy"), "metrics.accuracy"),
            avg_sensitivity=check.fraction(data.get("avg_sensitivity"), "metrics.avg_sensitivity"),
            sensitivity=sensitivity,
            confusion=_confusion(data.get("confusion"), rows, check),
            more={key: value for key, value in data.items() if key not in known},
        )

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "avg_sensitivity": self.avg_sensitivity, "sensitivity": self.sensitivity, "confusion": self.confusion, **self.more}


def metrics_problems(metrics: dict[str, Any], classes: list[str] | None) -> list[str]:
    """What a record would refuse in ``metrics`` (a JSON object: an ``evaluate`` plugin's
    result), one line each, so that a plugin's metric is refused where the plugin returns it."""
    check = _Check()
    Metrics.read(metrics, check, None if classes is None else list(classes))
    return check.problems


def confusion_classes(record: dict[str, Any]) -> list[str] | None:
    """The classes of a record (a JSON object, as :meth:`RunRecord.to_json` gives it) in the
    order of its confusion matrix's rows and columns: its ``classes``. A record without them was
    written by a version that knew FePh's seven classes only, in the paper's order
    (:data:`~feph_finetune.api.CLASSES`): so where its sensitivity names are those seven (in any
    key order) or it has none. Where they are other names the order cannot be told: JSON keys
    carry no order (RFC 8259; tools that write JSON again reorder them), so None, and a reader
    leaves that matrix out rather than sum rows of one class into another's."""
    if record.get("classes"):
        return list(record["classes"])
    sensitivity = (record.get("metrics") or {}).get("sensitivity")
    return list(CLASSES) if not sensitivity or set(sensitivity) == set(CLASSES) else None


def class_names(record: dict[str, Any]) -> list[str]:
    """The class names a record gives: its ``classes``, else its sensitivity's names (in the
    paper's order where they are its seven: :func:`confusion_classes`; else in no order that
    means anything); empty where it names none (a failed run), which says nothing of its classes."""
    if record.get("classes"):
        return list(record["classes"])
    named = list((record.get("metrics") or {}).get("sensitivity") or {})
    return list(CLASSES) if set(named) == set(CLASSES) else named


def _same_classes(sensitivity: dict, classes: list[str] | None, check: _Check) -> None:
    """A sensitivity per class of the record: a missing or foreign name would shift the columns
    of every report that lines records up by class."""
    if classes is None:
        return
    missing, foreign = [name for name in classes if name not in sensitivity], [name for name in sensitivity if name not in classes]
    if missing or foreign:
        got = "; ".join(part for part in (missing and "no value for " + ", ".join(missing), foreign and "values for names not in classes: " + ", ".join(foreign)) if part)
        check.problems.append(f"metrics.sensitivity: expected one value per name of classes, got {got}")


def _is_count(value: Any) -> bool:
    return _is_whole(value) and 0 <= value <= MAX_COUNT


def _confusion(value: Any, rows: int, check: _Check) -> list[list[int]] | None:
    expected = f"null or {rows} arrays of {rows} counts (whole numbers from 0), one per class"
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != rows or not all(isinstance(row, list) and len(row) == rows for row in value):
        shape = f"{len(value)} arrays of {sorted({len(row) if isinstance(row, list) else 'no' for row in value}, key=str)} values" if isinstance(value, list) else json_kind(value)
        check.problems.append(f"metrics.confusion: expected {expected}, got {shape}")
        return None
    if not all(_is_count(count) for row in value for count in row):
        bad = next(count for row in value for count in row if not _is_count(count))
        check.fail("metrics.confusion", f"counts that are whole numbers from 0 to {MAX_COUNT:.0e}", bad)
        return None
    return value


@dataclass
class Timing:
    """Seconds a run took (``total_s``, per training ``stages``) and when it ran (Unix times)."""

    total_s: float | None = None
    stages: dict[str, float] | None = None
    started: float | None = None
    finished: float | None = None
    more: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, data: dict, check: _Check) -> "Timing":
        stages = check.mapping(data.get("stages"), "timing.stages")
        if stages is not None:
            stages = {name: check.finite(value, f"timing.stages.{name}", 0, MAX_SECONDS) for name, value in stages.items()}
        known = ("total_s", "stages", "started", "finished")
        return cls(
            total_s=check.finite(data.get("total_s"), "timing.total_s", 0, MAX_SECONDS), stages=stages,
            started=check.finite(data.get("started"), "timing.started", 0, MAX_UNIX_TIME),
            finished=check.finite(data.get("finished"), "timing.finished", 0, MAX_UNIX_TIME),
            more={key: value for key, value in data.items() if key not in known},
        )

    def to_json(self) -> dict[str, Any]:
        return {"total_s": self.total_s, "stages": self.stages, "started": self.started, "finished": self.finished, **self.more}


@dataclass
class RunRecord:
    """One run's ``result.json``, every field checked (see the module's docstring)."""

    experiment: str
    phase: str
    id: str | None = None
    label: str | None = None
    cv_label: str | None = None
    model: str | None = None
    baseline: bool | None = None
    order: int | None = None
    fold: int | None = None
    seed: int | None = None
    variant: dict[str, Any] | None = None
    data: str | None = None
    grouped: bool | None = None
    status: str | None = None
    classes: list[str] | None = None
    metrics: Metrics | None = None
    error: RunError | None = None
    timing: Timing | None = None
    counters: dict[str, float] | None = None
    more: dict[str, Any] = field(default_factory=dict)  # further fields: notes (checked), those this version does not know

    @classmethod
    def from_json(cls, data: Any, folder: str | None = None) -> "RunRecord":
        """The record in ``data`` (parsed JSON); :class:`RecordShapeError` listing every field's
        problem. ``folder``: the name of the run folder it was read from, the id of a record whose
        ``id`` is null (an id of empty text is a wrong shape: no folder has that name)."""
        if not isinstance(data, dict):
            raise RecordShapeError([f"expected a JSON object, got {json_kind(data)}"])
        check = _Check()
        experiment, phase = check.text(data, "experiment", required=True), check.choice(data, "phase", PHASES, required=True)
        baseline, grouped = data.get("baseline"), data.get("grouped")
        if baseline is not None and not isinstance(baseline, bool):
            check.fail("baseline", "true, false or null", baseline)
        if grouped is not None and not isinstance(grouped, bool):
            check.fail("grouped", "true, false or null", grouped)
        classes = _classes(data.get("classes"), check)
        metrics = check.mapping(data.get("metrics"), "metrics")
        error = check.mapping(data.get("error"), "error")
        timing = check.mapping(data.get("timing"), "timing")
        counters = check.mapping(data.get("counters"), "counters", "an object (counter name: number) or null")
        if counters is not None:
            counters = {name: check.count(value, f"counters.{name}") for name, value in counters.items()}
        record = cls(
            experiment=experiment or "", phase=phase or "",
            id=_id(data, check, folder),
            **{key: check.text(data, key) for key in ("label", "cv_label", "model", "data")},
            status=check.choice(data, "status", STATUSES),
            baseline=baseline if isinstance(baseline, bool) else None,
            grouped=grouped if isinstance(grouped, bool) else None,
            order=check.whole(data.get("order"), "order", 0, MAX_ORDER - 1),
            fold=_fold(data.get("fold"), phase, check),
            seed=check.whole(data.get("seed"), "seed", 0, SEED_MAXIMUM),
            variant=check.mapping(data.get("variant"), "variant"),
            classes=classes,
            metrics=None if metrics is None else Metrics.read(metrics, check, classes),
            error=None if error is None else RunError.read(error, check),
            timing=None if timing is None else Timing.read(timing, check),
            counters=counters,
            more={key: value for key, value in data.items() if key not in _FIELDS},
        )
        check.texts(data, "notes")
        _agrees_with_id(record, check)
        free = {"variant": record.variant, **record.more, "error": record.error and record.error.more, "timing": record.timing and record.timing.more}
        for name, value in free.items():
            _overflowing_numbers(value, name, check)
        if check.problems:
            raise RecordShapeError(check.problems)
        return record

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (what :meth:`from_json` reads; known fields always present)."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        for name in ("metrics", "error", "timing"):
            data[name] = None if data[name] is None else data[name].to_json()
        return {**data, **self.more}


_FIELDS = tuple(item.name for item in fields(RunRecord) if item.name != "more")


def _id(data: dict, check: _Check, folder: str | None) -> str | None:
    """A record's run id: non-empty text, or null (then ``folder``'s name, where known)."""
    value = data.get("id")
    if value is None:
        return folder
    if isinstance(value, str) and value:
        return value
    check.fail("id", "non-empty text (the run folder's name) or null", value)
    return None


def _fold(value: Any, phase: str | None, check: _Check) -> int | None:
    """The fold of a ``cv`` record (0 to :data:`MAX_FOLDS` - 1); an ``exploratory`` record has none."""
    if phase == "exploratory" and value is not None:
        check.fail("fold", "null in the exploratory phase", value)
        return None
    if phase == "cv" and not (_is_whole(value) and 0 <= value < MAX_FOLDS):
        check.fail("fold", f"a whole number from 0 to {MAX_FOLDS - 1} in the cv phase", value)
        return None
    return check.whole(value, "fold", 0)  # in an unknown phase (itself a problem): any fold from 0


def _agrees_with_id(record: RunRecord, check: _Check) -> None:
    """A problem for each of ``experiment``, ``phase``, ``fold`` that contradicts the record's id,
    where the id has a run's shape (:data:`RUN_ID`); other ids (records written by hand, tests)
    say nothing of these fields."""
    matched = RUN_ID.fullmatch(record.id or "")
    if matched is None:
        return
    phase, fold = ("exploratory", None) if matched["fold"] is None else ("cv", int(matched["fold"]))
    said = {"experiment": matched["experiment"], "phase": phase, "fold": fold}
    for name, value in said.items():
        if getattr(record, name) != value and not (name == "fold" and record.phase != phase):
            check.problems.append(f"{name}: the id {record.id!r} says {json.dumps(value, ensure_ascii=False)}, the record {json.dumps(getattr(record, name), ensure_ascii=False)}")


def _classes(value: Any, check: _Check) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(name, str) and name for name in value) and len(set(value)) == len(value):
        return value
    if isinstance(value, list):
        check.problems.append("classes: expected distinct non-empty class names, got " + ("an empty array" if not value else "repeated, empty or non-text names"))
    else:
        check.fail("classes", "an array of distinct class names or null", value)
    return None


# --- summary rows ----------------------------------------------------------------------------


@dataclass
class RunFailure:
    """One failed run of a summary row: its id and where and how it failed."""

    id: str | None
    plugin: str | None
    hook: str | None
    type: str | None
    message: str

    @classmethod
    def of(cls, record: dict[str, Any]) -> "RunFailure":
        """The failure recorded in a run's (checked) ``result.json``."""
        error = record.get("error") or {}
        return cls(record.get("id"), error.get("plugin"), error.get("hook"), error.get("type"), error.get("message") or "no error recorded")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunFailure":
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "plugin": self.plugin, "hook": self.hook, "type": self.type, "message": self.message}


@dataclass
class BaselineTest:
    """A cross-validation row's paired t-test of per-fold accuracy against the No-FT ``baseline``
    row (its short name) of the same model, on the ``folds`` both finished; ``mean_diff`` and the
    bounds of ``ci95`` are differences of fractions (None: too few folds)."""

    baseline: str
    folds: int
    mean_diff: float | None
    ci95: list[float] | None
    t: float | None
    p: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BaselineTest":
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "folds": self.folds, "mean_diff": self.mean_diff, "ci95": self.ci95, "t": self.t, "p": self.p}


@dataclass
class FoldSpread:
    """A cross-validation row's sample standard deviations over folds (None with fewer than two)."""

    accuracy: float | None
    avg_sensitivity: float | None
    sensitivity: dict[str, float | None]
    extra: dict[str, float | None]


#: The JSON keys of a summary row whose means have a ``_std`` twin in cross-validation rows.
_SPREAD_KEYS = ("accuracy", "avg_sensitivity", "sensitivity", "extra")


@dataclass
class SummaryRow:
    """One row of a report: a (phase, experiment, variant, data) configuration over its runs
    (:func:`feph_finetune.results.reports.summarize`).

    Names: ``experiment``, ``label`` (the experiment's when the TOML gives none), ``cv_label``,
    ``model``, ``baseline`` (a No-FT row), ``order`` (the experiment's place in the TOML),
    ``phase``, ``variant`` (grid values), ``data`` (the data fingerprint), ``grouped`` (False when a
    run's data had no grouping, True when every run's had, None when not recorded). Runs: ``folds`` (finished
    runs averaged), ``failed`` and ``failures``. Means over the finished runs, None where none
    finished: ``accuracy``, ``avg_sensitivity`` (fractions), ``sensitivity`` (class name ->
    fraction), ``extra`` (further scalar metrics), ``time_s`` (seconds per run); ``counters``
    (summed). Cross-validation rows only: ``spread`` and ``versus_baseline`` (None for a baseline
    row or a model without one). ``paper``: what the paper published for the configuration, only
    when the report was asked for it (``with_paper``; None for a row that is not the paper's).

    :meth:`to_json` gives the row as reports print it (``report --format json``): the spread as
    ``<mean>_std`` keys after each mean, keys in a fixed order; ``from_json(row.to_json()) == row``.
    """

    experiment: str
    label: str
    cv_label: str
    model: str
    baseline: bool
    order: float | None
    phase: str
    variant: dict[str, Any]
    data: str
    folds: int
    failed: int
    failures: list[RunFailure]
    accuracy: float | None
    avg_sensitivity: float | None
    sensitivity: dict[str, float | None]
    extra: dict[str, float | None]
    time_s: float | None
    counters: dict[str, float]
    spread: FoldSpread | None = None
    versus_baseline: BaselineTest | None = None
    paper: dict[str, Any] | None = None
    with_paper: bool = False
    grouped: bool | None = None

    @property
    def is_cv(self) -> bool:
        return self.phase == "cv"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SummaryRow":
        """The row in ``data``, as :meth:`to_json` writes it."""
        plain = {item.name: data[item.name] for item in fields(cls) if item.name in data and item.name not in ("spread", "versus_baseline", "paper", "failures")}
        versus = data.get("versus_baseline")
        return cls(
            **plain,
            failures=[RunFailure.from_json(failure) for failure in data["failures"]],
            spread=FoldSpread(**{key: data[f"{key}_std"] for key in _SPREAD_KEYS}) if "accuracy_std" in data else None,
            versus_baseline=None if versus is None else BaselineTest.from_json(versus),
            paper=data.get("paper"),
            with_paper="paper" in data,
        )

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object: the names, the runs, each mean (followed by its ``_std`` in
        cross-validation rows), ``time_s``, ``counters``, then ``versus_baseline`` (cross-validation
        rows) and ``paper`` (when asked for)."""
        data: dict[str, Any] = {
            "experiment": self.experiment, "label": self.label, "cv_label": self.cv_label, "model": self.model,
            "baseline": self.baseline, "order": self.order, "phase": self.phase, "variant": self.variant, "data": self.data,
            "grouped": self.grouped,
            "folds": self.folds, "failed": self.failed, "failures": [failure.to_json() for failure in self.failures],
        }
        for key in _SPREAD_KEYS:
            data[key] = getattr(self, key)
            if self.spread is not None:
                data[f"{key}_std"] = getattr(self.spread, key)
        data.update(time_s=self.time_s, counters=self.counters)
        if self.is_cv:
            data["versus_baseline"] = None if self.versus_baseline is None else self.versus_baseline.to_json()
        if self.with_paper:
            data["paper"] = self.paper
        return data
