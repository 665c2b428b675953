"""Every number of a console table stays whole at any width from 40 columns: where room runs out,
the name columns (configurations, class names, counter names, inputs, run ids) fold instead."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from rich.cells import cell_len

from conftest import write_matrix
from fake_store import write_fake_store

WIDTHS = [40, 41, 44, 80]

#: Names that leave little room: a label without spaces, one of wide (2-cell) characters, long class names.
LONG_LABEL = "A_very_long_experiment_label_for_fine_tuning_everything"
CJK_LABEL = "手語の表情を学習する長い実験の名前"
LONG_CLASSES = [f"{word}_expression_marker_of_the_face"[:30] for word in "raised furrowed puffed squinted pursed tilted nodding".split()]
CJK_CLASSES = ["怒りの表情を示す手話の顔", "嫌悪の表情を示す手話の顔", "恐怖の表情を示す手話の顔", "幸福の表情を示す手話の顔",
               "中立の表情を示す手話の顔", "悲しみの表情を示す手話の顔", "驚きの表情を示す手話の顔"]


def printed_at(columns: int, capsys, monkeypatch, *args: str) -> str:
    from feph_finetune.cli import main

    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def assert_fits(text: str, columns: int, numbers: set[str], shortened: str = "") -> None:
    """No line wider than ``columns`` display cells, nothing cut with "…" (but the start of
    a name ``shortened`` to its end), and each of ``numbers`` printed whole: a word of some
    line (a number split over two lines is two other words)."""
    assert max(cell_len(line) for line in text.splitlines()) <= columns, text
    assert all(after[:1] and after[:1] in shortened for after in text.split("…")[1:]), text
    words = {word.strip(",;()[]±%") for line in text.splitlines() for word in line.split()}
    assert not sorted(numbers - words), text


def store_of(root, *, label: str | None = None, classes: list[str] | None = None, counters: dict[str, int] | None = None):
    """The fake store's M0 and M2 with M2 relabelled, every run's classes renamed and counters
    added; returns the store's folder and the records as written."""
    write_fake_store(root, experiments=["M0", "M2"])
    records = []
    for path in sorted(root.glob("*/result.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if label and record["experiment"] == "M2":
            record["label"] = label
        if classes:
            record["metrics"]["sensitivity"] = dict(zip(classes, record["metrics"]["sensitivity"].values()))
            record["classes"] = classes
        record["counters"] = counters or {}
        path.write_text(json.dumps(record), encoding="utf-8")
        records.append(record)
    return root, records


def shown_numbers(records: list[dict]) -> set[str]:
    """Every accuracy and sensitivity of the report's rows as the console shows them, and each
    counter's sum over a row's runs."""
    from feph_finetune.results.reports import summarize

    numbers = set()
    for row in summarize(records):
        values = [row["accuracy"], row["avg_sensitivity"], *row["sensitivity"].values()]
        numbers |= {f"{100 * value:.1f}".replace("100.0", "100") for value in values}
        numbers |= {str(int(value)) for value in row["counters"].values()}
    return numbers


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("case", ["13-digit counter", "long counter names", "long label", "CJK label", "long classes", "CJK classes"])
def test_report_keeps_every_number_whole(tmp_path, capsys, monkeypatch, columns, case):
    store, records = store_of(tmp_path / "runs", **{
        "13-digit counter": dict(counters={"face_fallback": 999_999_999_999}),  # summed over 5 folds: 13 digits
        "long counter names": dict(counters={"frames_without_any_face_found_in_the_crop": 99_999_999_999, "images_rejected_as_blurry": 4567}),
        "long label": dict(label=LONG_LABEL, counters={"face_fallback": 12345678901}),
        "CJK label": dict(label=CJK_LABEL, counters={"顔が見つからなかったフレームの数": 1234567890}),
        "long classes": dict(classes=LONG_CLASSES),
        "CJK classes": dict(classes=CJK_CLASSES),
    }[case])
    numbers = shown_numbers(records)
    for paper in ([], ["--paper"]):
        assert_fits(printed_at(columns, capsys, monkeypatch, "report", str(store), *paper), columns, numbers)


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("classes", [LONG_CLASSES, CJK_CLASSES], ids=["30-character", "CJK"])
def test_confusion_rows_named_by_long_class_names_keep_every_count_whole(tmp_path, capsys, monkeypatch, columns, classes):
    store, records = store_of(tmp_path / "runs", classes=classes)
    summed = sum(np.asarray(record["metrics"]["confusion"]) for record in records if record["experiment"] == "M2" and record["phase"] == "cv")
    numbers = {str(count) for count in summed.ravel()} | {str(total) for total in summed.sum(axis=1)}
    assert_fits(printed_at(columns, capsys, monkeypatch, "report", str(store), "--confusion", "M2"), columns, numbers)


@pytest.mark.parametrize("columns", WIDTHS)
def test_further_metrics_with_long_names_and_a_long_label_keep_every_value_whole(tmp_path, capsys, monkeypatch, columns):
    store, records = store_of(tmp_path / "runs", label=CJK_LABEL)
    for path in store.glob("*/result.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        record["metrics"].update(cohen_kappa_weighted_quadratic=0.4321, matthews_correlation_coefficient=0.1234)
        path.write_text(json.dumps(record), encoding="utf-8")
    text = printed_at(columns, capsys, monkeypatch, "report", str(store))
    assert_fits(text, columns, {"0.432", "0.123"})


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("name", ["clips/a_very_long_sentence_recording.avi", "手話の文を撮った長い動画の名前.avi"])
def test_predicts_summary_keeps_its_counts_whole(monkeypatch, columns, name):
    from types import SimpleNamespace

    from feph_finetune.cli import output_console
    from feph_finetune.predict.command import print_summary

    monkeypatch.setenv("COLUMNS", str(columns))
    bundle = SimpleNamespace(classes=LONG_CLASSES, run_id="A_very_long_experiment-x-0123456789abcdef")
    predicted = {name: 1234567 * (index + 1) for index, name in enumerate(LONG_CLASSES)}
    frames = sum(predicted.values())
    summaries = [SimpleNamespace(name=name, frames=frames, faces=frames - 1, predicted=predicted)]
    console = output_console()
    with console.capture() as captured:
        print_summary(summaries, bundle, console)
    text = captured.get()
    shares = {f"{100 * count / frames:.0f}" for count in predicted.values()}
    assert_fits(text, columns, {str(frames), str(frames - 1), *shares})  # the name folded, never shortened


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("experiment", ["A_very_long_experiment_name_for_fine_tuning_with_everything_on", "A-very-long-experiment-name-for-fine-tuning-with-everything-on"])
def test_a_dry_run_keeps_its_values_whole(tmp_path, synthetic_feph, capsys, monkeypatch, columns, experiment):
    experiments = f"""
    [experiments."{experiment}"]
    grid = {{ "options.mobilenet.dropout" = [0.25, 0.5], "options.adam.lr" = [0.001, 0.0001] }}
    """
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    text = printed_at(columns, capsys, monkeypatch, str(matrix), "--dry-run")
    assert max(cell_len(line) for line in text.splitlines()) <= columns and "…" not in text, text
    words = {word.split("=")[-1].strip(",;") for line in text.splitlines() for word in line.split()}
    assert {"0.25", "0.5", "0.001", "0.0001"} <= words, text


#: Five metrics of a third-party ``evaluate`` plugin as a hand-edited record gives them: finite, one absurdly large.
PLUGIN_METRICS = {"kappa": 1e300, "mcc": 0.5, "f1_macro": 0.4321, "roc_auc": 0.9, "brier": 0.0001}


def with_metrics(store, metrics_of_run) -> None:
    """Each record of ``store`` with the further metrics ``metrics_of_run(index)``."""
    for index, path in enumerate(sorted(store.glob("*/result.json"))):
        record = json.loads(path.read_text(encoding="utf-8"))
        record["metrics"].update(metrics_of_run(index))
        path.write_text(json.dumps(record), encoding="utf-8")


@pytest.mark.parametrize("columns", [80, 160])
@pytest.mark.parametrize("sign", [1, -1])
def test_a_huge_plugin_metric_is_written_in_scientific_notation_and_leaves_the_names_whole(tmp_path, capsys, monkeypatch, columns, sign):
    store, records = store_of(tmp_path / "runs", label="FT-SGD + IP + HF")
    with_metrics(store, lambda index: {**PLUGIN_METRICS, "kappa": sign * PLUGIN_METRICS["kappa"]})
    names = {word for record in records for word in (record["label"], f"({record['model']})", record["experiment"]) if " " not in word}
    for paper in ([], ["--paper"]):
        text = printed_at(columns, capsys, monkeypatch, "report", str(store), *paper)
        assert_fits(text, columns, {f"{sign * 1.0:.1f}e+300", "0.500", "0.432", "1.0e-04", *shown_numbers(records)})
        assert not re.search(r"\d{16}", text), text  # no number longer than a 15-digit count
        words = {word for line in text.splitlines() for word in line.split()}
        assert {"configuration", "architecture"} & words and names <= words, text  # no header or name broken inside a word
        assert "metric 1 of" not in text, text  # the five metrics fit one table at 80 columns and more
    markdown = printed_at(columns, capsys, monkeypatch, "report", str(store), "--format", "markdown")
    assert f"{sign * 1.0:.1f}e+300" in markdown and not re.search(r"\d{16}", markdown), markdown


def test_a_metric_near_the_largest_float_has_a_finite_mean_over_folds(tmp_path, capsys, monkeypatch):
    store, _ = store_of(tmp_path / "runs")
    with_metrics(store, lambda index: {"kappa": 1.5e308})  # any two sum past the largest float
    text = printed_at(80, capsys, monkeypatch, "report", str(store))
    assert "inf" not in text and "nan" not in text and text.count("1.5e+308") == 4, text  # M0 and M2, each in both phases


@pytest.mark.parametrize("columns", [40, 41])
@pytest.mark.parametrize("case", ["13-digit counter", "mean run time of 5e8 s"])
def test_the_runs_table_breaks_no_word_while_a_layout_keeps_it_whole(tmp_path, capsys, monkeypatch, columns, case):
    """12 + 13 + 13 cells of names and a 13-digit counter fit 40 columns 1 cell apart, not 2: the
    gap narrows before "architecture" or "configuration" breaks; a duration of "138888 h 53 min"
    wraps between its parts (never inside a number) before a name breaks."""
    store, records = store_of(tmp_path / "runs", counters={"face_fallback": 999_999_999_999} if case == "13-digit counter" else None)
    if case != "13-digit counter":
        for path in store.glob("*/result.json"):
            record = json.loads(path.read_text(encoding="utf-8"))
            record["timing"]["total_s"] = 5e8
            path.write_text(json.dumps(record), encoding="utf-8")
    text = printed_at(columns, capsys, monkeypatch, "report", str(store))
    runs_part = text[text.index("Runs, mean training time"):text.index("Paired comparisons")]
    numbers = {"4999999999995"} if case == "13-digit counter" else {"138888"}
    assert_fits(runs_part, columns, numbers)
    for word in ("architecture", "configuration", "exploratory"):
        assert runs_part.count(word[:-2]) == runs_part.count(word) > 0, runs_part  # no "architectu" / "re"
    if case != "13-digit counter":
        assert all(re.search(r"138888 h$", line) for line in runs_part.splitlines() if "138888" in line), runs_part
        assert all(line.strip() == "53 min" for line in runs_part.splitlines() if "53" in line and "138888" not in line), runs_part


def predict_summary_at(columns: int, names: list[str], monkeypatch) -> str:
    """``predict``'s summary of ``names`` (each 40 frames of the seven FePh classes) at ``columns``."""
    from types import SimpleNamespace

    from feph_finetune.api import CLASSES
    from feph_finetune.cli import output_console
    from feph_finetune.predict.command import print_summary

    monkeypatch.setenv("COLUMNS", str(columns))
    predicted = dict(zip(CLASSES, [6, 4, 2, 8, 10, 5, 5]))
    summaries = [SimpleNamespace(name=name, frames=40, faces=30, predicted=predicted) for name in names]
    console = output_console()
    with console.capture() as captured:
        print_summary(summaries, SimpleNamespace(classes=list(CLASSES), run_id="M2-x-0123456789"), console)
    return captured.get()


def input_names(text: str) -> list[str]:
    """The input names of a summary table, each put together from its folded lines (a row's first
    line holds its numbers, the lines after it only the rest of its name)."""
    lines = text.splitlines()
    body = lines[next(index for index, line in enumerate(lines) if line.strip().startswith("─")) + 1:]
    names: list[str] = []
    for line in body:
        part = re.split(r"\s{2,}", line.strip())[0]
        if "%" in line:
            names.append(part)
        elif part:
            names[-1] += part
    return names


SAME_FILE_IN_TWO_FOLDERS = ["rec/2024-01-05/signer_a/take1.avi", "rec/2024-01-06/signer_a/take1.avi"]


@pytest.mark.parametrize("columns", [80, 120])
def test_predicts_summary_names_every_input_whole_folded_where_it_does_not_fit(monkeypatch, columns):
    """Two takes in different folders must not read the same (the name was cut to its last 20 cells)."""
    text = predict_summary_at(columns, SAME_FILE_IN_TWO_FOLDERS, monkeypatch)
    assert "…" not in text and max(cell_len(line) for line in text.splitlines()) <= columns, text
    assert input_names(text) == SAME_FILE_IN_TWO_FOLDERS, text


def test_predicts_summary_keeps_a_name_on_one_line_where_the_width_allows(monkeypatch):
    text = predict_summary_at(120, [*SAME_FILE_IN_TWO_FOLDERS, "d/zero20to24_hfyu.avi"], monkeypatch)
    rows = [line for line in text.splitlines() if "%" in line]
    assert [row.split()[0] for row in rows] == [*SAME_FILE_IN_TWO_FOLDERS, "d/zero20to24_hfyu.avi"], text


@pytest.mark.parametrize("name", ["/tmp/h12b/v/multi.tiff", "/tmp/h12b/v/dupblk.mkv", "recordings/2024/signer_a.take1.avi"])
def test_predicts_summary_folds_an_input_after_a_slash_so_its_file_name_stays_whole(monkeypatch, name):
    """At 80 columns a path folded at its file name's ``.`` (``/tmp/h12b/v/multi.`` / ``tiff``):
    a ``/`` is the first place a path breaks, so the file's name is on one line where it fits."""
    text = predict_summary_at(80, [name], monkeypatch)
    lines = [re.split(r"\s{2,}", line.strip())[0] for line in text.splitlines()]
    assert input_names(text) == [name], text
    assert name.rsplit("/", 1)[1] in lines, text
