"""A report row averages the runs of one configuration only, each fold once (issue 22: a setting
that does not change the result must not split or merge a configuration's runs; hand-edited
records). Runs of several configurations, or records of one that disagree on what a row shows,
are rows of their own, said in one warning per experiment; a record contradicting its id is
skipped. Results folders are written here without training: folders of planned runs with the
``config.json`` and ``environment.json`` a run writes, and a ``result.json`` each."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from feph_finetune.cli import main
from feph_finetune.printable import EscapingConsole
from feph_finetune.results import reports
from feph_finetune.results.reports import summarize
from feph_finetune.session import plan_matrix, run_matrix
from conftest import write_matrix

CLASSES = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
M2 = '[experiments.M2]\nlabel = "FT + IP"\ncv_label = "M2"\nmodel = "mobilenet"\noptimizer = "adam"\nphases = ["exploratory", "cv"]\n'


def result_of(run, accuracy: float, **changed) -> dict:
    """The ``result.json`` a finished ``run`` (a planned :class:`~feph_finetune.config.matrix.Run`) writes."""
    sensitivity = {name: accuracy for name in CLASSES}
    record = {
        "id": run.id, "experiment": run.experiment, "label": run.label, "cv_label": run.cv_label, "model": run.config.model,
        "baseline": not run.config.fine_tune, "order": run.order, "phase": run.phase, "fold": run.fold, "seed": run.seed,
        "variant": run.variant, "data": run.dataset.get("fingerprint", ""), "status": "done", "error": None, "classes": CLASSES,
        "metrics": {"accuracy": accuracy, "avg_sensitivity": accuracy, "sensitivity": sensitivity},
        "timing": {"total_s": 1.0, "stages": {}}, "counters": {},
    }
    return {**record, **changed}


def write_finished(output: Path, runs, accuracy: float, split_seed: int = 3) -> None:
    """A finished folder for each of ``runs``, as a run leaves it (less its model and predictions)."""
    for run in runs:
        folder = output / run.id
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"run": run.describe(), "config": run.config.to_json(), "dataset": run.dataset}), encoding="utf-8")
        (folder / "environment.json").write_text(json.dumps({"split_seed": split_seed}), encoding="utf-8")
        (folder / "result.json").write_text(json.dumps(result_of(run, accuracy)), encoding="utf-8")


def test_runs_of_one_experiment_under_two_configurations_are_a_row_each_and_said_once(tmp_path, synthetic_feph, capsys):
    """The same matrix run again with another learning rate into the same folder: new ids, the
    old runs kept. Each fold of the 3-fold CV is in the folder twice, once per configuration."""
    output = tmp_path / "out"
    write_finished(output, plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2)), accuracy=0.5)
    faster = write_matrix(tmp_path / "b.toml", synthetic_feph, M2 + "[experiments.M2.options.adam]\nlr = 0.01\n")
    write_finished(output, plan_matrix(faster), accuracy=0.25)

    assert main(["report", str(output), "--format", "json"]) == 0
    printed = capsys.readouterr()
    rows = json.loads(printed.out)
    assert sorted((row["phase"], row["folds"], row["accuracy"]) for row in rows) == [
        ("cv", 3, 0.25), ("cv", 3, 0.5), ("exploratory", 1, 0.25), ("exploratory", 1, 0.5)]
    assert {row["variant"]["options.adam.lr"] for row in rows if row["accuracy"] == 0.25} == {0.01}
    warning = " ".join(printed.err.split())
    assert warning.count("experiment M2:") == 1 and "cv runs of 2 configurations in these results, which differ in options.adam.lr" in warning
    assert all(f"{folder / 'result.json'}" in warning for folder in output.iterdir())

    assert main(["report", str(output)]) == 0
    assert "M2 [options.adam.lr=0.01]" in capsys.readouterr().out


def test_runs_split_with_another_seed_are_a_row_each_named_by_it(tmp_path, synthetic_feph):
    from feph_finetune.cli import one_run_each
    from feph_finetune.results.store import RunStore

    config, output = write_matrix(tmp_path / "a.toml", synthetic_feph, M2), tmp_path / "out"
    write_finished(output, plan_matrix(config), accuracy=0.5)
    write_finished(output, plan_matrix(config, overrides=["seed=4"]), accuracy=0.25, split_seed=4)
    rows = summarize(one_run_each(RunStore(output)))
    assert sorted((row["phase"], row["variant"]["split_seed"]) for row in rows) == [("cv", 3), ("cv", 4), ("exploratory", 3), ("exploratory", 4)]


def test_a_record_whose_fold_contradicts_its_id_is_skipped_naming_its_file(tmp_path, synthetic_feph, capsys):
    output = tmp_path / "out"
    runs = plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2))
    write_finished(output, runs, accuracy=0.5)
    edited = output / next(run.id for run in runs if run.fold == 0) / "result.json"
    edited.write_text(json.dumps({**json.loads(edited.read_text(encoding="utf-8")), "fold": 1}), encoding="utf-8")

    assert main(["report", str(output), "--format", "json"]) == 0
    printed = capsys.readouterr()
    assert [row["folds"] for row in json.loads(printed.out) if row["phase"] == "cv"] == [2]
    assert f"{edited}: skipped, wrong shape (fold: the id '{edited.parent.name}' says 0, the record 1)" in " ".join(printed.err.split())


def records(**changed_in_first) -> list[dict]:
    """Three cv folds of M2, none with a configuration (older records), the first changed."""
    runs = []
    for fold in range(3):
        run = {"id": f"M2-fold{fold}", "experiment": "M2", "label": "FT + IP", "cv_label": "M2", "model": "mobilenet", "baseline": False,
               "order": 0, "phase": "cv", "fold": fold, "status": "done", "classes": CLASSES,
               "metrics": {"accuracy": 0.5, "avg_sensitivity": 0.5, "sensitivity": dict.fromkeys(CLASSES, 0.5)}}
        runs.append({**run, **(changed_in_first if fold == 0 else {})})
    return runs


def test_a_fold_recorded_twice_counts_once_and_is_said():
    """Records whose ids say nothing of their fold (older ones, a copy): one fold twice; the one
    finished last counts."""
    runs = records()
    runs[0] = {**runs[0], "fold": 1, "timing": {"finished": 10.0}}
    [row] = summarize(runs)
    assert row["folds"] == 2
    [warning] = reports.configuration_warnings(runs)
    assert warning == "experiment M2: cv fold 1 recorded twice (M2-fold0, M2-fold1); the row counts M2-fold0 only"


def test_of_a_fold_recorded_twice_the_record_whose_id_names_it_counts():
    """An older id that names its fold but has no hash of a run id's shape, edited to fold 1."""
    runs = [{**run, "id": f"M2-cv{run['fold']}-old"} for run in records()]
    runs[0] = {**runs[0], "fold": 1}
    assert reports.configuration_warnings(runs)[0].endswith("the row counts M2-cv1-old only")


def test_an_exploratory_run_recorded_twice_counts_once():
    """Two exploratory records of one experiment without a configuration (older results)."""
    runs = [{**run, "phase": "exploratory", "fold": None, "id": f"M2-x-{index}"} for index, run in enumerate(records()[:2])]
    assert [row["folds"] for row in summarize(runs)] == [1]
    assert reports.configuration_warnings(runs) == ["experiment M2: exploratory run recorded twice (M2-x-0, M2-x-1); the row counts M2-x-0 only"]


@pytest.mark.parametrize("metric", ["accuracy", "avg_sensitivity", "f1"])
def test_a_metric_some_folds_lack_is_said_with_the_count_its_mean_is_over(metric):
    """A hand edit (accuracy null) or a plugin that measured some folds only: the row still
    counts 3 folds, its mean of that metric is over 2 and the warning says so, naming the run."""
    runs = [{**run, "metrics": {**run["metrics"], "f1": 0.4}} for run in records()]
    runs[1]["metrics"][metric] = None
    [row] = summarize(runs)
    shown = row["extra"]["f1"] if metric == "f1" else row[metric]
    assert row["folds"] == 3 and shown == pytest.approx(0.4 if metric == "f1" else 0.5)
    assert reports.configuration_warnings(runs) == [
        f"experiment M2: cv {metric} missing from M2-fold1; the row's {metric} is the mean of 2 of its 3 runs"]


def test_a_done_record_whose_metrics_are_null_is_counted_and_each_metric_said_missing_from_it():
    """Review h12c finding 5: left out of its row without a word (a CV mean over 2 folds shown as
    the row's, its time and counters dropped), where metrics.accuracy null was warned about."""
    runs = records()
    runs[1]["metrics"] = None
    [row] = summarize(runs)
    assert row["folds"] == 3 and row["accuracy"] == pytest.approx(0.5)
    assert reports.configuration_warnings(runs) == [
        "experiment M2: cv accuracy missing from M2-fold1; the row's accuracy is the mean of 2 of its 3 runs; "
        "cv avg_sensitivity missing from M2-fold1; the row's avg_sensitivity is the mean of 2 of its 3 runs"]


def test_a_metric_no_fold_has_or_a_class_a_fold_never_saw_is_not_warned_about():
    """A metric every run lacks is a column the row does not show; a class's sensitivity is null
    where a fold's test set had no sample of it."""
    runs = records()
    for run in runs:
        run["metrics"] = {**run["metrics"], "avg_sensitivity": None}
    runs[2]["metrics"]["sensitivity"] = {**runs[2]["metrics"]["sensitivity"], "fear": None}
    assert reports.configuration_warnings(runs) == []


@pytest.mark.parametrize("field, value", [("model", "efficientnet"), ("baseline", True), ("cv_label", "M9"), ("label", "FT + IP + HF")])
def test_folds_of_one_configuration_that_disagree_on_what_a_row_shows_are_rows_of_their_own(field, value):
    runs = records(**{field: value})
    rows = summarize(runs)
    assert sorted(row["folds"] for row in rows) == [1, 2]
    assert {str(row["variant"][field]) for row in rows} == {str(value), str(runs[1][field])}
    [warning] = reports.configuration_warnings(runs, lambda run_id: f"out/{run_id}/result.json")
    assert f"cv runs of one configuration whose records disagree on {field};" in warning and "out/M2-fold0/result.json" in warning


def test_folds_with_other_classes_are_a_row_of_their_own_not_averaged_class_by_class():
    other = ["怒り", "嫌悪", "恐れ", "喜び", "中立", "悲しみ", "驚き"]
    runs = records(classes=other, metrics={"accuracy": 0.5, "avg_sensitivity": 0.5, "sensitivity": dict.fromkeys(other, 0.5)})
    rows = summarize(runs)
    assert sorted((row["folds"], len(row["sensitivity"])) for row in rows) == [(1, 7), (2, 7)]
    [warning] = reports.configuration_warnings(runs)
    assert "whose records disagree on classes;" in warning and "M2-fold0" in warning


def test_folds_listing_one_class_list_in_another_order_are_one_row():
    runs = records(classes=CLASSES[::-1])
    assert [row["folds"] for row in summarize(runs)] == [3] and reports.configuration_warnings(runs) == []


def test_a_renamed_label_shows_in_the_matrix_report_and_in_the_records(tmp_path, synthetic_feph, capsys):
    """``label`` and ``cv_label`` are no part of a run id: the finished runs are skipped, and
    the tables show the names the configuration gives now, in the matrix and in ``report``."""
    config = write_matrix(tmp_path / "a.toml", synthetic_feph, M2)
    output = tmp_path / "out"
    write_finished(output, plan_matrix(config), accuracy=0.5)
    renamed = ["experiments.M2.label=Renamed", "experiments.M2.cv_label=R9"]

    result = run_matrix(config, output=output, executor="inline", overrides=renamed, console=EscapingConsole(quiet=True))
    assert len(result.skipped) == 4 and not result.done
    assert {(record.label, record.cv_label) for record in result.records} == {("Renamed", "R9")}
    assert main(["report", str(output), "--format", "json"]) == 0
    assert {(row["label"], row["cv_label"]) for row in json.loads(capsys.readouterr().out)} == {("Renamed", "R9")}


def test_a_renamed_label_reaches_the_runs_configuration_and_its_bundle(tmp_path, synthetic_feph):
    """An exported bundle carried the old label: only result.json took the new one; then the
    ``config`` object of config.json and bundle.json kept it, each file contradicting itself."""
    config = write_matrix(tmp_path / "a.toml", synthetic_feph, M2)
    output = tmp_path / "out"
    [run, *_] = plan_matrix(config)
    write_finished(output, [run], accuracy=0.5)
    bundle = {"format": "feph_finetune-bundle", "run": {"id": run.id, "experiment": "M2", "label": run.label}, "classes": CLASSES,
              "config": run.config.to_json()}
    (output / run.id / "bundle.json").write_text(json.dumps(bundle), encoding="utf-8")

    run_matrix(config, output=output, executor="inline", only=["M2"], phase=run.phase, overrides=["experiments.M2.label=Renamed"],
               console=EscapingConsole(quiet=True))
    recorded = json.loads((output / run.id / "config.json").read_text(encoding="utf-8"))
    renamed = {**run.config.to_json(), "label": "Renamed"}
    assert recorded["run"]["label"] == "Renamed" and recorded["config"] == renamed
    assert json.loads((output / run.id / "bundle.json").read_text(encoding="utf-8")) == {**bundle, "run": {**bundle["run"], "label": "Renamed"}, "config": renamed}


def test_the_rename_line_counts_the_runs_and_names_only_the_fields_that_changed(tmp_path, synthetic_feph):
    config = write_matrix(tmp_path / "a.toml", synthetic_feph, M2)
    output = tmp_path / "out"
    write_finished(output, plan_matrix(config), accuracy=0.5)
    printed = io.StringIO()
    run_matrix(config, output=output, executor="inline", only=["M2"], phase="exploratory", overrides=["experiments.M2.label=Renamed"],
               console=EscapingConsole(file=printed, width=400))
    assert "1 finished run takes the label the configuration gives now" in printed.getvalue(), printed.getvalue()


def test_the_rename_line_wraps_between_run_ids_never_inside_one(tmp_path, synthetic_feph):
    """With the terminal's soft wrap, 42 renamed runs made one line of 800 characters that the
    terminal broke inside ids; rich wraps it between them, at the console's width."""
    config = write_matrix(tmp_path / "a.toml", synthetic_feph, M2)
    output = tmp_path / "out"
    runs = plan_matrix(config)
    write_finished(output, runs, accuracy=0.5)
    printed = io.StringIO()
    run_matrix(config, output=output, executor="inline", overrides=["experiments.M2.label=Renamed"], console=EscapingConsole(file=printed, width=80))
    text = printed.getvalue()
    assert max(map(len, text.splitlines())) <= 80, text
    assert "(names only, not settings: not run again):" in " ".join(text.split())
    assert all(run.id in text for run in runs), text  # each whole on one line


def test_each_runs_configuration_files_are_read_once(tmp_path, synthetic_feph, capsys, monkeypatch):
    """Telling which runs are one (earlier ids) and which configuration each was made under both
    need a run's ``config.json`` and ``environment.json``: a report reads them once."""
    from feph_finetune.results import earlier_ids

    output = tmp_path / "out"
    runs = plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2))
    write_finished(output, runs, accuracy=0.5)
    read = []
    original = earlier_ids.read_json_file
    monkeypatch.setattr(earlier_ids, "read_json_file", lambda path: read.append(Path(path)) or original(path))

    assert main(["report", str(output), "--format", "json"]) == 0, capsys.readouterr().err
    assert len(json.loads(capsys.readouterr().out)) == 2  # the exploratory row and the cv row
    configuration_files = sorted(path for path in read if path.name in ("config.json", "environment.json"))
    assert configuration_files == sorted(output / run.id / name for run in runs for name in ("config.json", "environment.json"))


@pytest.mark.parametrize("file, path", [("environment.json", ["split_seed"]), ("config.json", ["dataset", "folds"]),
                                        ("config.json", ["dataset", "newkey"]), ("config.json", ["config", "options", "adam", "lr"])],
                         ids=["split_seed", "dataset.folds", "unknown key", "option"])
def test_a_number_no_float_holds_in_a_runs_settings_leaves_its_configuration_out_with_one_warning_naming_the_file(tmp_path, synthetic_feph,
                                                                                                                  capsys, file, path):
    """An integer too large for a float (``1`` and 400 zeros) passes the folder's reading but not
    the record check that the report makes again once the configuration is attached: every
    report mode exited 2 naming no file. The run is grouped as one without a readable
    config.json, and the report goes on."""
    output = tmp_path / "out"
    [run, *others] = plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2))
    write_finished(output, [run, *others], accuracy=0.5)
    spoilt = output / run.id / file
    data = json.loads(spoilt.read_text(encoding="utf-8"))
    held = data
    for key in path[:-1]:
        held = held[key]
    held[path[-1]] = 10**400
    spoilt.write_text(json.dumps(data), encoding="utf-8")

    for mode in (["--format", "json"], ["--confusion", "M2"]):
        assert main(["report", str(output), *mode]) == 0, mode
        printed = capsys.readouterr()
        warnings = [line for line in printed.err.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and warnings[0].startswith(f"warning: {spoilt}: {'.'.join(path)}: expected a number a float can hold"), printed.err
    assert main(["report", str(output), "--format", "json"]) == 0
    assert sorted((row["phase"], row["folds"]) for row in json.loads(capsys.readouterr().out)) == [("cv", 3), ("exploratory", 1)]


@pytest.mark.parametrize("name, edited", [("data", "ffffffffffff"), ("variant", {"options.adam.lr": 0.5})], ids=["data", "variant"])
def test_a_record_contradicting_its_config_json_on_variant_or_data_counts_in_its_configuration_with_a_warning(tmp_path, synthetic_feph,
                                                                                                             capsys, name, edited):
    """A fold's result.json edited to other data or a grid value: it was a row of its own, named
    like its configuration's (data) or after a grid variant that never ran, without a word. The
    run's id hashes what its config.json records, so the record is the one in error."""
    output = tmp_path / "out"
    runs = plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2))
    write_finished(output, runs, accuracy=0.5)
    spoilt = output / next(run.id for run in runs if run.fold == 1) / "result.json"
    spoilt.write_text(json.dumps({**json.loads(spoilt.read_text(encoding="utf-8")), name: edited}), encoding="utf-8")

    assert main(["report", str(output), "--format", "json"]) == 0
    printed = capsys.readouterr()
    rows = json.loads(printed.out)
    assert sorted((row["phase"], row["folds"], json.dumps(row["variant"]), row["data"]) for row in rows) == [
        ("cv", 3, "{}", runs[0].dataset["fingerprint"]), ("exploratory", 1, "{}", runs[0].dataset["fingerprint"])]
    said = " ".join(printed.err.split())
    assert said.count("warning:") == 1
    assert (f"warning: experiment M2: cv {spoilt} records {name} {json.dumps(edited)}, its config.json "
            f"{json.dumps(runs[0].variant if name == 'variant' else runs[0].dataset['fingerprint'])} (what its run id hashes); "
            "counted as config.json says") in said


@pytest.mark.parametrize("file, edit, named", [
    ("config.json", lambda text: text.replace('"batch_size": 32', '"batch_size": 1e400'), "config.batch_size: expected a finite number"),
    ("config.json", lambda text: text.replace('"batch_size": 32', '"batch_size": NaN'), "config.batch_size: expected a finite number"),
    ("config.json", lambda text: text.replace('"batch_size": 32', '"batch_size": 1' + "0" * 400 + ".5"), "config.batch_size: expected a finite number"),
    ("config.json", lambda text: text.replace('"batch_size": 32', '"batch_size": "32"'), "config.batch_size: expected"),
    ("config.json", lambda text: text.replace('"batch_size": 32', '"batch_size": -4'), "config.batch_size:"),
    ("config.json", lambda text: text.replace('"epochs": ', '"epochs": 1e400, "was": ', 1), "config.options.adam.epochs: expected a finite number"),
    ("config.json", lambda text: text.replace('"epochs": ', '"epochs": "many", "was": ', 1), "config.options.adam.epochs: expected"),
    ("config.json", lambda text: text.replace('"test_fraction": ', '"test_fraction": 7, "was": ', 1), "dataset.test_fraction:"),
    ("environment.json", lambda text: text.replace('"split_seed": 3', '"split_seed": 1e400'), "split_seed: expected a finite number"),
    ("environment.json", lambda text: text.replace('"split_seed": 3', '"split_seed": 3.5'), "split_seed: expected"),
], ids=["inf", "nan", "long-decimal", "text", "negative", "plugin-option-inf", "plugin-option-text", "dataset-range", "seed-inf", "seed-fraction"])
def test_a_value_no_run_writes_leaves_the_runs_configuration_out_with_one_warning_naming_file_and_key(tmp_path, synthetic_feph, capsys, file, edit, named):
    """Issue h11 #11: a hand edit no run could have written (json reads 1e400 and a 400-digit
    decimal as inf) was merged into the row without a word, or made a row of its own
    (``M2 [options.adam.epochs=inf]``); like an integer too large for a float, the run's
    configuration is left out, with one warning naming the file and the key."""
    output = tmp_path / "out"
    runs = plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2 + "batch_size = 32\n"))
    write_finished(output, runs, accuracy=0.5)
    edited = output / next(run.id for run in runs if run.fold == 1) / file
    text = edited.read_text(encoding="utf-8")
    edited.write_text(edit(text), encoding="utf-8")
    assert edited.read_text(encoding="utf-8") != text

    assert main(["report", str(output), "--format", "json"]) == 0
    printed = capsys.readouterr()
    warning = " ".join(printed.err.split())
    assert warning.count(f"{edited}:") == 1 and f"{edited}: {named}" in warning
    assert "the run's configuration cannot be told" in warning
    assert sorted((row["phase"], row["folds"], row["variant"]) for row in json.loads(printed.out)) == [("cv", 3, {}), ("exploratory", 1, {})]


def _edited(key: str, value):
    """A config.json edit: ``value`` set at the dotted ``key`` (the whole file for "")."""
    def edit(text: str) -> str:
        if not key:
            return value if isinstance(value, str) else json.dumps(value)
        data = json.loads(text)
        *tables, last = key.split(".")
        place = data
        for name in tables:
            place = place[name]
        place[last] = value
        return json.dumps(data)
    return edit


@pytest.mark.parametrize("edit, named", [
    (_edited("config.options.mobilenet", "x"), "config.json: config.options.mobilenet: expected an object, got text"),
    (_edited("config.options", [1]), "config.json: config.options: expected an object, got an array"),
    (_edited("config", [1]), "config.json: config: expected an object, got an array"),
    (_edited("run", [1]), "config.json: run: expected an object, got an array"),
    (_edited("dataset", "FePh"), "config.json: dataset: expected an object, got text"),
    (_edited("", [1, 2]), "its config.json is not a JSON object"),
    (_edited("", "{not json"), "its config.json is unreadable (it is not valid JSON"),
], ids=["plugin-options-text", "options-array", "config-array", "run-array", "dataset-text", "file-array", "file-not-json"])
def test_a_config_json_table_of_another_type_leaves_the_runs_configuration_out_with_one_warning(tmp_path, synthetic_feph, capsys, edit, named):
    """Review h12c finding 12: merged into the row without a word (its settings read as none),
    where a wrong-type value inside a table is warned about."""
    output = tmp_path / "out"
    runs = plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2))
    write_finished(output, runs, accuracy=0.5)
    edited = output / next(run.id for run in runs if run.fold == 1) / "config.json"
    edited.write_text(edit(edited.read_text(encoding="utf-8")), encoding="utf-8")

    assert main(["report", str(output), "--format", "json"]) == 0
    printed = capsys.readouterr()
    warning = " ".join(printed.err.split())
    assert warning.count("warning:") == 1 and str(edited.parent) in warning and named in warning, warning
    assert "the run's configuration cannot be told" in warning
    assert sorted((row["phase"], row["folds"], row["variant"]) for row in json.loads(printed.out)) == [("cv", 3, {}), ("exploratory", 1, {})]


def test_a_copy_of_a_run_folder_is_counted_once_and_called_a_copy(tmp_path, synthetic_feph, capsys):
    """Review h12c finding 14: ``cp -r RUN RUN.bak`` with the copy's record id null (so that it is
    not skipped as recording another folder's id) was explained as "the same run ... under an
    earlier id (run ids now ignore how a setting is spelled ...)", a rule change that did not happen."""
    output = tmp_path / "out"
    runs = plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2))
    write_finished(output, runs, accuracy=0.5)
    original = output / next(run.id for run in runs if run.fold == 1)
    copy = original.with_name(original.name + ".bak")
    shutil.copytree(original, copy)
    record = json.loads((copy / "result.json").read_text(encoding="utf-8"))
    (copy / "result.json").write_text(json.dumps({**record, "id": None}), encoding="utf-8")  # its id is then its folder's name

    assert main(["report", str(output), "--format", "json"]) == 0
    printed = capsys.readouterr()
    warning = " ".join(printed.err.split())
    assert warning.count("warning:") == 1, warning
    assert f"warning: {copy}: a copy of run {original.name}, whose folder is {original} (the same run id inside a folder of another name); " \
           f"the report counts the run once, from {original.name}" in warning, warning
    assert "earlier id" not in warning
    assert sorted((row["phase"], row["folds"]) for row in json.loads(printed.out)) == [("cv", 3), ("exploratory", 1)]


def test_a_record_whose_model_contradicts_its_config_json_is_counted_as_config_json_says(tmp_path, synthetic_feph, capsys):
    """Issue h11 #11: the model is what a run id hashes, as ``variant`` and ``data`` are; a
    result.json saying otherwise was a row of its own."""
    output = tmp_path / "out"
    runs = plan_matrix(write_matrix(tmp_path / "a.toml", synthetic_feph, M2))
    write_finished(output, runs, accuracy=0.5)
    edited = output / next(run.id for run in runs if run.fold == 1) / "result.json"
    edited.write_text(json.dumps({**json.loads(edited.read_text(encoding="utf-8")), "model": "efficientnet"}), encoding="utf-8")

    assert main(["report", str(output), "--format", "json"]) == 0
    printed = capsys.readouterr()
    assert sorted((row["phase"], row["folds"], row["model"]) for row in json.loads(printed.out)) == [("cv", 3, "mobilenet"), ("exploratory", 1, "mobilenet")]
    assert (f'{edited} records model "efficientnet", its config.json "mobilenet" (what its run id hashes); counted as config.json says'
            in " ".join(printed.err.split()))
