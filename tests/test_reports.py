"""The reports: aggregation of run records (Tables 4 and 5) and the four output formats."""

import csv
import io
import unicodedata
import json
import math
import random

import numpy as np
import pytest
from rich.console import Console

from feph_finetune.results.reports import FORMATS, render, summarize
from feph_finetune.results.stats import paired_t

CLASSES = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
FOLDS = 5

# Exploratory accuracies chosen so that each backbone has a distinct best (bold per section).
EXPLORATORY_ACCURACY = {"M0": 0.520, "FT": 0.654, "M2": 0.670, "E0": 0.535, "E2": 0.665}


def make_run(experiment, phase, *, model, order, accuracy, rng, fold=None, baseline=False, label="",
             cv_label="", variant=None, extra=None, counters=None, total_s=10.0):
    sensitivity = {name: float(value) for name, value in zip(CLASSES, rng.uniform(0.05, 0.95, len(CLASSES)))}
    metrics = {
        "accuracy": accuracy,
        "avg_sensitivity": float(np.mean(list(sensitivity.values()))),
        "sensitivity": sensitivity,
        "confusion": [[1] * 7 for _ in range(7)],
        **(extra or {}),
    }
    parts = [experiment, phase, *([] if fold is None else [f"f{fold}"]), *map(str, (variant or {}).values())]
    return {
        "id": "-".join(parts),
        "experiment": experiment, "label": label, "cv_label": cv_label, "model": model,
        "baseline": baseline, "order": order, "phase": phase, "fold": fold, "seed": 1234,
        "variant": variant or {}, "status": "done", "error": None, "metrics": metrics,
        "classes": CLASSES, "timing": {"total_s": total_s, "stages": {}}, "counters": counters or {},
    }


def failed_run(experiment, phase, *, model, order, fold=None, label=""):
    run_id = "-".join([experiment, phase, *([] if fold is None else [f"f{fold}"]), "failed"])
    return {
        "id": run_id, "experiment": experiment, "label": label,
        "cv_label": "", "model": model, "baseline": False, "order": order, "phase": phase,
        "fold": fold, "seed": 1234, "variant": {}, "status": "failed", "metrics": None,
        "error": {"plugin": "flip", "hook": "augment", "type": "ValueError", "message": "images must be uint8"},
        "classes": CLASSES, "timing": {"total_s": 1.0, "stages": {}}, "counters": {},
    }


EXPERIMENTS = {  # experiment: (model, order, label, cv_label, baseline)
    "M0": ("mobilenet", 0, "No-FT", "M0", True),
    "FT": ("mobilenet", 1, "FT", "", False),
    "M2": ("mobilenet", 2, "FT-SGD + IP + HF", "M2", False),
    "E0": ("efficientnet", 3, "No-FT", "E0", True),
    "E2": ("efficientnet", 4, "FT + SAM + HF", "E2", False),
    "X1": ("mobilenet", 5, "FT-SGD + broken flip", "", False),
}


def run_of(experiment, phase, rng, **overrides):
    model, order, label, cv_label, baseline = EXPERIMENTS[experiment]
    fields = dict(model=model, order=order, label=label, cv_label=cv_label, baseline=baseline, rng=rng)
    fields.update(overrides)
    if experiment == "E2":
        fields.setdefault("extra", {"kappa": float(rng.uniform(0.2, 0.6))})
    return make_run(experiment, phase, **fields)


@pytest.fixture
def records():
    rng = np.random.default_rng(7)
    runs = [
        run_of("M0", "exploratory", rng, accuracy=EXPLORATORY_ACCURACY["M0"], counters={"face_fallback": 3}),
        run_of("FT", "exploratory", rng, accuracy=0.657, variant={"options.adam.lr": 0.001}),
        run_of("FT", "exploratory", rng, accuracy=EXPLORATORY_ACCURACY["FT"], variant={"options.adam.lr": 0.0001}),
        run_of("M2", "exploratory", rng, accuracy=EXPLORATORY_ACCURACY["M2"], counters={"face_fallback": 2}),
        run_of("E0", "exploratory", rng, accuracy=EXPLORATORY_ACCURACY["E0"]),
        run_of("E2", "exploratory", rng, accuracy=EXPLORATORY_ACCURACY["E2"], total_s=25.0),
        failed_run("X1", "exploratory", model="mobilenet", order=5, label="FT-SGD + broken flip"),
    ]
    for experiment, centre in (("M0", 0.44), ("M2", 0.62), ("E0", 0.46), ("E2", 0.63)):
        for fold in range(FOLDS):
            if experiment == "M2" and fold == 2:
                runs.append(failed_run("M2", "cv", model="mobilenet", order=2, fold=fold, label="FT-SGD + IP + HF"))
                continue
            runs.append(run_of(experiment, "cv", rng, accuracy=float(centre + rng.normal(0, 0.04)), fold=fold,
                               counters={"face_fallback": fold}, total_s=10.0 + fold))
    random.Random(3).shuffle(runs)  # the store promises no order
    return runs


def row_of(rows, phase, experiment, variant=None):
    matches = [r for r in rows if r["phase"] == phase and r["experiment"] == experiment
               and r["variant"] == (variant or {})]
    assert len(matches) == 1
    return matches[0]


def done(records, phase, experiment):
    return sorted((r for r in records if r["phase"] == phase and r["experiment"] == experiment
                   and r["status"] == "done"), key=lambda r: r["fold"] if r["fold"] is not None else -1)


def rendered(records, fmt, paper=False, **console_options):
    buffer = io.StringIO()
    render(records, fmt, Console(file=buffer, width=200, **console_options), paper=paper)
    return buffer.getvalue()


# --- summarize -------------------------------------------------------------------------------


def test_one_row_per_phase_experiment_variant_in_report_order(records):
    keys = [(r["phase"], r["experiment"], r["variant"]) for r in summarize(records)]
    assert keys == [
        ("exploratory", "M0", {}),
        ("exploratory", "FT", {"options.adam.lr": 0.0001}),
        ("exploratory", "FT", {"options.adam.lr": 0.001}),
        ("exploratory", "M2", {}),
        ("exploratory", "E0", {}),
        ("exploratory", "E2", {}),
        ("exploratory", "X1", {}),
        ("cv", "M0", {}),
        ("cv", "M2", {}),
        ("cv", "E0", {}),
        ("cv", "E2", {}),
    ]


def test_cv_rows_hold_fold_means_and_sample_stds(records):
    rows = summarize(records)
    for experiment in ("M0", "E2"):
        runs = done(records, "cv", experiment)
        row = row_of(rows, "cv", experiment)
        accuracy = np.array([r["metrics"]["accuracy"] for r in runs])
        average = np.array([r["metrics"]["avg_sensitivity"] for r in runs])
        assert row["folds"] == FOLDS and row["failed"] == 0
        assert row["accuracy"] == pytest.approx(accuracy.mean())
        assert row["accuracy_std"] == pytest.approx(accuracy.std(ddof=1))
        assert row["avg_sensitivity"] == pytest.approx(average.mean())
        assert row["avg_sensitivity_std"] == pytest.approx(average.std(ddof=1))
        for name in CLASSES:
            per_fold = np.array([r["metrics"]["sensitivity"][name] for r in runs])
            assert row["sensitivity"][name] == pytest.approx(per_fold.mean())
            assert row["sensitivity_std"][name] == pytest.approx(per_fold.std(ddof=1))


def test_exploratory_rows_hold_the_single_run_without_stds(records):
    row = row_of(summarize(records), "exploratory", "M2")
    (run,) = done(records, "exploratory", "M2")
    assert row["accuracy"] == pytest.approx(EXPLORATORY_ACCURACY["M2"])
    assert row["sensitivity"] == pytest.approx(run["metrics"]["sensitivity"])
    assert row["label"] == "FT-SGD + IP + HF" and row["cv_label"] == "M2" and row["model"] == "mobilenet"
    assert "accuracy_std" not in row and "versus_baseline" not in row


def test_failed_fold_is_reported_and_left_out_of_the_means(records):
    row = row_of(summarize(records), "cv", "M2")
    accuracies = [r["metrics"]["accuracy"] for r in done(records, "cv", "M2")]
    assert row["folds"] == FOLDS - 1 and row["failed"] == 1
    assert row["accuracy"] == pytest.approx(np.mean(accuracies))
    (failure,) = row["failures"]
    assert failure["id"] == "M2-cv-f2-failed"
    assert (failure["plugin"], failure["hook"], failure["message"]) == ("flip", "augment", "images must be uint8")


def test_experiment_without_a_finished_run_keeps_metrics_none(records):
    row = row_of(summarize(records), "exploratory", "X1")
    assert row["folds"] == 0 and row["failed"] == 1
    assert row["accuracy"] is None and row["avg_sensitivity"] is None and row["time_s"] is None
    assert all(value is None for value in row["sensitivity"].values())


def test_paired_comparison_uses_the_same_models_baseline_on_common_folds(records):
    rows = summarize(records)
    for experiment, baseline in (("M2", "M0"), ("E2", "E0")):
        ours = {r["fold"]: r["metrics"]["accuracy"] for r in done(records, "cv", experiment)}
        theirs = {r["fold"]: r["metrics"]["accuracy"] for r in done(records, "cv", baseline)}
        folds = sorted(set(ours) & set(theirs))
        differences = np.array([ours[f] - theirs[f] for f in folds])
        versus = row_of(rows, "cv", experiment)["versus_baseline"]
        assert versus["baseline"] == baseline
        assert versus["folds"] == len(folds) == (4 if experiment == "M2" else 5)
        assert versus["mean_diff"] == pytest.approx(differences.mean())
        t = differences.mean() / (differences.std(ddof=1) / math.sqrt(len(folds)))
        assert versus["t"] == pytest.approx(t)
        assert versus["p"] == pytest.approx(paired_t(differences)["p"])
        low, high = versus["ci95"]
        assert low < differences.mean() < high
    assert row_of(rows, "cv", "M0")["versus_baseline"] is None


def test_no_comparison_for_a_model_without_baseline(records):
    without_e0 = [r for r in records if r["experiment"] != "E0"]
    assert row_of(summarize(without_e0), "cv", "E2")["versus_baseline"] is None


def test_third_party_metric_gets_mean_and_std(records):
    row = row_of(summarize(records), "cv", "E2")
    kappa = np.array([r["metrics"]["kappa"] for r in done(records, "cv", "E2")])
    assert row["extra"]["kappa"] == pytest.approx(kappa.mean())
    assert row["extra_std"]["kappa"] == pytest.approx(kappa.std(ddof=1))
    assert "confusion" not in row["extra"]
    assert row_of(summarize(records), "cv", "M2")["extra"] == {}


def test_time_and_counters_are_aggregated(records):
    row = row_of(summarize(records), "cv", "E0")
    runs = done(records, "cv", "E0")
    assert row["time_s"] == pytest.approx(np.mean([r["timing"]["total_s"] for r in runs]))
    assert row["counters"] == {"face_fallback": sum(r["counters"]["face_fallback"] for r in runs)}


def test_single_fold_has_no_std(records):
    one_fold = [r for r in records if not (r["phase"] == "cv" and r["experiment"] == "E0" and r["fold"] != 0)]
    row = row_of(summarize(one_fold), "cv", "E0")
    assert row["folds"] == 1 and row["accuracy_std"] is None
    assert all(value is None for value in row["sensitivity_std"].values())


def test_record_without_phase_is_refused_with_its_id():
    with pytest.raises(ValueError, match=r"run record 0 \(id broken-run\): phase: expected one of \"exploratory\", \"cv\", got null"):
        summarize([{"id": "broken-run", "experiment": "M0"}])


# --- render ----------------------------------------------------------------------------------


def test_table_shows_both_phases_comparisons_and_failures(records):
    out = rendered(records, "table")
    assert "Exploratory phase" in out and "Cross-validation phase" in out
    m2 = row_of(summarize(records), "cv", "M2")
    lines = out.splitlines()
    mean_line = next(index for index, line in enumerate(lines) if line.startswith("M2 "))
    assert f" {100 * m2['accuracy']:.1f} " in lines[mean_line]  # the std stands under its mean
    assert f" ±{100 * m2['accuracy_std']:.1f} " in lines[mean_line + 1]
    versus = m2["versus_baseline"]
    assert f"M2 vs M0: {100 * versus['mean_diff']:+.1f} points, 95% CI [{100 * versus['ci95'][0]:.1f}" in out
    assert "M2-cv-f2-failed: flip.augment: ValueError: images must be uint8" in out
    assert "FT [options.adam.lr=0.0001]" in out  # brackets are not taken for rich markup
    assert "face_fallback" in out


def test_table_bolds_the_best_accuracy_of_each_backbone(records):
    out = rendered(records, "table", force_terminal=True, color_system="standard")
    lines = out.splitlines()

    def line_with(text):
        return next(line for line in lines if text in line)

    assert "\x1b[1m67.0" in line_with("FT-SGD + IP + HF")
    assert "\x1b[1m66.5" in line_with("FT + SAM + HF")
    runner_up = line_with("FT [options.adam.lr=0.001]")
    assert "65.7" in runner_up and "\x1b[1m65.7" not in runner_up


def test_empty_phase_is_omitted(records):
    out = rendered([r for r in records if r["phase"] == "exploratory"], "table")
    assert "Exploratory phase" in out and "Cross-validation" not in out and "vs M0" not in out
    assert "No runs recorded." in rendered([], "table")


def markdown_tables(text):
    """{title: [[cell, ...], ...]} of the markdown output, header row included, separator dropped."""
    tables, title = {}, None
    for line in text.splitlines():
        if line.startswith("### "):
            title = line[4:]
        elif line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            if not all(set(cell) <= set("-:") for cell in cells):
                tables.setdefault(title, []).append(cells)
    return tables


def test_markdown_tables_are_well_formed_and_bold_the_best(records):
    tables = markdown_tables(rendered(records, "markdown"))
    exploratory = next(rows for title, rows in tables.items() if title.startswith("Exploratory"))
    header, body = exploratory[0], exploratory[1:]
    assert all(len(row) == len(header) for row in body)
    accuracy = header.index("acc.")
    bold = [row[1] for row in body if row[accuracy].startswith("**")]
    assert bold == ["FT-SGD + IP + HF", "FT + SAM + HF"]
    cv = next(rows for title, rows in tables.items() if title.startswith("Cross-validation"))
    assert [row[0] for row in cv[1:]] == ["M0", "M2", "E0", "E2"]
    assert cv[0][1] == "acc. (std)" and all(len(row) == len(cv[0]) for row in cv)


def test_csv_has_one_row_per_summary_row_with_std_columns(records):
    rows = summarize(records)
    table = list(csv.DictReader(io.StringIO(rendered(records, "csv"))))
    assert len(table) == len(rows)
    for columns in ("accuracy_std", "sensitivity_anger", "sensitivity_surprise_std", "kappa", "kappa_std",
                    "counter_face_fallback", "vs_p", "time_s"):
        assert columns in table[0]
    for row, line in zip(rows, table):
        assert (line["phase"], line["experiment"]) == (row["phase"], row["experiment"])
        if row["accuracy"] is not None:
            assert float(line["accuracy"]) == pytest.approx(row["accuracy"])
            assert float(line["sensitivity_fear"]) == pytest.approx(row["sensitivity"]["fear"])
        if row["phase"] == "cv":
            assert float(line["accuracy_std"]) == pytest.approx(row["accuracy_std"])
        else:
            assert line["accuracy_std"] == ""


def test_json_is_the_summary_and_strictly_valid(records):
    # Equal accuracies on every fold: a zero-spread test whose t is infinite.
    for record in records:
        if record["phase"] == "cv" and record["experiment"] in ("E0", "E2") and record["status"] == "done":
            record["metrics"]["accuracy"] = 0.5 if record["experiment"] == "E0" else 0.6

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    parsed = json.loads(rendered(records, "json"), parse_constant=refuse)
    assert isinstance(parsed, list) and len(parsed) == len(summarize(records))
    for row in parsed:
        for key in ("experiment", "phase", "folds", "accuracy", "avg_sensitivity", "sensitivity"):
            assert key in row
    e2 = next(row for row in parsed if row["phase"] == "cv" and row["experiment"] == "E2")
    assert {"accuracy_std", "avg_sensitivity_std", "sensitivity_std"} <= set(e2)
    assert e2["versus_baseline"]["p"] == 0.0 and e2["versus_baseline"]["t"] is None


def test_unknown_format_is_refused():
    assert "table" in FORMATS
    with pytest.raises(ValueError, match="'pdf'.*table"):
        render([], "pdf", Console(file=io.StringIO()))


# --- 80 columns --------------------------------------------------------------------------------


@pytest.mark.parametrize("paper", [False, True])
def test_table_fits_80_columns_without_cutting_a_cell(records, paper):
    buffer = io.StringIO()
    render(records, "table", Console(file=buffer, width=80), paper=paper)
    out = buffer.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    for row in summarize(records):  # every mean is printed whole, wrapped names included
        if row["accuracy"] is not None:
            assert f"{100 * row['accuracy']:.1f}" in out
        for value in row["sensitivity"].values():
            if value is not None:
                assert f"{100 * value:.1f}" in out
    assert "FT [options.adam.lr=0.0001]" in out.replace("\n", "").replace(" ", "").replace("FT[", "FT [")
    assert "ang anger" in out and "kappa" in out  # the legend of the abbreviations; further metrics


# --- the paper's published values ----------------------------------------------------------------

# (phase, experiment, variant) -> the paper's accuracy (%) and std, as in SPEC section 1.
PUBLISHED = {
    ("exploratory", "M0", None): (52.0, None),
    ("exploratory", "FT", (("options.adam.lr", 0.001),)): (65.4, None),
    ("exploratory", "FT", (("options.adam.lr", 0.0001),)): (65.4, None),
    ("exploratory", "M2", None): (67.0, None),
    ("exploratory", "E0", None): (53.5, None),
    ("exploratory", "E2", None): (66.5, None),
    ("cv", "M0", None): (44.1, 4.7),
    ("cv", "M2", None): (62.4, 3.2),
    ("cv", "E0", None): (45.7, 4.7),
    ("cv", "E2", None): (62.8, 4.7),
}


def published_of(row):
    return PUBLISHED.get((row["phase"], row["experiment"], tuple(row["variant"].items()) or None))


def test_paper_values_join_the_matching_rows_only(records):
    rows = summarize(records, paper=True)
    for row in rows:
        expected = published_of(row)
        if expected is None:
            assert row["paper"] is None, row["experiment"]  # X1 "FT-SGD + broken flip"
        else:
            assert row["paper"]["accuracy"] == pytest.approx(expected[0] / 100)
            assert row["paper"]["accuracy_std"] == (None if expected[1] is None else pytest.approx(expected[1] / 100))
            assert row["paper"]["table"] == ("Table 5" if row["phase"] == "cv" else "Table 4")
    assert sum(row["paper"] is None for row in rows) == 1
    assert all("paper" not in row for row in summarize(records))


def test_a_label_of_the_other_backbone_does_not_match(records):
    for record in records:
        if record["experiment"] == "E2":
            record["label"], record["cv_label"] = "FT-SGD + IP + HF", "M2"  # MobileNet's names on EfficientNet
    rows = summarize(records, paper=True)
    assert row_of(rows, "exploratory", "E2")["paper"] is None and row_of(rows, "cv", "E2")["paper"] is None


def test_paper_values_in_every_format(records):
    rows = summarize(records, paper=True)
    parsed = json.loads(rendered(records, "json", paper=True))
    assert [row["paper"] for row in parsed] == [row["paper"] for row in rows]

    table = list(csv.DictReader(io.StringIO(rendered(records, "csv", paper=True))))
    for row, line in zip(rows, table):
        expected = published_of(row)
        if expected is None:
            assert line["paper_accuracy"] == line["paper_table"] == ""
        else:
            assert float(line["paper_accuracy"]) == pytest.approx(expected[0] / 100)
            assert line["paper_table"] == row["paper"]["table"]
        if expected is not None and expected[1] is not None:
            assert float(line["paper_accuracy_std"]) == pytest.approx(expected[1] / 100)
        else:
            assert line["paper_accuracy_std"] == ""

    tables = markdown_tables(rendered(records, "markdown", paper=True))
    exploratory = next(rows for title, rows in tables.items() if title.startswith("Exploratory"))
    column = exploratory[0].index("paper acc.")
    shown = {line[1]: line[column] for line in exploratory[1:]}
    assert shown["FT-SGD + IP + HF"] == "67.0" and shown["FT-SGD + broken flip"] == ""
    cv = next(rows for title, rows in tables.items() if title.startswith("Cross-validation"))
    column = cv[0].index("paper acc. (std)")
    assert {line[0]: line[column] for line in cv[1:]} == {"M0": "44.1 (4.7)", "M2": "62.4 (3.2)", "E0": "45.7 (4.7)", "E2": "62.8 (4.7)"}

    out = rendered(records, "table", paper=True)
    m2 = next(line for line in out.splitlines() if line.startswith("FT-SGD + IP + HF"))
    assert m2.split()[5:8] == ["M2", "67.0", "67.0"] and "paper" in out  # measured accuracy, then the paper's
    assert "paper acc." not in rendered(records, "markdown")
    assert "paper_accuracy" not in rendered(records, "csv")
    assert '"paper"' not in rendered(records, "json")
    assert not any("paper" in line.split() for line in rendered(records, "table").splitlines())  # no column header
    assert any("paper" in line.split() for line in out.splitlines())


def test_every_configuration_of_the_shipped_matrix_has_its_published_accuracy():
    from pathlib import Path

    from feph_finetune.config.reading import read_config
    from feph_finetune.config.matrix import build_matrix
    from feph_finetune.results.paper import published
    from feph_finetune.plugins import get_plugins

    matrix = build_matrix(read_config(Path(__file__).parents[1] / "experiments.toml"), get_plugins(), check_root=False)
    found = {(run.phase, run.experiment): published(run.config["model"], run.phase, run.label, run.cv_label) for run in matrix.runs}
    assert None not in found.values()
    # SPEC section 1: "M0 52.0 -> 44.1 (4.7); ... E2 66.5 -> 62.8 (4.7)", and the other exploratory rows.
    assert {key: 100 * value["accuracy"] for key, value in found.items() if key[0] == "exploratory"} == pytest.approx({
        ("exploratory", "M0"): 52.0, ("exploratory", "M-FT"): 65.4, ("exploratory", "M-FT-SGD"): 65.7,
        ("exploratory", "M-FT-SGD-CW"): 54.0, ("exploratory", "M-FT-SGD-HF"): 64.7, ("exploratory", "M-FT-SGD-IP"): 65.3,
        ("exploratory", "M1"): 63.7, ("exploratory", "M2"): 67.0, ("exploratory", "E0"): 53.5, ("exploratory", "E1"): 63.9,
        ("exploratory", "E2"): 66.5, ("exploratory", "E-FT-SGD-SAM-HF"): 63.9,
    })
    assert {key[1]: (100 * value["accuracy"], 100 * value["accuracy_std"]) for key, value in found.items() if key[0] == "cv"} == {
        "M0": pytest.approx((44.1, 4.7)), "M1": pytest.approx((51.7, 7.4)), "M2": pytest.approx((62.4, 3.2)),
        "E0": pytest.approx((45.7, 4.7)), "E1": pytest.approx((62.2, 2.4)), "E2": pytest.approx((62.8, 4.7)),
    }


def test_runs_on_different_data_are_never_averaged_and_the_report_names_the_data():
    rng = random.Random(0)
    numbers = np.random.default_rng(0)
    runs = []
    for data, accuracy in (("aaaaaaaaaaaa", 0.4), ("bbbbbbbbbbbb", 0.8)):
        for fold in range(2):
            run = make_run("M2", "cv", model="mobilenet", order=0, accuracy=accuracy, rng=numbers, fold=fold, cv_label="M2")
            run.update(id=f"{run['id']}-{data}", data=data)
            runs.append(run)
    rng.shuffle(runs)
    rows = summarize(runs)
    assert sorted((row["data"], row["accuracy"], row["folds"]) for row in rows) == [("aaaaaaaaaaaa", 0.4, 2), ("bbbbbbbbbbbb", 0.8, 2)]
    buffer = io.StringIO()
    render(runs, "markdown", Console(file=buffer, width=80))
    assert "aaaaaaaaaaaa: M2 (cv)" in buffer.getvalue() and "bbbbbbbbbbbb: M2 (cv)" in buffer.getvalue()
    flat = list(csv.DictReader(io.StringIO(_csv(runs))))
    assert sorted(row["data"] for row in flat) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]


def _csv(runs) -> str:
    buffer = io.StringIO()
    render(runs, "csv", Console(file=buffer, width=200))
    return buffer.getvalue()


def _write_results(outdir, files: dict) -> None:
    for run_id, text in files.items():
        (outdir / run_id).mkdir(parents=True)
        (outdir / run_id / "result.json").write_text(text, encoding="utf-8")


def test_unreadable_or_ill_shaped_result_files_are_skipped_with_one_warning_each(tmp_path, capsys):
    from feph_finetune.cli import main
    from feph_finetune.results.store import RunStore

    good = make_run("M2", "exploratory", model="mobilenet", order=0, accuracy=0.6, rng=np.random.default_rng(0))
    bad = {"array": "[1, 2]", "other-object": '{"a": 1}', "truncated": json.dumps(good)[:40], "metrics-list": json.dumps({**good, "metrics": [1]})}
    _write_results(tmp_path, {good["id"]: json.dumps(good), **bad})

    assert main(["report", str(tmp_path), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "M2" in captured.out and "Traceback" not in captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(bad)
    for run_id in bad:
        assert sum(str(tmp_path / run_id / "result.json") in line for line in warnings) == 1
    store = RunStore(tmp_path)
    assert store.is_done(good["id"]) and not any(store.is_done(run_id) for run_id in bad)  # so a matrix reruns them


def test_report_errors_go_to_stderr_with_exit_2(tmp_path, capsys):
    from feph_finetune.cli import main

    assert main(["report", str(tmp_path / "missing")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no such results directory" in captured.err
    _write_results(tmp_path, {"array": "[1, 2]"})
    assert main(["report", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no finished runs" in captured.err and "array" in captured.err


def test_an_ill_shaped_record_passed_to_the_reports_is_a_usage_error_not_a_traceback(capsys):
    from rich.console import Console as RichConsole

    from feph_finetune.cli import guarded

    def command(args, console):
        render([{"experiment": "M2", "phase": 3}], "table", console)

    assert guarded(command, None, RichConsole(file=io.StringIO()), RichConsole(stderr=True)) == 2
    assert "phase: expected one of \"exploratory\", \"cv\", got the number 3" in capsys.readouterr().err


#: Another class list for the same seven classes (a model trained with Japanese class names).
JAPANESE = ["怒り", "嫌悪", "恐怖", "幸福", "中立", "悲しみ", "驚き"]


def with_other_classes(records, experiment: str, names: list[str]) -> list[dict]:
    """The records, those of ``experiment`` renamed class by class to ``names``."""
    from feph_finetune.api import CLASSES

    renamed = []
    for record in records:
        record = json.loads(json.dumps(record))
        if record["experiment"] == experiment and record.get("metrics"):
            mapping = dict(zip(CLASSES, names))
            record["classes"] = names
            record["metrics"]["sensitivity"] = {mapping[name]: value for name, value in record["metrics"]["sensitivity"].items()}
        renamed.append(record)
    return renamed


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_rows_of_another_class_list_get_their_own_table_naming_their_classes(records, fmt):
    from rich.cells import cell_len

    experiment = summarize(records)[-1]["experiment"]
    other = with_other_classes(records, experiment, JAPANESE)
    buffer = io.StringIO()
    render(other, fmt, Console(file=buffer, width=80))
    text = buffer.getvalue()
    tables = [block for block in text.split("\n\n") if "acc." in block or "accuracy" in block]
    if fmt == "table":
        assert all("…" not in block and max(cell_len(line) for line in block.splitlines()) <= 80 for block in tables), text
    apart = [block for block in tables if "runs with other classes: 怒り, 嫌悪, 恐怖, 幸福, 中立, 悲しみ, 驚き" in " ".join(block.split())]
    assert len(apart) >= 1, text
    for block in tables:
        japanese, paper = sum(name in block for name in JAPANESE), sum(name in block for name in ("ang", "dis", "fea", "hap", "neu", "sad", "sur"))
        assert not (japanese and paper and block not in apart), "one table never mixes the two class lists"


@pytest.mark.parametrize("name, short", [("नमस्ते", "नमस्"), ("👩‍💻👩‍💻👩‍💻👩‍💻", "👩‍💻👩‍💻👩‍💻"), ("手語の名前", "手語の")])
def test_class_abbreviations_keep_whole_characters(name, short):
    from feph_finetune.results.reports import class_abbreviations

    assert class_abbreviations([name, "anger"])[name] == short


# --- many classes ----------------------------------------------------------------------------------

#: Twelve classes with long names, and twelve that share a long prefix.
LONG_NAMES = [f"{word}_expression_marker" for word in
              "raised furrowed puffed squinted pursed tilted nodding shaking widened lowered clenched blinking".split()]
MARKERS = [f"grammatical_marker_{index:02d}" for index in range(12)]


def records_of_classes(names: list[str], seed: int = 5) -> list[dict]:
    """An exploratory M0 and M2 and their cross-validation folds, on data of classes ``names``."""
    rng = np.random.default_rng(seed)
    runs = []
    for experiment, phase, fold in [("M0", "exploratory", None), ("M2", "exploratory", None),
                                    *((experiment, "cv", fold) for experiment in ("M0", "M2") for fold in range(3))]:
        run = run_of(experiment, phase, rng, accuracy=float(rng.uniform(0.3, 0.7)), fold=fold)
        values = rng.uniform(0.05, 0.95, len(names))
        values[0] = 1.0  # a perfect class: the widest number a column meets
        run["metrics"].update(sensitivity=dict(zip(names, map(float, values))), avg_sensitivity=float(values.mean()),
                              confusion=[[1] * len(names) for _ in names])
        run.update(classes=names, data="a8c5d1e0")  # other data than the FePh records'
        runs.append(run)
    return runs


@pytest.mark.parametrize("names", [LONG_NAMES, MARKERS], ids=["long", "prefixed"])
def test_twelve_classes_fit_80_columns_in_tables_of_one_column_per_class(names):
    from feph_finetune.results.reports import class_abbreviations

    records = records_of_classes(names)
    short = class_abbreviations(names)
    assert len(set(short.values())) == len(names)
    buffer = io.StringIO()
    render(records, "table", Console(file=buffer, width=80))
    out = buffer.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 80 and "…" not in out, out
    for phase in ("Exploratory phase", "Cross-validation phase"):
        tables = [block for block in out.split("\n\n") if block.startswith(phase)]
        assert len(tables) == 2, out  # the classes in two tables of six
        headers = [word for table in tables for lines in [table.splitlines()] for index, line in enumerate(lines)
                   if index + 1 < len(lines) and lines[index + 1].startswith("─") for word in line.split()]
        assert [word for word in headers if word in short.values()] == [short[name] for name in names], out
        assert all(f"{name}" in " ".join(" ".join(tables).split()) for name in names)  # each table's legend
    for row in summarize(records):
        assert f"{100 * row['accuracy']:.1f}" in out
        assert all(f"{100 * value:.1f}".replace("100.0", "100") in out for value in row["sensitivity"].values())
    wide = io.StringIO()
    render(records, "table", Console(file=wide, width=200))
    assert sum(block.startswith("Exploratory phase") for block in wide.getvalue().split("\n\n")) == 1  # room for one table


def table_header(block: str) -> str:
    """The header of a table printed by ``render``: a markdown table's first row, or a console
    table's lines from the one naming ``c/v`` to the rule under them."""
    lines = block.splitlines()
    if any(line.startswith("| ") for line in lines):
        return next(line for line in lines if line.startswith("| "))
    first = next(index for index, line in enumerate(lines) if "c/v" in line.split())
    rule = next(index for index, line in enumerate(lines) if line.startswith("─"))
    return "\n".join(lines[first:rule])


@pytest.mark.parametrize("paper", [False, True])
def test_the_papers_column_shows_only_beside_fephs_seven_classes(records, paper):
    """``--paper`` (and ``[report] paper = true``, which renders the same way) adds the
    published accuracy to tables of FePh's classes only; other class lists get a note instead."""
    from rich.cells import cell_len

    experiment = summarize(records)[-1]["experiment"]
    mixed = with_other_classes(records, experiment, JAPANESE)
    for fmt in ("table", "markdown"):
        buffer = io.StringIO()
        render(mixed + records_of_classes(LONG_NAMES[:4]), fmt, Console(file=buffer, width=80), paper=paper)
        text = buffer.getvalue()
        blocks = text.split("### ") if fmt == "markdown" else text.split("\n\n")
        tables = [block for block in blocks if "(paper Table 4)" in block or "(paper Table 5)" in block]
        others = [block for block in tables if "runs with other classes" in " ".join(block.split())]
        fephs = [block for block in tables if block not in others]
        assert fephs and len(others) >= 2, text
        assert all(("paper" in table_header(block)) == paper for block in fephs), text
        assert all("paper" not in table_header(block) for block in others), text
        assert all(("no paper column: the paper published results for FePh's seven classes only" in " ".join(block.split())) == paper
                   for block in others), text
        if fmt == "table":
            assert max(cell_len(line) for line in text.splitlines()) <= 80


def test_rows_whose_data_had_no_grouping_are_named_in_a_note(records):
    from feph_finetune.results.reports import UNGROUPED_TITLE, markdown_report

    ungrouped = [{**record, "grouped": False if record["experiment"] == "M2" else True} for record in records]
    rows = summarize(ungrouped)
    assert {row["experiment"]: row["grouped"] for row in rows}["M2"] is False and row_of(rows, "cv", "E2")["grouped"] is True
    title = " ".join(UNGROUPED_TITLE.split())
    for text in (rendered(ungrouped, "table"), markdown_report(rows)):
        flat = " ".join(text.replace("\\", "").replace("\n- ", "\n").split())  # markdown escapes and bullets
        assert f"{title} M2 (x), M2 (cv)" in flat, text
    everywhere = [{**record, "grouped": False} for record in records]
    assert f"{title} all rows" in " ".join(rendered(everywhere, "table").split())


def test_records_from_before_grouping_was_recorded_get_no_grouping_note(records):
    from feph_finetune.results.reports import UNGROUPED_TITLE

    assert all("grouped" not in record for record in records)
    assert all(row["grouped"] is None for row in summarize(records))
    assert UNGROUPED_TITLE.split()[0] not in rendered(records, "table")


HOSTILE_CLASSES = ["c\x1b[31mred", "tab\there", "fear", "happy", "neutral", "sad", "surprise"]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_control_characters_in_names_are_shown_escaped_and_markdown_takes_no_html(records, fmt):
    experiment = summarize(records)[-1]["experiment"]
    hostile = []
    for record in with_other_classes(records, experiment, HOSTILE_CLASSES):
        if record["experiment"] == experiment:
            record = {**record, "experiment": "line\nbreak <b>x</b> & co", "label": "line\nbreak <b>x</b> & co"}
        hostile.append(record)
    buffer = io.StringIO()
    render(hostile, fmt, Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert "\x1b" not in text and "\t" not in text, "a control character reached the output raw"
    assert "\\x1b" in text and "\\t" in text, text
    if fmt == "markdown":
        assert "<b>" not in text and "&lt;b&gt;x&lt;/b&gt; &amp; co" in text, text
        rows = [line for line in text.splitlines() if line.startswith("|")]
        assert rows and all(line.endswith("|") for line in rows), "a table row was split"
    shown = "line\\\\nbreak" if fmt == "markdown" else "line\\nbreak"  # markdown doubles the backslash
    assert shown in "".join(text.split()), text


def test_the_console_confusion_table_shows_control_characters_escaped(records):
    from feph_finetune.results.confusion import confusion_table
    from feph_finetune.results.reports import configurations

    experiment = summarize(records)[-1]["experiment"]
    hostile = with_other_classes(records, experiment, HOSTILE_CLASSES)
    chosen = [(row, runs) for row, runs in configurations(hostile) if row["experiment"] == experiment]
    buffer = io.StringIO()
    for row, runs in chosen:
        Console(file=buffer, width=80).print(confusion_table(row, runs, 80))
    text = buffer.getvalue()
    assert chosen and "\x1b" not in text and "\t" not in text and "\\x1b" in text, text


def test_printable_escapes_control_characters_only():
    from feph_finetune.printable import printable

    assert printable("c\x1b[31mred\ttab\nline\u2028sep\x7f") == "c\\x1b[31mred\\ttab\\nline\\u2028sep\\x7f"
    assert printable("怒り 👩‍💻 naïve") == "怒り 👩‍💻 naïve"  # other scripts and joined emoji stay as they are


@pytest.mark.parametrize("width", [40, 80])
def test_many_further_metrics_continue_in_further_tables_every_value_whole(width):
    rng = np.random.default_rng(11)
    extra = {f"cohen_kappa_weighted_{index}": float(rng.uniform(0.1, 0.9)) for index in range(8)}
    runs = [run_of("M2", "exploratory", rng, accuracy=0.6, extra=extra)]
    buffer = io.StringIO()
    render(runs, "table", Console(file=buffer, width=width))
    out = buffer.getvalue()
    assert max(len(line) for line in out.splitlines()) <= width and "…" not in out, out
    words = set(out.split())
    assert {f"{value:.3f}" for value in extra.values()} <= words, out
    assert sum(block.startswith("Exploratory phase: further metrics") for block in out.split("\n\n")) > 1


def test_further_metrics_named_like_the_reports_own_columns_keep_their_values_in_every_format():
    """A metric named time_s, vs_p or counter_<name> (or <name>_std) used to be overwritten in the CSV
    by the run time, the t-test or the counter of that name."""
    rng = np.random.default_rng(0)
    mine = {"time_s": 0.123, "vs_p": 0.5, "counter_face_fallback": 0.25, "kappa_std": 0.75, "kappa": 0.375, "acc.": 0.625}
    runs = [make_run("A", "cv", model="mobilenet", order=0, accuracy=0.5, rng=rng, fold=fold, extra=mine,
                     counters={"face_fallback": 17, "runs": 4}, total_s=18.18) for fold in range(2)]
    flat = list(csv.DictReader(io.StringIO(_csv(runs))))[0]
    assert {name: float(flat[f"metric_{name}"]) for name in ("time_s", "vs_p", "counter_face_fallback", "kappa_std")} == {
        "time_s": 0.123, "vs_p": 0.5, "counter_face_fallback": 0.25, "kappa_std": 0.75}
    assert float(flat["kappa"]) == 0.375 and float(flat["acc."]) == 0.625  # names that meet no column keep theirs
    assert float(flat["time_s"]) == 18.18 and flat["counter_face_fallback"] == "34" and flat["counter_runs"] == "8" and flat["vs_p"] == ""
    header = _csv(runs).splitlines()[0].split(",")
    assert len(header) == len(set(header))
    rows = json.loads(rendered(runs, "json"))
    assert {name: rows[0]["extra"][name] for name in mine} == mine and rows[0]["time_s"] == 18.18
    markdown = rendered(runs, "markdown")
    assert "| metric acc. (std) |" in markdown and "| counter runs |" in markdown  # beside the table's own acc. and runs


def test_csv_metric_columns_never_meet_whatever_the_names():
    from feph_finetune.results.reports import csv_metric_columns

    columns = csv_metric_columns(["a", "a_std"], ["time_s", "time_s_std", "metric_time_s", "sensitivity_a", "b"])
    every = [name for column in columns.values() for name in (column, f"{column}_std")]
    assert len(every) == len(set(every)) and columns["extra", "b"] == "b" and columns["sensitivity", "a"] == "sensitivity_a"


def _same_names(rng):
    """Records of two experiments whose rows read the same (B hand-edited to A's label and c/v label)."""
    return [make_run(experiment, "cv", model="mobilenet", order=order, accuracy=0.5 + 0.1 * order, rng=rng, fold=fold,
                     label="Fine tune", cv_label=cv_label)
            for order, (experiment, cv_label) in enumerate((("A", ""), ("B", "A"))) for fold in range(2)]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_rows_that_would_read_the_same_are_told_apart_by_their_experiment(fmt):
    text = " ".join(rendered(_same_names(np.random.default_rng(0)), fmt).split())
    assert "A (experiment B)" in text and "Fine tune (experiment B)" in text and "Fine tune (experiment A)" in text, text
    assert "(experiment A) (experiment" not in text and "A (experiment A)" not in text  # a row named by its own key stays as it is


def _normal_forms(rng):
    """Records of experiments A (label and c/v label in NFC) and B (the same in NFD, as macOS writes)."""
    return [make_run(experiment, "cv", model="mobilenet", order=order, accuracy=0.5, rng=rng, fold=fold, label=label, cv_label=label)
            for order, (experiment, label) in enumerate((("A", "FT\u00e9"), ("B", "FTe\u0301"))) for fold in range(2)]


def test_rows_whose_names_differ_only_in_normal_form_are_told_apart():
    """Two rows both shown "FTé", neither told apart: names were compared code point by code point."""
    text = unicodedata.normalize("NFC", rendered(_normal_forms(np.random.default_rng(0)), "table"))
    assert "FT\u00e9 (experiment A)" in text and "FT\u00e9 (experiment B)" in text, text


def test_class_headers_that_read_the_same_are_told_apart():
    """Classes "é" and "e" + U+0301 (or "\ufb01" and "fi") of two datasets were two columns headed alike."""
    from feph_finetune.printable import reading_key
    from feph_finetune.results.reports import class_abbreviations, headers_told_apart

    for names in (["\u00e9", "e\u0301"], ["\ufb01", "fi"]):
        for short in (class_abbreviations(names), {name: name for name in names}):
            headers = headers_told_apart([short[name] for name in names], "class")
            assert len({reading_key(header) for header in headers}) == 2, headers


@pytest.mark.parametrize("typed", ["FT\u00e9", "FTe\u0301"], ids=["nfc", "nfd"])
def test_confusion_finds_a_name_typed_in_the_other_normal_form(typed):
    """``--confusion Aé`` said "no configuration 'Aé'; configurations: A, Aé" of a label stored in NFD."""
    from feph_finetune.results.confusion import matching
    from feph_finetune.results.reports import configurations

    records = [record for record in _normal_forms(np.random.default_rng(0)) if record["experiment"] == "B"]
    assert [row["experiment"] for row, _ in matching(configurations(records), typed)] == ["B"]


def test_confusion_names_which_configuration_is_which_when_their_names_read_the_same(capsys):
    from feph_finetune.results.confusion import matching, print_confusion
    from feph_finetune.results.reports import configurations

    chosen = matching(configurations(_same_names(np.random.default_rng(0))), "A")
    buffer = io.StringIO()
    print_confusion(chosen, Console(file=buffer, width=80))
    titles = [line for line in buffer.getvalue().splitlines() if "cross-validation, summed over" in line]
    assert len(chosen) == 2 and len(set(titles)) == 2 and any("experiment B" in title for title in titles), titles
