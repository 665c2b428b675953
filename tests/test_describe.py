"""The dataset description: its JSON shape, its counts and its rich rendering."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from feph_finetune import CLASSES
from feph_finetune import Dataset, DroppedEntry
from feph_finetune_plugins.feph import DROP_REASONS, read_release as load_dataset
from feph_finetune.data.describe import describe_dataset, render_description
from fephfixture import write_feph_fixture


@pytest.fixture
def loaded(tmp_path):
    expected = write_feph_fixture(tmp_path / "feph", per_class=5, sequences_per_class=3)
    return load_dataset(tmp_path / "feph"), expected


def test_description_has_the_documented_shape_and_counts(loaded):
    dataset, expected = loaded
    description = describe_dataset(dataset, folds=5, seed=0)
    assert json.loads(json.dumps(description)) == description
    assert set(description) == {"images", "classes", "sequences", "groups", "grouping", "split", "fingerprint", "dropped",
                                "dropped_unit", "reasons", "notes", "warnings", "holdout", "folds"}
    assert description["warnings"] == [] and description["split"] == "hold-out"
    assert description["fingerprint"] == dataset.fingerprint and len(dataset.fingerprint) == 12
    assert description["images"] == expected["images"]
    assert description["classes"] == expected["classes"]
    assert list(description["classes"]) == list(CLASSES)
    assert description["sequences"] == expected["sequences"]
    assert description["dropped"] == expected["dropped"]
    assert list(description["dropped"]) == list(DROP_REASONS)


def test_holdout_and_folds_account_for_every_image(loaded):
    dataset, expected = loaded
    description = describe_dataset(dataset, folds=4, seed=1, test_fraction=0.25)
    holdout = description["holdout"]
    assert holdout["train"] + holdout["test"] == expected["images"]
    assert holdout["test_sequences"] == sorted(holdout["test_sequences"])
    sizes = expected["sequence_sizes"]
    assert holdout["test"] == sum(sizes[sequence] for sequence in holdout["test_sequences"])
    folds = description["folds"]
    assert len(folds) == 4
    assert sum(fold["test"] for fold in folds) == expected["images"]
    listed = [sequence for fold in folds for sequence in fold["test_sequences"]]
    assert sorted(listed) == sorted(sizes)
    for fold in folds:
        assert fold["test"] == sum(sizes[sequence] for sequence in fold["test_sequences"])


def test_signer_grouping_keeps_a_signers_sequences_together(loaded):
    dataset, expected = loaded
    description = describe_dataset(dataset, folds=5, group_by="signer")
    signer_of = {sample.groups["sequence"]: sample.groups["signer"] for sample in dataset.samples}
    for side in [description["holdout"], *description["folds"]]:
        test_signers = {signer_of[sequence] for sequence in side["test_sequences"]}
        whole = [sequence for sequence, signer in signer_of.items() if signer in test_signers]
        assert sorted(whole) == side["test_sequences"]


def test_an_empty_dataset_is_still_described(tmp_path):
    dropped = [DroppedEntry(line, f"f{line}.png", "missing_file") for line in (2, 3, 4)]
    description = describe_dataset(Dataset(root=tmp_path, samples=[], classes=CLASSES, dropped_entries=dropped, drop_reasons=DROP_REASONS))
    assert description["images"] == 0
    assert description["dropped"]["missing_file"] == 3
    assert description["holdout"] == {"train": 0, "test": 0, "test_sequences": []}
    assert description["folds"] == []


def test_too_few_groups_for_the_folds_is_an_error(loaded):
    dataset, _ = loaded
    with pytest.raises(ValueError, match="folds need at least"):
        describe_dataset(dataset, folds=8, group_by="signer")


def test_rendering_shows_classes_reasons_and_splits(loaded):
    dataset, expected = loaded
    description = describe_dataset(dataset, folds=3)
    stream = io.StringIO()
    render_description(description, Console(file=stream, width=120, color_system=None))
    text = stream.getvalue()
    for name in (*CLASSES, *DROP_REASONS, "hold-out", "fold 3"):
        assert name in text
    assert f"{100 / 7:.1f}%" in text
    assert f"{sum(expected['dropped'].values())} rows dropped" in text


def test_class_names_and_notes_from_the_data_are_shown_with_control_characters_escaped(loaded):
    dataset, _ = loaded
    description = describe_dataset(dataset, folds=3)
    description["classes"] = {"c\x1b[31mred": 3, "[bold]tab\there": 2}
    description["notes"] = ["a folder named x\x1b]0;title\x07"]
    stream = io.StringIO()
    render_description(description, Console(file=stream, width=120, color_system=None))
    text = stream.getvalue()
    assert "\x1b" not in text and "\t" not in text and "\x07" not in text, repr(text)
    assert "c\\x1b[31mred" in text and "[bold]tab\\there" in text and "x\\x1b]0;title\\x07" in text, text


@pytest.mark.parametrize("grouping, shown", [
    ({"group_pattern": r"^(.+)_f\d+"}, r"group_pattern = '^(.+)_f\d+'"),  # the value as written in TOML: one backslash
    ({"group_pattern": r"it's_f\d+"}, 'group_pattern = "it\'s_f\\\\d+"'),  # a quote: a basic string, its escapes
    ({}, "group_by = 'sequence'"),
])
def test_the_title_wraps_at_the_consoles_width_and_shows_the_grouping_as_written_in_toml(loaded, grouping, shown):
    dataset, _ = loaded
    description = describe_dataset(dataset, folds=3, **grouping)
    assert description["grouping"] == shown
    stream = io.StringIO()
    render_description(description, Console(file=stream, width=160, color_system=None))
    title = stream.getvalue().splitlines()[0]
    assert title.startswith(f"{description['images']} images in ") and title.endswith(f"({shown})"), stream.getvalue()


@pytest.mark.parametrize("width", [40, 80])
def test_every_reason_and_number_is_whole_at_narrow_widths(loaded, width):
    from rich.cells import cell_len

    dataset, _ = loaded
    description = describe_dataset(dataset, folds=3)
    stream = io.StringIO()
    render_description(description, Console(file=stream, width=width, color_system=None))
    text = stream.getvalue()
    assert max(cell_len(line) for line in text.splitlines()) <= width and "…" not in text, text
    words = {word.strip("│┃") for line in text.splitlines() for word in line.split()}
    assert set(description["dropped"]) <= words, text  # reasons are identifiers: never cut or folded
    assert {str(count) for count in description["classes"].values()} <= words
