"""What the figures say and how far they reach: percentages inside [0, 100], chance and majority
lines, zero bars that show, a bounded width with configurations told apart, the loss named as
weighted when it is, stages in words, and a confusion title that says its accuracy is pooled."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from feph_finetune.results.figures import DPI, PERCENT_MARGIN, SENSITIVITY_WIDTH, _class_weighted, _cut_off, confusion_figure, cv_accuracy_figure, learning_curves_figure, sensitivity_figure
from feph_finetune.results.reports import configurations
from feph_finetune.results.store import RunStore
from fake_store import CLASSES, write_fake_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_fake_store(root, experiments=["M0", "M1", "M2", "E2"])
    return root


def chosen(store, phase: str, experiment: str | None = None):
    found = [(row, runs) for row, runs in configurations(RunStore(store).records()) if row["phase"] == phase]
    return found if experiment is None else next(item for item in found if item[0]["experiment"] == experiment)


def segments_y(axes) -> list[float]:
    """Every y value of the error bars (line collections) drawn on ``axes``."""
    return [y for collection in axes.collections if hasattr(collection, "get_segments") for segment in collection.get_segments() for _, y in segment]


def test_cv_accuracy_stays_within_0_and_100_and_shows_chance_and_majority(store):
    cv = chosen(store, "cv")
    row, runs = next(item for item in cv if item[0]["experiment"] == "M0")
    for run, accuracy in zip(runs, (0.02, 0.05, 0.6, 0.03, 0.04)):  # a 95% CI far below 0 (t, 4 dof)
        run["metrics"]["accuracy"] = accuracy
    for run, accuracy in zip(next(runs for row, runs in cv if row["experiment"] == "M2"), (0.99, 1.0, 0.4, 0.98, 1.0)):  # and far above 100
        run["metrics"]["accuracy"] = accuracy
    axes = cv_accuracy_figure(cv).axes[0]
    low, high = axes.get_ylim()
    # Past 0% and 100% only by the margin that keeps a point or cap drawn there whole.
    assert -100 * PERCENT_MARGIN <= low < 0 and 100 < high <= 100 * (1 + PERCENT_MARGIN), (low, high)
    assert all(0 <= y <= 100 for y in segments_y(axes))
    assert all(0 <= tick <= 100 for tick in axes.get_yticks() if low <= tick <= high)
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    totals = np.sum([np.array(run["metrics"]["confusion"]).sum(axis=1) for _, runs in cv for run in runs], axis=0)
    majority = f"majority class ({CLASSES[int(totals.argmax())]}): {100 * totals.max() / totals.sum():.1f}%"
    assert "chance: 1/7 = 14.3%" in labels and majority in labels
    assert sorted(line.get_ydata()[0] for line in axes.get_lines() if line.get_linestyle() in (":", "--"))[:2] == pytest.approx([100 / 7, 100 * totals.max() / totals.sum()])


def with_one_class(item: tuple[dict, list[dict]]) -> tuple[dict, list[dict]]:
    """A cross-validated configuration turned into one trained on a single class, every fold right."""
    row, runs = item
    row["sensitivity"], row["sensitivity_std"], row["avg_sensitivity"] = {"only": 1.0}, {"only": 0.0}, 1.0
    for run in runs:
        run["classes"], run["metrics"] = ["only"], {"accuracy": 1.0, "avg_sensitivity": 1.0, "sensitivity": {"only": 1.0}, "confusion": [[5]]}
    return row, runs


def test_configurations_with_other_classes_get_their_own_chance_and_majority(store):
    """A: one class, every fold 100%; M2: FePh's seven. One chance line from all their classes
    (1/8) was wrong for both; each column now has its own, from its own classes and test images."""
    cv = [with_one_class(chosen(store, "cv", "M0")), chosen(store, "cv", "M2")]
    axes = cv_accuracy_figure(cv).axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert not any(label.startswith("chance: 1/") for label in labels), labels
    assert "chance (1/classes), each column" in labels and "majority class, each column" in labels
    totals = np.sum([np.array(run["metrics"]["confusion"]).sum(axis=1) for run in cv[1][1]], axis=0)
    seven_majority = 100 * totals.max() / totals.sum()
    written = {(round(text.get_position()[0]), text.get_text(), round(float(text.get_position()[1]), 6)) for text in axes.texts}  # (column, text, y)
    own = {(0, "1/1", 100.0), (0, "100.0%", 100.0), (1, "1/7", round(100 / 7, 6)), (1, f"{seven_majority:.1f}%", round(seven_majority, 6))}
    assert own <= written and not [text for text in written - own if "/" in text[1] or text[1].endswith("%")], written
    lines = [(segment[0][0], segment[1][0], segment[0][1]) for collection in axes.collections if hasattr(collection, "get_segments")
             and collection.get_linestyle()[0][1] is not None for segment in collection.get_segments()]  # the dotted and dashed ones
    assert sorted((round(left), round(float(y), 6)) for left, _, y in lines) == sorted((column, y) for column, _, y in own)
    assert all(right - left < 1 for left, right, _ in lines)  # each over its own column only
    assert not [line for line in axes.get_lines() if line.get_linestyle() in (":", "--")]  # no line across the figure


def test_points_and_labels_at_100_percent_are_drawn_whole(store):
    """Every fold of a one-class configuration at 100%: its points, mean and "100.0" lay half
    outside the axes, cut by the frame."""
    figure = cv_accuracy_figure([with_one_class(chosen(store, "cv", "M0")), chosen(store, "cv", "M2")])
    figure.canvas.draw()
    axes = figure.axes[0]
    frame = axes.get_window_extent()
    marker_radius = math.sqrt(22) / 2 * DPI / 72  # s=22 points² in pixels
    tops = [axes.transData.transform(point)[1] + marker_radius for collection in axes.collections if hasattr(collection, "get_offsets") for point in collection.get_offsets()]
    assert tops and max(tops) <= frame.y1, (max(tops), frame.y1)
    hundred = [text.get_window_extent() for text in axes.texts if text.get_text() in ("100.0", "1/1", "100.0%")]
    assert len(hundred) == 3 and all(frame.y0 <= box.y0 and box.y1 <= frame.y1 for box in hundred), (hundred, frame)


def many_rows(count: int, phase: str) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for index in range(count):
        sensitivity = {name: float(rng.choice([0.0, 1.0, rng.uniform(0.1, 0.9)])) for name in CLASSES}
        sensitivity["anger"] = 0.0 if index == count - 1 else 0.97
        rows.append({
            "phase": phase, "experiment": f"X{index}", "label": f"configuration {index}", "cv_label": f"X{index}", "model": "mobilenet",
            "variant": {}, "baseline": index == 0, "sensitivity": sensitivity, "avg_sensitivity": float(np.mean(list(sensitivity.values()))),
            "sensitivity_std": {name: 0.2 for name in CLASSES}, "avg_sensitivity_std": 0.1,
        })
    return rows


@pytest.mark.parametrize("count", [2, 13, 25])
def test_sensitivity_figures_are_bounded_and_tell_configurations_apart(count):
    rows = many_rows(count, "cv")
    figure = sensitivity_figure(rows, "cv")
    assert figure.get_size_inches()[0] * DPI <= SENSITIVITY_WIDTH * DPI <= 1320
    axes = figure.axes[0]
    bars = [container for container in axes.containers if hasattr(container, "patches")]
    styles = [(tuple(np.round(bar.patches[0].get_facecolor(), 3)), bar.patches[0].get_hatch()) for bar in bars]
    assert len(set(styles)) == count  # no two configurations drawn alike
    assert all(0 <= y <= 100 for y in segments_y(axes))  # std bars cut at 100: none clipped by the axes
    dashes = [offset for collection in axes.collections if not hasattr(collection, "get_segments") for offset in collection.get_offsets()]
    assert any(abs(x - (-0.42 + 0.84 / count * (count - 0.5))) < 1e-6 for x, _ in dashes)  # the last row's 0% anger is marked
    assert "0%" in axes.get_title()


def test_learning_curves_name_the_weighted_loss_and_the_stages_in_words(store):
    row, runs = chosen(store, "cv", "M1")  # FT-SGD + IP + HF + CW
    assert _class_weighted(runs, store) and not _class_weighted(chosen(store, "cv", "M2")[1], store)
    histories = [(run["fold"], json.loads((store / run["id"] / "history.json").read_text())) for run in runs]
    figure = learning_curves_figure(row, histories, class_weighted=True)
    loss_axes = figure.axes[0]
    assert loss_axes.get_ylabel() == "training loss (class-weighted cross-entropy)"
    texts = " ".join(text.get_text() for text in loss_axes.texts)
    assert "head only (base frozen)" in texts and "all layers,\nSGD" in texts and "sgd" not in texts.split()
    assert learning_curves_figure(row, histories).axes[0].get_ylabel() == "training loss (cross-entropy)"


def test_confusion_titles_say_the_accuracy_is_pooled_over_folds(store):
    cv_title = confusion_figure(*chosen(store, "cv", "M2")).get_suptitle()
    assert "accuracy" in cv_title and "pooled over folds" in cv_title and "summed over 5 folds" in cv_title
    assert "pooled" not in confusion_figure(*chosen(store, "exploratory", "M2")).get_suptitle()


def test_every_built_in_stage_has_words_for_people():
    from feph_finetune import RunContext
    from feph_finetune_plugins import adam, adam_sgd, sam, sam_sgd

    context = RunContext(run_id="run", experiment="exp", phase="exploratory", fold=None, seed=0, input_size=32, config={}, options={})
    for plugin in (adam, adam_sgd, sam, sam_sgd):
        for stage in plugin.optimizer_schedule(context=context):
            assert stage.label and "_" not in stage.label, (plugin.__name__, stage.name)


def test_a_loss_beyond_any_cross_entropy_is_left_out_with_one_warning_naming_the_file_and_key(tmp_path):
    from feph_finetune.results.figures import MAX_HISTORY_LOSS, _histories

    root = tmp_path / "results"
    write_fake_store(root, experiments=["M2"])
    row, runs = next((row, runs) for row, runs in configurations(RunStore(root).records()) if row["phase"] == "cv")
    edited = root / runs[0]["id"] / "history.json"
    history = json.loads(edited.read_text())
    history[2]["loss"], history[4]["loss"] = 1e300, 2e300  # finite, as a hand-edited file or a diverged run may hold
    edited.write_text(json.dumps(history))
    warnings = []
    figure = learning_curves_figure(row, _histories(runs, root, warnings.append))
    assert len(warnings) == 1 and str(edited) in warnings[0] and "loss (first at epoch 3)" in warnings[0], warnings
    top = max(value for _, y in (line.get_data() for line in figure.axes[0].lines) for value in y)
    assert top < MAX_HISTORY_LOSS and figure.axes[0].get_ylim()[1] < 10, figure.axes[0].get_ylim()  # the other losses (about 1.7 at most) set the axis


def test_a_stage_label_with_a_line_break_is_drawn_escaped_not_over_the_title(store):
    row, runs = chosen(store, "cv", "M2")
    histories = [(run["fold"], json.loads((store / run["id"] / "history.json").read_text())) for run in runs]
    for _, history in histories:
        for entry in history:
            entry["stage_label"] = "all layers\nNEW TITLE\x1b[2J, SGD"
    texts = [text.get_text() for axes in learning_curves_figure(row, histories).axes for text in axes.texts]
    assert texts and all(text == "all layers\\nNEW TITLE\\x1b[2J,\nSGD" for text in texts), texts


def test_the_fold_axis_names_its_configurations_escaped(store):
    cv = chosen(store, "cv")
    cv[0][0]["label"] = "No-FT\nEVIL"
    figure = cv_accuracy_figure(cv)
    assert any("No-FT\\nEVIL" in tick.get_text() for tick in figure.axes[0].get_xticklabels())


def test_configurations_named_by_long_settings_have_fold_axis_names_that_neither_overlap_nor_meet_the_legend(store):
    """Two configurations of one experiment, named by what differs (the report's own names):
    their tick labels printed over each other, unreadable."""
    cv = chosen(store, "cv")[:3]
    cv[0][0]["variant"] = {"dataset.labels": "", "dataset.images": ""}
    cv[1][0]["variant"] = {"dataset.labels": "FePh_labels.csv", "dataset.images": "FePh_images", "options.adam.lr": 0.001}
    cv[2][0]["label"] = "a label of many words " * 4
    figure = cv_accuracy_figure(cv)
    figure.canvas.draw()
    labels = figure.axes[0].get_xticklabels()
    assert not _crowded_x_labels(labels)
    assert not any(_overlapping([figure.axes[0].get_legend().get_window_extent(), label]) for label in _extents(labels))
    assert not _cut_off(figure)
    assert "dataset.images=FePh_images" in "".join(label.get_text() for label in labels).replace("\n", "")  # folded, not cut


def test_predicts_plot_draws_input_and_class_names_escaped():
    from feph_finetune.predict.apply import FrameSeries, InputSummary
    from feph_finetune.predict.plots import probabilities_figure

    series = FrameSeries(2)
    series.add(0.0, False, np.array([0.3, 0.7]), None, False)
    series.add(0.5, False, np.array([0.6, 0.4]), None, True)
    summary = InputSummary(name="clip\nEVIL.avi", kind="video", classes=("anger\x1b[2J", "happy"), frames=2, faces=1, series=series)
    figure = probabilities_figure([summary], "model\nM2")
    texts = [figure.axes[0].get_title(loc="left"), figure._suptitle.get_text(), *(text.get_text() for legend in figure.legends for text in legend.get_texts())]
    assert texts[:2] == ["clip\\nEVIL.avi, face found in 1 of 2 frames", "model\\nM2"] and "anger\\x1b[2J" in texts, texts
def _many_class_configurations(tmp_path, monkeypatch, count: int) -> list:
    """The cross-validated configurations of M0 and M2 over ``count`` classes of 12 characters."""
    import fake_store

    monkeypatch.setattr(fake_store, "CLASSES", [f"klasse_{index:02d}_name" for index in range(count)])
    monkeypatch.setattr(fake_store, "TEST_IMAGES", [10 + (7 * index) % 40 for index in range(count)])
    fake_store.write_fake_store(tmp_path, experiments=["M0", "M2"])
    return [(row, runs) for row, runs in configurations(RunStore(tmp_path).records()) if row["phase"] == "cv"]


def _crowded_x_labels(labels) -> list[tuple[int, int]]:
    """Neighbouring x tick labels that overlap: upright, their boxes; rotated (parallel lines of
    text), the distance between their lines, ``pitch * sin(rotation)``, below the font's height."""
    shown = [label for label in labels if label.get_visible() and label.get_text()]
    rotation = math.radians(shown[0].get_rotation()) if shown else 0.0
    if rotation == 0:
        return _overlapping(_extents(shown))
    anchors = [label.get_transform().transform(label.get_position())[0] for label in shown]
    height = shown[0].get_fontsize() * shown[0].figure.dpi / 72
    return [(i, i + 1) for i in range(len(anchors) - 1) if (anchors[i + 1] - anchors[i]) * math.sin(rotation) < height]


def _extents(texts) -> list:
    return [text.get_window_extent() for text in texts if text.get_visible() and text.get_text()]


def _overlapping(boxes) -> list[tuple[int, int]]:
    """Pairs of boxes that share more than a pixel (antialiasing may touch) in both directions."""
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if min(boxes[i].x1, boxes[j].x1) - max(boxes[i].x0, boxes[j].x0) > 1 and min(boxes[i].y1, boxes[j].y1) - max(boxes[i].y0, boxes[j].y0) > 1]


@pytest.mark.parametrize("count", [7, 20, 60])
def test_figures_stay_legible_at_any_class_count(tmp_path, monkeypatch, count):
    """60 classes made a 700-pixel confusion matrix of 3,600 overlapping numbers under a colour bar
    drawn over the title, and sensitivity labels that ran into a black smear (and took minutes)."""
    from feph_finetune.results.figures import CONFUSION_CELL, CONFUSION_SIDE

    cv = _many_class_configurations(tmp_path, monkeypatch, count)
    row, runs = next(item for item in cv if item[0]["experiment"] == "M2")
    figure = confusion_figure(row, runs)
    figure.canvas.draw()
    axes, colour_bar = figure.axes
    assert max(figure.get_size_inches()) <= CONFUSION_SIDE + 2.6
    assert not _crowded_x_labels(axes.get_xticklabels()) and not _overlapping(_extents(axes.get_yticklabels()))
    title = figure.texts[0].get_window_extent()  # the suptitle
    assert not _overlapping([title, colour_bar.get_window_extent()]) and not _overlapping([title, *_extents(axes.texts)])
    cells = [text for text in axes.texts]
    if CONFUSION_SIDE / count >= CONFUSION_CELL:
        assert len(cells) == count * count and _overlapping(_extents(cells)) == []
    else:  # the numbers go; the title says why
        assert cells == [] and f"{count} classes: cells too small for their counts" in figure.get_suptitle()

    figure = sensitivity_figure([row for row, _ in cv], "cv")
    figure.canvas.draw()
    axes = figure.axes[0]
    assert figure.get_size_inches()[0] <= SENSITIVITY_WIDTH
    labels = _extents(axes.get_xticklabels())
    assert len(labels) == count + 1 and not _crowded_x_labels(axes.get_xticklabels())
    assert not any(_overlapping([figure.legends[0].get_window_extent(), label]) for label in labels)
    cv_figure = cv_accuracy_figure(cv)
    cv_figure.canvas.draw()
    assert not _cut_off(figure) and not _cut_off(cv_figure)  # the legend of 2 configurations was cut at both edges


def test_a_long_class_list_is_abbreviated_and_spelled_out_in_the_caption():
    from feph_finetune.results.figures import tick_legend, tick_names

    paper = list(CLASSES)
    assert tick_names(paper) == {name: name for name in paper} and tick_legend(paper) == ""
    many = [f"klasse_{index:02d}_name" for index in range(60)]
    ticks = tick_names(many)
    assert len(set(ticks.values())) == 60 and all(len(tick) < len(name) for name, tick in ticks.items())
    assert f"{ticks[many[59]]}: {many[59]}" in tick_legend(many)
