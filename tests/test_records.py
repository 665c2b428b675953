"""Hand-edited and older ``result.json`` shapes: every report mode skips the record with one
warning naming the file, and never fails with a traceback; records round-trip through JSON."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from feph_finetune.cli import main
from feph_finetune.config.schema import SEED_MAXIMUM
from feph_finetune.results.records import MAX_ORDER, RecordShapeError, RunRecord
from feph_finetune.results.reports import summarize

from fake_store import write_fake_store

#: The record that gets spoilt: a cross-validation fold of M2 (tables, t-test, figures all read it).
TARGET = "M2-cv2-fake"
DELETE = object()


def ragged(record):
    record["metrics"]["confusion"][3] = record["metrics"]["confusion"][3][:5]


def nested(record):
    """The whole record one level down, as an older or hand-made wrapper might write it."""
    inner = dict(record)
    record.clear()
    record["result"] = inner


def array_record(record):
    return [record]


def exploratory_with_a_fold(record):
    record["phase"] = "exploratory"  # the fold (2) stays: an exploratory run has none


#: (field path, bad value or a function spoiling the record in place / returning a new one)
SPOILS = [
    ("metrics.sensitivity", [0.5] * 7),
    ("metrics.sensitivity.anger", "high"),
    ("metrics.sensitivity.fear", 57.0),
    ("counters", ["face_fallback", 2]),
    ("counters.face_fallback", "two"),
    ("counters.face_fallback", math.inf),
    ("metrics.confusion", ragged),
    ("metrics.confusion", "7x7"),
    ("metrics.confusion", [[1, 2], [3, 4]]),
    ("metrics.confusion", [[-1] * 7] * 7),
    ("metrics.confusion", [[0.5] * 7] * 7),
    ("classes", "anger,disgust,fear,happy,neutral,sad,surprise"),
    ("classes", ["anger"] * 7),
    ("classes", []),
    ("fold", "two"),
    ("fold", 2.5),
    ("fold", -1),
    ("fold", True),
    ("metrics.accuracy", math.nan),
    ("metrics.accuracy", "0.61"),
    ("metrics.accuracy", 61.0),
    ("metrics.avg_sensitivity", {"mean": 0.5}),
    ("metrics", [0.61]),
    ("metrics", "done"),
    ("experiment", DELETE),
    ("phase", DELETE),
    ("phase", ["cv"]),
    ("experiment", 2),
    ("variant", "seed=3"),
    ("order", "first"),
    ("baseline", "no"),
    ("label", 5),
    ("seed", "1234"),
    ("model", ["mobilenet"]),
    ("data", {"fingerprint": 1}),
    ("status", True),
    ("error", "boom"),
    ("error", {"message": ["boom"]}),
    ("timing", [1, 2]),
    ("timing.total_s", "12 s"),
    ("timing.total_s", -3),
    ("timing.total_s", 1e308),  # finite, but the report's time column would print 309 digits
    ("timing.finished", 1e300),
    ("timing.stages", [["head", 3]]),
    ("(whole record)", nested),
    ("(whole record)", array_record),
    ("phase", "final"),
    ("phase", exploratory_with_a_fold),
    ("fold", 1e30),
    ("fold", 10**30),
    ("fold", None),
    ("status", "maybe"),
    ("status", None),  # shown, it read "runs 0, failed 0" beside its metrics, without a word
    ("metrics.sensitivity.contempt", 0.5),
    ("metrics.sensitivity.anger", DELETE),
    ("counters.face_fallback", -2),
    ("counters.frames_skipped", -0.5),
    ("counters.frames_skipped", 0.0001),  # summed with 17 it read "17.0", a count that is not one
    ("counters.face_fallback", 2**62),
    ("metrics.f1", math.nan),
    ("metrics.f1", -math.inf),
    # integers a float cannot hold (JSON integers have no limit): every numeric field, free ones too
    ("metrics.accuracy", 10**400),
    ("order", 10**400),
    ("timing.total_s", 10**400),
    ("counters.face_fallback", 10**400),
    ("metrics.f1", 10**400),
    ("variant", {"lr": 10**400}),
    ("notes", [{"x": -(10**400)}]),
    ("seed", 2**64),
    ("metrics.confusion", lambda record: record["metrics"]["confusion"][0].__setitem__(0, 2**64)),
    ("zz", json.loads("[" * 70 + "]" * 70)),  # nested past what is read (a record is about 5 deep)
    # in type but out of the range a run writes: order is a place in the TOML, seed what the configuration accepts
    ("order", 1e20),
    ("order", -1),
    ("order", 2.5),
    ("seed", -1),
    ("seed", 2**32),
    ("seed", 7.0),
    ("notes", 5),
    ("notes", "a note"),
    ("notes", ["a note", 3]),
]


def spoil(record: dict, path: str, bad):
    if callable(bad) and bad is not DELETE:  # a function spoiling the record
        returned = bad(record)
        return record if returned is None else returned
    *parents, last = path.split(".")
    holder = record
    for key in parents:
        holder = holder[key]
    if bad is DELETE:
        del holder[last]
    else:
        holder[last] = bad
    return record


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    write_fake_store(root, experiments=["M0", "M2"])
    return root


MODES = {
    "table": [],
    "markdown": ["--format", "markdown"],
    "csv": ["--format", "csv"],
    "json": ["--format", "json"],
    "paper": ["--paper"],
    "confusion": ["--confusion", "M2"],
}


@pytest.mark.parametrize("path, bad", SPOILS, ids=[f"{path}={getattr(bad, '__name__', repr(bad))[:20]}" for path, bad in SPOILS])
def test_a_spoilt_field_skips_the_record_with_one_warning_in_every_report_mode(store, capsys, path, bad):
    target = store / TARGET / "result.json"
    good = target.read_text(encoding="utf-8")
    try:
        target.write_text(json.dumps(spoil(json.loads(good), path, bad)), encoding="utf-8")
        for mode, options in MODES.items():
            assert main(["report", str(store), *options]) == 0, mode
            captured = capsys.readouterr()
            warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
            assert len(warnings) == 1 and str(target) in warnings[0] and "skipped" in warnings[0], (mode, captured.err)
            if mode == "json":
                (m2_cv,) = [row for row in json.loads(captured.out) if row["experiment"] == "M2" and row["phase"] == "cv"]
                assert m2_cv["folds"] == 4  # the spoilt fold is left out, the others kept
    finally:
        target.write_text(good, encoding="utf-8")


def test_figures_skip_every_spoilt_record_with_one_warning_each(tmp_path, capsys):
    """All spoils at once, each in its own copy of the target (drawing the figures takes seconds)."""
    write_fake_store(tmp_path / "runs", experiments=["M0", "M2"])
    good = (tmp_path / "runs" / TARGET / "result.json").read_text(encoding="utf-8")
    spoilt = []
    for number, (path, bad) in enumerate(SPOILS):
        record = spoil(json.loads(good), path, bad)
        if isinstance(record, dict) and "id" in record:
            record["id"] = f"spoilt-{number}"
        spoilt.append(tmp_path / "runs" / f"spoilt-{number}" / "result.json")
        spoilt[-1].parent.mkdir()
        spoilt[-1].write_text(json.dumps(record), encoding="utf-8")
    assert main(["report", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert sorted(warnings) == sorted(line for line in warnings if "skipped" in line) and len(warnings) == len(SPOILS)
    for path in spoilt:
        assert sum(str(path) in line for line in warnings) == 1, path
    assert (tmp_path / "figures" / "cv_accuracy.png").is_file() and (tmp_path / "figures" / "report.md").is_file()


def test_the_warning_names_each_spoilt_field(store, capsys):
    target = store / TARGET / "result.json"
    good = target.read_text(encoding="utf-8")
    record = json.loads(good)
    record["fold"], record["counters"], record["metrics"]["accuracy"] = "two", [], math.nan
    try:
        target.write_text(json.dumps(record), encoding="utf-8")
        assert main(["report", str(store), "--format", "csv"]) == 0
        err = " ".join(capsys.readouterr().err.split())
        for problem in ("fold: expected a whole number from 0 to 9999 in the cv phase, got text", "counters: expected an object (counter name: number) or null, got an array",
                        "metrics.accuracy: expected a fraction from 0 to 1 or null, got NaN"):
            assert problem in err
    finally:
        target.write_text(good, encoding="utf-8")


def test_records_round_trip_through_json(store):
    for path in sorted(store.glob("*/result.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["notes"] = ["a field this version does not know"]
        record = RunRecord.from_json(data)
        assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
        assert without_nulls(record.to_json()) == without_nulls(data)  # nothing lost, only absent fields made null


@pytest.mark.parametrize("paper", [False, True])
def test_summary_rows_round_trip_through_json_and_are_what_reports_print(store, paper):
    from feph_finetune.results.records import SummaryRow
    from feph_finetune.results.reports import summarize, summary_rows
    from feph_finetune.results.store import RunStore

    records = RunStore(store).records()
    failed = {**records[-1], "id": "failed-run", "status": "failed", "metrics": None, "error": {"plugin": "core", "hook": "run", "type": "X", "message": "m", "traceback": ""}}
    records.append(failed)
    typed = [row for row, _ in summary_rows(records, paper)]
    assert {row.phase for row in typed} == {"exploratory", "cv"} and any(row.failures for row in typed)
    assert [row.to_json() for row in typed] == summarize(records, paper)
    for row in typed:
        data = json.loads(json.dumps(row.to_json()))
        assert SummaryRow.from_json(data) == row
        assert ("accuracy_std" in data, "versus_baseline" in data, "paper" in data) == (row.phase == "cv", row.phase == "cv", paper)


def without_nulls(value):
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    return value


def test_every_problem_of_a_record_is_collected():
    with pytest.raises(RecordShapeError) as raised:
        RunRecord.from_json({"experiment": "", "phase": "cv", "fold": "x", "metrics": {"accuracy": 2}})
    assert raised.value.problems == [
        "experiment: expected non-empty text, got text",
        "fold: expected a whole number from 0 to 9999 in the cv phase, got text",
        "metrics.accuracy: expected a fraction from 0 to 1 or null, got the number 2",
    ]


def test_a_valid_record_of_a_failed_run_reads(store):
    record = json.loads((store / TARGET / "result.json").read_text(encoding="utf-8"))
    record.update(status="failed", metrics=None, error={"plugin": "sam", "hook": "training_stages", "type": "ValueError", "message": "rho", "traceback": "..."})
    assert RunRecord.from_json(copy.deepcopy(record)).to_json()["error"] == record["error"]


def test_odd_histories_and_class_lists_that_differ_between_folds_leave_out_one_figure_each(tmp_path, capsys):
    """Each record valid alone: a fold with six classes (its own 6 x 6 matrix) is not averaged
    nor summed with the others' seven (a row of its own, said once); a ``history.json`` with a
    text epoch cannot be drawn."""
    write_fake_store(tmp_path / "runs", experiments=["M2"])
    target = tmp_path / "runs" / TARGET / "result.json"
    record = json.loads(target.read_text(encoding="utf-8"))
    record["classes"] = record["classes"][:6]
    record["metrics"]["confusion"] = [row[:6] for row in record["metrics"]["confusion"][:6]]
    del record["metrics"]["sensitivity"]["surprise"]
    target.write_text(json.dumps(record), encoding="utf-8")
    history = tmp_path / "runs" / "M2-cv3-fake" / "history.json"
    history.write_text(json.dumps([{"epoch": "1", "loss": 1.0}]), encoding="utf-8")

    assert main(["report", str(tmp_path / "runs"), "--confusion", "M2"]) == 0
    printed = capsys.readouterr()
    assert "confusion matrix of shape" not in printed.out
    assert "cv runs of one configuration whose records disagree on classes" in " ".join(printed.err.split())
    assert main(["report", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures")]) == 0
    warnings = " ".join(capsys.readouterr().err.split())
    assert f"{target}" in warnings and "no confusion figure" not in warnings
    assert f"{history}: left out of the learning curves" in warnings
    assert len(list((tmp_path / "figures").glob("learning_curves_cv_M2_*.png"))) == 2  # a figure per row: the other folds' curves too


def test_a_run_whose_metrics_the_reports_would_refuse_is_recorded_as_failed_saying_why(store):
    from feph_finetune.execution.job import _readable

    record = json.loads((store / TARGET / "result.json").read_text(encoding="utf-8"))
    record["metrics"]["accuracy"] = 61.0  # an evaluate plugin's percentage
    failed = _readable(record)
    assert failed["status"] == "failed" and failed["metrics"] is None
    assert failed["error"]["message"] == "metrics.accuracy: expected a fraction from 0 to 1 or null, got the number 61.0"
    assert RunRecord.from_json(failed).status == "failed"  # readable: the matrix reports it and retries it
    good = json.loads((store / TARGET / "result.json").read_text(encoding="utf-8"))
    assert _readable(good) == good


def test_a_fold_listing_the_classes_in_another_order_is_summed_class_by_class(store):
    from feph_finetune.results.confusion import summed_confusion
    from feph_finetune.results.store import RunStore

    runs = [record for record in RunStore(store).records() if record["experiment"] == "M2" and record["phase"] == "cv"]
    classes = runs[0]["classes"]
    expected, _ = summed_confusion(runs, classes)
    reordered = copy.deepcopy(runs)
    target = next(run for run in reordered if run["id"] == TARGET)
    target["classes"] = classes[::-1]
    target["metrics"]["confusion"] = [row[::-1] for row in target["metrics"]["confusion"][::-1]]
    assert (summed_confusion(reordered, classes)[0] == expected).all()


def _summed_by_name(runs):
    """The confusion of ``runs`` (one configuration's) as the reports sum it: over the classes
    of their row, in the row's order; ``{(true, predicted): count}``."""
    from feph_finetune.results.confusion import summed_confusion
    from feph_finetune.results.reports import configurations

    [(row, kept)] = [(row, kept) for row, kept in configurations(runs) if row["phase"] == "cv"]
    classes = list(row["sensitivity"])
    counts, folds = summed_confusion(kept, classes)
    return {(true, predicted): int(counts[i, j]) for i, true in enumerate(classes) for j, predicted in enumerate(classes)}, folds


def test_a_record_without_classes_has_its_confusion_in_the_papers_order_whatever_its_sensitivity_key_order(store):
    """Records without ``classes`` come from versions that knew FePh's seven classes only, in
    the paper's order; their sensitivity's JSON key order means nothing (a tool that writes the
    file again may reverse it), so it must not decide which row is which class."""
    from feph_finetune.results.store import RunStore

    runs = [record for record in RunStore(store).records() if record["experiment"] == "M2" and record["phase"] == "cv"]
    expected = _summed_by_name(runs)
    target = next(run for run in runs if run["id"] == TARGET)
    target["classes"] = None
    target["metrics"]["sensitivity"] = dict(reversed(target["metrics"]["sensitivity"].items()))
    runs.sort(key=lambda run: run is not target)  # first: its names would give the row its class order
    assert _summed_by_name(runs) == expected


def test_a_confusion_whose_class_order_cannot_be_told_is_left_out_with_a_warning_naming_its_file():
    """A record without ``classes`` whose sensitivity names other classes than FePh's seven: the
    order of its confusion's rows cannot be told, so its matrix is left out of the sum (its other
    metrics count) and the report's warnings name it."""
    from feph_finetune.results.reports import configuration_warnings

    def fold(fold, classes, confusion):
        return {"id": f"X-cv{fold}-0123456789", "experiment": "X", "phase": "cv", "fold": fold, "status": "done", "classes": classes,
                "metrics": {"accuracy": 0.5, "sensitivity": {"cat": 0.5, "dog": 0.5}, "confusion": confusion}}

    failed = {"id": "X-cv2-0123456789", "experiment": "X", "phase": "cv", "fold": 2, "status": "failed", "classes": None, "metrics": None}
    runs = [fold(0, ["cat", "dog"], [[3, 1], [0, 2]]), fold(1, None, [[5, 0], [0, 7]]), failed]  # failed: names no classes, joins the row
    summed, folds = _summed_by_name(runs)
    assert folds == 1 and summed == {("cat", "cat"): 3, ("cat", "dog"): 1, ("dog", "cat"): 0, ("dog", "dog"): 2}
    [warning] = configuration_warnings(runs, lambda run_id: f"out/{run_id}/result.json")
    assert warning == ("experiment X: cv confusion matrix of out/X-cv1-0123456789/result.json left out: the record lists no classes and its "
                       "sensitivity names other classes than FePh's seven, so the order of the matrix's rows cannot be told")
    [row] = summarize(runs)
    assert (row["folds"], row["failed"]) == (2, 1)  # its other metrics count


def test_order_seed_and_notes_outside_what_a_run_writes_are_named():
    record = {"experiment": "M2", "phase": "exploratory", "order": 1e20, "seed": -1, "notes": 5}
    with pytest.raises(RecordShapeError) as raised:
        RunRecord.from_json(record)
    assert raised.value.problems == [
        f"order: expected a whole number from 0 to {MAX_ORDER - 1} or null, got the number 1e+20",
        f"seed: expected a whole number from 0 to {SEED_MAXIMUM} or null, got the number -1",
        "notes: expected an array of texts or null, got the number 5",
    ]
    assert RunRecord.from_json({**record, "order": 3, "seed": SEED_MAXIMUM, "notes": ["a note"]}).to_json()["notes"] == ["a note"]


def test_values_outside_what_a_run_writes_are_named():
    """Each new kind of out-of-range value names its field and what was expected."""
    record = {"experiment": "M2", "phase": "final", "status": "maybe", "classes": ["a", "b"], "counters": {"face_fallback": -1},
              "metrics": {"sensitivity": {"a": 0.5, "c": 0.5}, "f1": math.nan}}
    with pytest.raises(RecordShapeError) as raised:
        RunRecord.from_json(record)
    assert raised.value.problems == [
        'phase: expected one of "exploratory", "cv", got "final"',
        "counters.face_fallback: expected a whole number from 0 to 1e+12 (a count) or null, got the number -1",
        'status: expected one of "done", "failed" or null, got "maybe"',
        "metrics.sensitivity: expected one value per name of classes, got no value for b; values for names not in classes: c",
        "metrics.f1: expected a finite number or null, got NaN",
    ]


@pytest.mark.parametrize("name", ["", "  "])
def test_a_metric_named_by_nothing_is_refused_as_the_reports_would_show_a_column_without_a_title(name):
    record = json.loads(json.dumps({"experiment": "M2", "phase": "cv", "fold": 1, "metrics": {"accuracy": 0.5, name: 0.3}}))
    with pytest.raises(RecordShapeError) as raised:
        RunRecord.from_json(record)
    assert raised.value.problems == [f"metrics: expected metric names that are not empty or blank, got {name!r}"]


def test_the_largest_integers_are_named_by_their_digits_and_the_field():
    record = json.loads(json.dumps({"experiment": "M2", "phase": "cv", "fold": 1, "metrics": {"accuracy": 10**400}}))
    with pytest.raises(RecordShapeError, match=r"metrics.accuracy: expected a fraction from 0 to 1 or null, got an integer of 401 digits"):
        RunRecord.from_json(record)


def deeply_nested(depth: int) -> str:
    """A record's text with a field ``zz`` of arrays ``depth`` deep (too deep for ``json.dumps``)."""
    return '{"experiment": "M2", "phase": "cv", "fold": 2, "zz": ' + "[" * depth + "]" * depth + "}"


def test_special_or_endless_or_too_deep_result_files_are_skipped_without_hanging(tmp_path):
    """A FIFO (reading waits for a writer forever), a link to /dev/zero (reading never ends) and
    nesting past Python's stack: each skipped with its warning, in a child process with a timeout,
    so that a regression fails instead of hanging the suite."""
    import os
    import subprocess
    import sys

    write_fake_store(tmp_path, experiments=["M2"])
    spoilt = {name: tmp_path / name / "result.json" for name in ("M2-cv2-fake", "M2-cv3-fake", "M2-cv4-fake")}
    for path in spoilt.values():
        path.unlink()
    os.mkfifo(spoilt["M2-cv2-fake"])
    spoilt["M2-cv3-fake"].symlink_to("/dev/zero")
    spoilt["M2-cv4-fake"].write_text(deeply_nested(100_000), encoding="utf-8")
    for options in ([], ["--format", "json"], ["--confusion", "M2"]):
        done = subprocess.run([sys.executable, "-m", "feph_finetune", "report", str(tmp_path), *options], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "1000"})  # a warning on one line
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 3, done.stderr
        for path, why in zip(spoilt.values(), ("not a regular file (a FIFO)", "not a regular file (a character device)", "nested too deeply")):
            assert sum(str(path) in line and why in line for line in warnings) == 1, (path, done.stderr)
    matrix_view = "from feph_finetune.results.store import RunStore; import sys; print(sorted(i for i in sys.argv[2:] if not RunStore(sys.argv[1]).is_done(i)))"
    done = subprocess.run([sys.executable, "-c", matrix_view, str(tmp_path), *spoilt, "M2-cv0-fake"], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == str(sorted(spoilt)), done.stderr  # what the matrix runs again


#: history.json spoils: (what, the history of fold 3 after spoiling, words of the warning)
HISTORY_SPOILS = [
    ("huge epoch", lambda history: history[0].__setitem__("epoch", 10**5), "].epoch: expected a whole number from"),
    ("vast epoch", lambda history: history[-1].__setitem__("epoch", 10**15), "].epoch: expected a whole number from"),
    ("negative epoch", lambda history: history[0].__setitem__("epoch", -5), "[0].epoch: expected a whole number from 1 (epochs increase) to 100000, got the number -5"),
    ("loss past a float", lambda history: history[0].__setitem__("loss", 10**400), "[0].loss: expected a finite number from 0, NaN or null, got an integer of 401 digits"),
    ("text accuracy", lambda history: history[1].__setitem__("val_accuracy", "0.5"), "[1].val_accuracy"),
    ("infinite loss", lambda history: history[0].__setitem__("loss", math.inf), "[0].loss: expected a finite number from 0, NaN or null, got an infinite number"),
    ("negative loss", lambda history: history[0].__setitem__("loss", -1.0), "[0].loss: expected a finite number from 0"),
    ("accuracy in percent", lambda history: history[0].__setitem__("accuracy", 65.0), "[0].accuracy: expected a fraction from 0 to 1, NaN or null, got the number 65.0"),
    ("numeric stage", lambda history: history[0].__setitem__("stage", 5), "[0].stage: expected text or null, got the number 5"),
    ("text head_features", lambda history: history[0].__setitem__("head_features", "yes"), "[0].head_features: expected true, false or null, got text"),
]


@pytest.mark.parametrize("what, change, words", HISTORY_SPOILS, ids=[spoilt[0] for spoilt in HISTORY_SPOILS])
def test_a_history_that_cannot_be_drawn_leaves_out_its_curves_with_a_warning(tmp_path, capsys, what, change, words):
    write_fake_store(tmp_path / "runs", experiments=["M2"])
    path = tmp_path / "runs" / "M2-cv3-fake" / "history.json"
    history = json.loads(path.read_text(encoding="utf-8"))
    change(history)
    path.write_text(json.dumps(history), encoding="utf-8")
    assert main(["report", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures")]) == 0
    warnings = " ".join(capsys.readouterr().err.split())
    assert f"{path}: left out of the learning curves, " in warnings and words in warnings, warnings
    assert "too long to lay out" not in warnings
    assert (tmp_path / "figures" / "learning_curves_cv_M2.png").is_file()  # the other folds' curves


def test_special_or_deep_history_and_config_files_are_left_out_without_hanging(tmp_path):
    """``--figures`` reads each run's history.json and config.json: a FIFO or /dev/zero in their
    place, or nesting past Python's stack, is left out with a warning (a child process with a
    timeout, so that a regression fails instead of hanging)."""
    import os
    import subprocess
    import sys

    write_fake_store(tmp_path / "runs", experiments=["M2"])
    runs = tmp_path / "runs"
    for name in ("M2-cv1-fake/history.json", "M2-cv2-fake/history.json", "M2-cv0-fake/config.json", "M2-cv1-fake/config.json"):
        (runs / name).unlink(missing_ok=True)
    os.mkfifo(runs / "M2-cv1-fake" / "history.json")
    (runs / "M2-cv2-fake" / "history.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    os.mkfifo(runs / "M2-cv0-fake" / "config.json")
    (runs / "M2-cv1-fake" / "config.json").symlink_to("/dev/zero")
    done = subprocess.run([sys.executable, "-m", "feph_finetune", "report", str(runs), "--figures", str(tmp_path / "figures")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "1000"})  # a warning on one line
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert any(str(runs / "M2-cv1-fake" / "history.json") in line and "FIFO" in line for line in warnings), done.stderr
    assert any(str(runs / "M2-cv2-fake" / "history.json") in line and "nested too deeply" in line for line in warnings), done.stderr
    assert (tmp_path / "figures" / "learning_curves_cv_M2.png").is_file()


@pytest.mark.parametrize("key, bad, words", [
    ("id", 5, "run.id: expected the run's id (non-empty text), got 5"),
    ("seed", -1, "run.seed: expected a whole number from 0 to"),
    ("fold", -1, "run.fold: expected a whole number from 0 to"),
    ("phase", "final", 'run.phase: expected one of "exploratory", "cv", got "final"'),
    ("label", ["x"], "run.label: expected text or null, got an array"),
])
def test_a_bundles_run_fields_are_checked_as_a_records_are(tmp_path, key, bad, words):
    from feph_finetune.errors import ProblemsError
    from feph_finetune.predict.bundle import FORMAT, FORMAT_VERSION, MANIFEST, MODEL_FILE, read_manifest

    (tmp_path / MODEL_FILE).write_bytes(b"model")
    run = {"id": "M2-cv1-fake", "experiment": "M2", "label": "FT", "phase": "cv", "fold": 1, "seed": 1}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL_FILE, "input_size": 32, "classes": ["a", "b"],
                "preprocess": [], "run": run, "config": {}}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert read_manifest(tmp_path)["run"] == run
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "run": {**run, key: bad}}), encoding="utf-8")
    with pytest.raises(ProblemsError) as raised:
        read_manifest(tmp_path)
    assert f"{tmp_path / MANIFEST} {words}" in " ".join(str(line) for line in raised.value.args), raised.value.args


def test_a_record_whose_id_is_null_is_read_as_its_folders_run_in_every_report_mode(store, capsys):
    """``"id": null`` is allowed (text or null): the id is the folder's name, never a crash."""
    target = store / TARGET / "result.json"
    good = target.read_text(encoding="utf-8")
    try:
        target.write_text(json.dumps({**json.loads(good), "id": None}), encoding="utf-8")
        for mode, options in MODES.items():
            assert main(["report", str(store), *options]) == 0, mode
            captured = capsys.readouterr()
            assert "Traceback" not in captured.err and "warning" not in captured.err, (mode, captured.err)
            if mode == "json":
                (m2_cv,) = [row for row in json.loads(captured.out) if row["experiment"] == "M2" and row["phase"] == "cv"]
                assert m2_cv["folds"] == 5  # the fold without an id is counted
        assert RunRecord.from_json({**json.loads(good), "id": None}, folder=TARGET).id == TARGET
    finally:
        target.write_text(good, encoding="utf-8")


def test_a_record_whose_id_is_empty_text_is_skipped_with_the_usual_warning(store, capsys):
    target = store / TARGET / "result.json"
    good = target.read_text(encoding="utf-8")
    try:
        target.write_text(json.dumps({**json.loads(good), "id": ""}), encoding="utf-8")
        assert main(["report", str(store), "--format", "csv"]) == 0
        warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and str(target) in warnings[0] and "id: expected non-empty text" in warnings[0], warnings
    finally:
        target.write_text(good, encoding="utf-8")


@pytest.mark.parametrize("n", [0.5, -1, True, "3"])
def test_a_plugin_counting_what_is_no_count_fails_in_its_own_hook(n):
    """``context.count`` refuses it where the plugin calls it (its hook fails, naming it), rather
    than the run's record being refused after the training."""
    from feph_finetune.api import RunContext

    context = RunContext(run_id="A-x-1", experiment="A", phase="exploratory", fold=None, seed=1, input_size=32, config={})
    with pytest.raises(ValueError, match="must be a whole number from 0"):
        context.count("frames_skipped", n)
    context.count("frames_skipped", np.int64(2))
    assert context.counters == {"frames_skipped": 2} and type(context.counters["frames_skipped"]) is int
