"""Dataset formats: folders and csv read any classes, and the whole pipeline takes them from the data."""

from __future__ import annotations

import csv
import json
import os
import shutil
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import TINY_DEFAULTS, line_of
from fephfixture import write_keras_archive
from feph_finetune import DatasetError
from feph_finetune.cli import main
from feph_finetune.data.datasets import load_dataset

FOUR = ("neutral", "raised_brows", "furrowed_brows", "puffed_cheeks")


def write_image(path: Path, label: int, seed: int) -> None:
    """A 40 px BGR image whose mean colour tells its class apart (learnable), with noise."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(40, 40, 3)).astype(np.uint8)
    image[..., label % 3] += np.uint8(120 + 60 * (label // 3) % 120)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def write_folders(root: Path, classes=FOUR, videos: int = 3, frames: int = 2, split: str = "") -> dict[str, int]:
    """``root/[split/]<class>/<class>_v<video>_f<frame>.png``; returns images per class."""
    counts = {}
    for label, name in enumerate(classes):
        for video in range(videos):
            for frame in range(frames):
                write_image(root / split / name / f"{name}_v{video}_f{frame}.png", label, hash((name, video, frame, split)) % 10_000)
        counts[name] = videos * frames
    return counts


PATTERN = r"^(.+_v\d+)_f\d+"


def matrix_toml(path: Path, root: Path, dataset: str, experiments: str) -> Path:
    text = TINY_DEFAULTS.format(root=root).replace("folds = 3\n", "folds = 2\n" + textwrap.dedent(dataset))
    path.write_text(text + textwrap.dedent(experiments), encoding="utf-8")
    return path


def test_folders_reads_classes_groups_and_reports_what_it_drops(tmp_path):
    root = tmp_path / "data"
    counts = write_folders(root)
    (root / "neutral" / "notes.txt").write_text("not an image")
    (root / "stray.png").write_bytes(b"")
    os.symlink(root / "nowhere.png", root / "neutral" / "broken.png")
    nested = root / "puffed_cheeks" / "clip9"
    write_image(nested / "a.png", 3, 1)
    write_image(nested / "b.png", 3, 2)
    counts["puffed_cheeks"] += 2
    (root / "raised_brows" / "bad.png").write_bytes(b"not a png")
    (root / "furrowed_brows" / "copy.png").write_bytes((root / "neutral" / "neutral_v0_f0.png").read_bytes())
    dataset = load_dataset({"root": str(root), "format": "folders"})
    assert dataset.classes == tuple(sorted(FOUR))
    found = {name: int((dataset.labels() == index).sum()) for index, name in enumerate(dataset.classes)}
    assert found == {**counts, "neutral": counts["neutral"] - 1}  # its copy under furrowed_brows conflicts
    reasons = {entry.entry: entry.reason for entry in dataset.dropped_entries}
    assert reasons == {"neutral/notes.txt": "not_an_image", "stray.png": "no_class", "neutral/broken.png": "broken_link",
                       "raised_brows/bad.png": "unreadable", "neutral/neutral_v0_f0.png": "conflicting_labels",
                       "furrowed_brows/copy.png": "conflicting_labels"}
    groups = {sample.path.name: sample.groups["folder"] for sample in dataset.samples if sample.path.parent == nested}
    assert groups == {"a.png": "puffed_cheeks/clip9", "b.png": "puffed_cheeks/clip9"}


def test_listed_classes_set_the_order_skip_other_folders_and_must_have_images(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root)
    dataset = load_dataset({"root": str(root), "format": "folders", "classes": ["puffed_cheeks", "neutral"]})
    assert dataset.classes == ("puffed_cheeks", "neutral")
    assert {sample.label for sample in dataset.samples} == {0, 1}
    assert any("'raised_brows' is not one of the listed classes" in note for note in dataset.notes)
    assert main(["data", str(root), "--format", "folders", "--set", "dataset.classes=['neutral', 'smile']"]) == 2
    assert "'smile' have no images" in capsys.readouterr().err


def test_data_counts_a_four_class_folders_dataset_exactly_with_its_grouping(tmp_path, capsys):
    root = tmp_path / "data"
    counts = write_folders(root)
    assert main(["data", str(root), "--format", "folders", "--set", f"dataset.group_pattern='{PATTERN}'", "--folds", "3", "--json"]) == 0
    description = json.loads(capsys.readouterr().out)
    assert description["classes"] == {name: counts[name] for name in sorted(FOUR)}
    assert description["groups"] == 12 and description["warnings"] == []
    assert main(["data", str(root), "--format", "folders"]) == 0
    assert "no grouping" in capsys.readouterr().out  # every name is its own group without the pattern


def test_a_presplit_folder_is_used_as_the_exploratory_split(tmp_path, capsys):
    root = tmp_path / "data"
    train = write_folders(root, videos=3, split="train")
    test = write_folders(root, videos=1, split="test")
    dataset = load_dataset({"root": str(root), "format": "folders"})
    assert {sample.split for sample in dataset.samples} == {"train", "test"}
    assert main(["data", str(root), "--format", "folders", "--set", f"dataset.group_pattern='{PATTERN}'", "--folds", "2", "--json"]) == 0
    description = json.loads(capsys.readouterr().out)
    assert description["split"] == "given"
    assert description["holdout"]["train"] == sum(train.values()) and description["holdout"]["test"] == sum(test.values())
    assert any("test_fraction is not used" in warning for warning in description["warnings"])


def test_a_class_folder_without_a_usable_image_is_an_error_naming_it(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root, classes=("neutral", "smile"))
    for path in (root / "smile").iterdir():
        path.write_bytes(f"not an image: {path.name}".encode())
    assert cv2.imwrite(str(root / "smile" / "depth.tiff"), np.full((8, 8), 0.5, dtype=np.float32))  # decodes, unusable
    with pytest.raises(DatasetError, match="'smile' have no images"):
        load_dataset({"root": str(root), "format": "folders"})
    assert main(["data", str(root), "--format", "folders"]) == 2
    error = capsys.readouterr().err
    assert f"class folder(s) 'smile' have no images in {root} that can be used (dropped there: 7 unreadable)" in error


def test_data_takes_folds_and_test_fraction_from_set_as_from_its_flags(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root)
    common = ["data", str(root), "--format", "folders", "--set", f"dataset.group_pattern='{PATTERN}'", "--json"]
    descriptions = []
    for settings in (["--folds", "4", "--test-fraction", "0.5"], ["--set", "dataset.folds=4", "--set", "dataset.test_fraction=0.5"]):
        assert main(common + settings) == 0
        descriptions.append(json.loads(capsys.readouterr().out))
    assert descriptions[0] == descriptions[1]
    assert len(descriptions[1]["folds"]) == 4 and descriptions[1]["holdout"]["test"] == 12  # half of 24 images in 12 groups of 2


def test_a_test_fraction_too_small_or_large_for_the_groups_is_warned_about(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root)
    pattern = f"dataset.group_pattern='{PATTERN}'"
    assert main(["data", str(root), "--format", "folders", "--set", pattern, "--set", "dataset.test_fraction=0.999", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == [
        "dataset.test_fraction = 0.999 asks for 0.012 of the 12 groups on the training side, fewer than half a group: the hold-out "
        "split puts one whole group there (8.3% of the groups, not 0.1%); choose a fraction between 0.042 and 0.96, or data with more groups"]
    path = matrix_toml(tmp_path / "m.toml", root, f'format = "folders"\ngroup_pattern = \'{PATTERN}\'\ntest_fraction = 0.01\n', "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 0
    assert f"{path}:{line_of(path, 'test_fraction')} dataset.test_fraction: 0.01 asks for 0.12 of the 12 groups on the test side" in capsys.readouterr().err


def write_csv_twin(folders: Path, root: Path) -> None:
    """The same images as the ``folders`` dataset, listed in a CSV with other column names, word
    labels, a BOM, CRLF line ends, quoted paths, one duplicate row and one path outside the root."""
    rows = [(f"imgs/{path.relative_to(folders).as_posix()}", path.parent.name) for path in sorted(folders.rglob("*.png"))]
    shutil.copytree(folders, root / "imgs")
    with open(root / "frames.csv", "w", newline="", encoding="utf-8-sig") as stream:
        writer = csv.writer(stream, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(["Frame file", "Expression"])
        writer.writerows(rows + [rows[0], ("../outside.png", "neutral")])


def test_a_csv_with_word_labels_gives_the_samples_of_the_equivalent_folders(tmp_path):
    folders = tmp_path / "folders"
    write_folders(folders)
    root = tmp_path / "csvdata"
    root.mkdir()
    write_csv_twin(folders, root)
    from_folders = load_dataset({"root": str(folders), "format": "folders"})
    from_csv = load_dataset({"root": str(root), "format": "csv", "path_column": "Frame file", "label_column": "Expression"})
    assert from_csv.classes == from_folders.classes
    def as_pairs(dataset, folder):
        return sorted((sample.path.relative_to(folder).as_posix(), dataset.classes[sample.label]) for sample in dataset.samples)

    assert as_pairs(from_csv, (root / "imgs").resolve()) == as_pairs(from_folders, folders)
    assert sorted(entry.reason for entry in from_csv.dropped_entries) == ["duplicate_row", "outside_root"]


def test_csv_codes_are_named_by_label_names_and_spreadsheet_floats_read(tmp_path):
    root = tmp_path / "data"
    for index in range(4):
        write_image(root / f"{index}.png", index % 2, index)
    (root / "labels.csv").write_text("file,code,clip\n0.png,1.0,a\n1.png,0,a\n2.png,1,b\n3.png,7,b\n", encoding="utf-8")
    dataset = load_dataset({"root": str(root), "format": "csv", "path_column": "file", "label_column": "code", "group_column": "clip",
                            "label_names": {"0": "calm", "1": "tense"}})
    assert dataset.classes == ("calm", "tense")
    assert [(sample.path.name, sample.label, sample.groups["column"]) for sample in dataset.samples] == [("0.png", 1, "a"), ("1.png", 0, "a"), ("2.png", 1, "b")]
    assert [entry.reason for entry in dataset.dropped_entries] == ["unknown_label"]


def test_a_csv_class_whose_rows_are_all_dropped_is_an_error_naming_it(tmp_path):
    root = tmp_path / "data"
    for index in range(2):
        write_image(root / f"{index}.png", 0, index)
    (root / "junk.png").write_bytes(b"not an image")
    (root / "labels.csv").write_text("path,label\n0.png,calm\n1.png,calm\njunk.png,tense\ngone.png,tense\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"class\(es\) 'tense' have no images in .*labels.csv that can be used "
                                           r"\(dropped there: 1 unreadable, 1 missing_file\)"):
        load_dataset({"root": str(root), "format": "csv"})


def test_format_settings_are_checked_in_the_one_pass(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root)
    path = matrix_toml(tmp_path / "m.toml", root, 'format = "folders"\nclases = ["neutral"]\ngroup_pattern = "no group"\n', "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "dataset.clases: unknown key 'clases' (did you mean 'classes'?)" in error
    assert "dataset.group_pattern: needs a group in parentheses" in error
    path = matrix_toml(tmp_path / "k.toml", root, 'format = "folders"\ngroup_by = "signer"\n', "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 2
    assert "dataset.group_by: unknown grouping key 'signer': this data offers 'folder', 'sequence'" in capsys.readouterr().err
    path = matrix_toml(tmp_path / "n.toml", root, 'format = "folderz"\n', "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "dataset.format: plugin 'folderz' is not installed (did you mean 'folders'?)" in error
    assert error.startswith("error: ") and "problems" not in error  # that problem alone, on one line


def test_feph_run_ids_do_not_depend_on_the_new_dataset_keys_at_their_defaults(tmp_path, synthetic_feph, capsys):
    plain = matrix_toml(tmp_path / "a.toml", synthetic_feph, "", "[experiments.A]\n")
    spelled = matrix_toml(tmp_path / "b.toml", synthetic_feph, 'format = "feph"\ngroup_pattern = ""\n', "[experiments.A]\n")
    ids = []
    for path in (plain, spelled):
        assert main([str(path), "--dry-run", "--json"]) == 0
        ids.append([run["id"] for run in json.loads(capsys.readouterr().out)])
    assert ids[0] == ids[1]


def test_no_ft_is_refused_at_the_dry_run_naming_the_classes_the_model_lacks(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root, classes=("neutral", "happy", "raised_brows"))
    model_file = tmp_path / "savchenko.keras"
    write_keras_archive(model_file)
    experiments = f'[experiments.B]\nfine_tune = false\noptions.mobilenet.weights = "{model_file}"\n'
    path = matrix_toml(tmp_path / "m.toml", root, f'format = "folders"\ngroup_pattern = \'{PATTERN}\'\n', experiments)
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "experiments.B.fine_tune: No-FT evaluates the pretrained classifier of 'mobilenet', which has no class 'raised_brows'" in error
    assert "(its classes: 'anger', 'disgust', 'fear'," in " ".join(error.split()), "quoted: a stray space would show"


#: A pretrained classifier's own names for the four classes, in another order and case, and one
#: class the data lacks (No-FT drops its output).
MODEL_CLASSES = ["Raised_Brows", "yawn", "NEUTRAL", "puffed_cheeks", "Furrowed_Brows"]


def keras_classifier(path: Path, outputs: int) -> Path:
    """A tiny whole Keras classifier for 32 px RGB images with ``outputs`` softmax outputs."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=2, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs)))
    keras.Model(inputs, keras.layers.Dense(outputs, activation="softmax", name="preds")(features)).save(path)
    return path


def keras_no_ft(model_file: Path, classes: list[str]) -> str:
    return f"""
    [experiments.K]
    model = "keras_model"
    fine_tune = false
    options.keras_model.file = "{model_file}"
    options.keras_model.pretrained_classes = {json.dumps(classes)}
    """


def test_no_ft_maps_a_keras_classifiers_own_class_names_to_the_datasets(tmp_path):
    import io

    import keras
    from rich.console import Console

    from feph_finetune.data.preparation import DataSource, prepare
    from feph_finetune.session import Session

    root = tmp_path / "data"
    write_folders(root)
    model_file = keras_classifier(tmp_path / "brows.keras", len(MODEL_CLASSES))
    path = matrix_toml(tmp_path / "m.toml", root, f'format = "folders"\ngroup_pattern = \'{PATTERN}\'\n', keras_no_ft(model_file, MODEL_CLASSES))
    session = Session(path, executor="inline", output=tmp_path / "runs", console=Console(file=io.StringIO()))
    run, = session.plan()
    runner = session.runner(source=DataSource())
    runner.run_one(run)
    record = session.store.result(run.id)
    assert record["status"] == "done", record["error"]
    assert record["classes"] == ["furrowed_brows", "neutral", "puffed_cheeks", "raised_brows"]
    assert "yawn" in record["notes"][0]
    data = prepare(run, session.plugins, runner.source, runner.context_factory(run, {}), session.matrix.seed)
    raw = keras.models.load_model(model_file, compile=False).predict(data.test.pixels().astype("float32"), verbose=0)
    kept = raw[:, [4, 2, 3, 0]]  # the model's columns of furrowed_brows, neutral, puffed_cheeks, raised_brows
    _, stored = session.store.predictions(run.id)
    np.testing.assert_allclose(stored, kept / kept.sum(axis=1, keepdims=True), atol=1e-5)  # two float32 passes over other batches
    assert not np.allclose(stored, raw[:, :4] / raw[:, :4].sum(axis=1, keepdims=True), atol=1e-3)  # the order matters


def test_no_ft_with_a_keras_classifier_lacking_a_dataset_class_is_refused_at_the_dry_run(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root)
    classes = ["NEUTRAL", "raised_brows", "yawn", "Furrowed_Brows"]
    model_file = keras_classifier(tmp_path / "brows.keras", len(classes))
    path = matrix_toml(tmp_path / "m.toml", root, f'format = "folders"\ngroup_pattern = \'{PATTERN}\'\n', keras_no_ft(model_file, classes))
    assert main([str(path), "--dry-run"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "No-FT evaluates the pretrained classifier of 'keras_model', which has no class 'puffed_cheeks' of the dataset" in error
    assert "'neutral'" not in error and "'furrowed_brows'" not in error  # matched ignoring case


def test_runs_record_whether_their_data_had_grouping_and_the_reports_say_when_not(tmp_path, capsys):
    from feph_finetune.results.reports import UNGROUPED_TITLE

    root = tmp_path / "data"
    write_folders(root)
    model_file = keras_classifier(tmp_path / "brows.keras", len(MODEL_CLASSES))
    experiments = keras_no_ft(model_file, MODEL_CLASSES)
    for name, dataset, grouped in (("grouped", f"group_pattern = '{PATTERN}'\n", True), ("ungrouped", "", False)):
        path = matrix_toml(tmp_path / f"{name}.toml", root, 'format = "folders"\n' + dataset, experiments)
        output = tmp_path / name
        assert main([str(path), "--output", str(output), "--executor", "inline"]) == 0
        record, = results(output)
        assert record["status"] == "done" and record["grouped"] is grouped, record.get("error")
        capsys.readouterr()
        assert main(["report", str(output), "--figures", str(tmp_path / f"{name}_figures")]) == 0
        title = " ".join(UNGROUPED_TITLE.split())
        assert (title in " ".join(capsys.readouterr().out.split())) is not grouped
        assert (title in " ".join((tmp_path / f"{name}_figures" / "report.md").read_text().replace("\\", "").split())) is not grouped


def test_the_papers_column_is_shown_for_fephs_seven_classes_only_however_asked(tmp_path, synthetic_feph, capsys):
    """``[report] paper = true`` (the report after a matrix) and ``report --paper`` add the
    published accuracy beside FePh's classes; a table of other classes drops the column, saying why."""
    note = "no paper column: the paper published results for FePh's seven classes only"
    seven = keras_classifier(tmp_path / "seven.keras", 7)
    brows_root = tmp_path / "brows"
    write_folders(brows_root)
    brows = keras_classifier(tmp_path / "brows.keras", len(MODEL_CLASSES))
    cases = {  # name: (data root, [dataset] keys, experiment, FePh's classes)
        "feph": (synthetic_feph, "", f'[experiments.M0]\nlabel = "No-FT"\nfine_tune = false\noptions.mobilenet.weights = "{seven}"\n', True),
        "brows": (brows_root, f'format = "folders"\ngroup_pattern = \'{PATTERN}\'\n', keras_no_ft(brows, MODEL_CLASSES), False),
    }
    for name, (root, dataset, experiments, fephs) in cases.items():
        path = matrix_toml(tmp_path / f"{name}.toml", root, dataset, experiments + "\n[report]\npaper = true\n")
        output = tmp_path / f"{name}_runs"
        capsys.readouterr()
        assert main([str(path), "--output", str(output), "--executor", "inline"]) == 0
        after_matrix = capsys.readouterr().out
        assert main(["report", str(output), "--paper"]) == 0
        for text in (after_matrix, capsys.readouterr().out):
            table = text[text.index("Exploratory phase (paper Table 4)"):]
            header = table.splitlines()[table.splitlines().index(next(line for line in table.splitlines() if line.startswith("─"))) - 1]
            assert ("paper" in header.split()) is fephs, table
            assert ("52.0" in table.split()) is fephs  # the paper's No-FT accuracy for MobileNet
            assert (note in " ".join(table.split())) is not fephs, table


def run_matrix(tmp_path: Path, root: Path, dataset: str, experiments: str, *flags: str) -> Path:
    """Run a tiny matrix in this process; its results folder."""
    path = matrix_toml(tmp_path / "m.toml", root, dataset, experiments)
    output = tmp_path / "runs"
    assert main([str(path), "--output", str(output), "--executor", "inline", *flags]) == 0
    return output


def results(output: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(output.glob("*/result.json"))]


@pytest.mark.slow(45)
def test_a_four_class_folders_matrix_runs_both_phases_and_every_output_names_its_classes(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root)
    experiments = """
    [experiments.A]
    phases = ["exploratory", "cv"]
    save_model = true
    [experiments.B]
    phases = ["exploratory", "cv"]
    batch_size = 8
    """
    output = run_matrix(tmp_path, root, f'format = "folders"\ngroup_pattern = \'{PATTERN}\'\n', experiments)
    records = results(output)
    assert len(records) == 6 and all(record["status"] == "done" for record in records), [r.get("error") for r in records]
    assert all(record["classes"] == sorted(FOUR) for record in records)
    assert all(set(record["metrics"]["sensitivity"]) == set(FOUR) for record in records)
    capsys.readouterr()
    figures = tmp_path / "figures"
    assert main(["report", str(output), "--format", "csv", "--figures", str(figures)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert all(name in header for name in FOUR)
    assert all(name.replace("_", "\\_") in (figures / "report.md").read_text() for name in FOUR)  # markdown-escaped
    bundle = next(output.glob("A-x-*"))
    assert json.loads((bundle / "bundle.json").read_text())["classes"] == sorted(FOUR)
    out = tmp_path / "predicted.csv"
    assert main(["predict", str(bundle), str(root / "neutral"), "--out", str(out)]) == 0
    columns = out.read_text().splitlines()[0].split(",")
    assert {f"p_{name}" for name in FOUR} <= set(columns)


@pytest.mark.parametrize("count", [2, 12])
def test_two_and_twelve_classes_run_end_to_end(tmp_path, capsys, count):
    names = tuple(f"marker_{index:02d}" for index in range(count))
    root = tmp_path / "data"
    write_folders(root, classes=names, videos=2 if count == 12 else 3)
    output = run_matrix(tmp_path, root, f'format = "folders"\ngroup_pattern = \'{PATTERN}\'\ntest_fraction = 0.5\n', "[experiments.A]\n")
    record, = results(output)
    assert record["status"] == "done", record.get("error")
    assert len(record["metrics"]["confusion"]) == count
    capsys.readouterr()
    assert main(["report", str(output)]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if " acc. " in line)
    short = [f"m{index}" for index in range(count)] if count == 2 else [f"m{index:02d}" for index in range(count)]
    assert header.split()[3:3 + count] == short, table  # one distinct, narrow column per class, named in the legend
    assert f"{short[-1]} marker_{count - 1:02d}" in " ".join(table.split()), table
    if count == 2:
        assert len(header) <= 80, table


#: The README's example of a third-party dataset format ("Your own data"), verbatim.
JSONL_FORMAT = '''
"""A dataset format for a JSON-lines file: {"image": "clips/a_1.png", "label": "smile", "clip": "a"} per line."""
import json

from feph_finetune import Dataset, DroppedEntry, Option, Sample, files_fingerprint, hookimpl, resolve_inside

REASONS = {"missing_file": "no such image", "outside_root": "image outside the dataset folder"}


@hookimpl
def plugin_options():
    return {"annotations": Option("annotations.jsonl", "the JSON-lines file, relative to the root")}


@hookimpl
def load_dataset(root, settings):
    path, folder = root / settings["annotations"], root.resolve()
    lines = [(number, json.loads(text)) for number, text in enumerate(path.read_text().splitlines(), 1) if text.strip()]
    classes = tuple(sorted({entry["label"] for _, entry in lines}))
    samples, dropped = [], []
    for number, entry in lines:
        found = resolve_inside(folder, entry["image"])
        if isinstance(found, str):
            dropped.append(DroppedEntry(number, entry["image"], found))
        else:
            samples.append(Sample(found[1], classes.index(entry["label"]), {"clip": entry["clip"]}))
    fingerprint = files_fingerprint(path, folder, [sample.path for sample in samples])
    return Dataset(root, samples, classes, dropped, REASONS, fingerprint)
'''


def test_a_third_party_format_installed_by_entry_point_runs_a_tiny_matrix(tmp_path, monkeypatch, capsys):
    import importlib

    from conftest import write_distribution

    site = tmp_path / "site"
    write_distribution(site, "jsonl", JSONL_FORMAT)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    root = tmp_path / "data"
    lines = []
    for label, name in enumerate(("calm", "smile", "frown")):
        for clip in range(3):
            for frame in range(2):
                image = f"clips/{name}{clip}_{frame}.png"
                write_image(root / image, label, hash((name, clip, frame)) % 10_000)
                lines.append(json.dumps({"image": image, "label": name, "clip": f"{name}{clip}"}))
    lines.append(json.dumps({"image": "../escape.png", "label": "calm", "clip": "x"}))
    (root / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["data", str(root), "--format", "jsonl", "--group-by", "clip", "--json"]) == 0
    description = json.loads(capsys.readouterr().out)
    assert description["classes"] == {"calm": 6, "frown": 6, "smile": 6} and description["dropped"]["outside_root"] == 1
    output = run_matrix(tmp_path, root, 'format = "jsonl"\ngroup_by = "clip"\n', "[experiments.A]\n")
    record, = results(output)
    assert record["status"] == "done", record.get("error")
    assert record["classes"] == ["calm", "frown", "smile"]


def test_a_dataset_whose_root_and_file_names_are_not_utf8_runs(tmp_path, capsys):
    """Linux allows any bytes in a name (Python holds the undecodable ones as U+DC80-U+DCFF); hashing
    such a path as UTF-8 text failed every run. \\xfe and \\xff never occur in UTF-8."""
    root = tmp_path / os.fsdecode(b"data\xff")
    write_folders(tmp_path / "plain", classes=FOUR[:2])  # OpenCV crashes on a name that is not UTF-8
    (tmp_path / "plain").rename(root)
    for path in sorted(root.glob("*/*.png"))[::2]:
        path.rename(path.with_name(os.fsdecode(path.stem.encode() + b"\xfe.png")))
    path = matrix_toml(tmp_path / "m.toml", tmp_path / "set_below", f'format = "folders"\ngroup_pattern = \'{PATTERN}\'\n', '[experiments.A]\nphases = ["exploratory"]\n')
    output = tmp_path / "runs"
    assert main([str(path), "--set", f"dataset.root={root}", "--output", str(output), "--executor", "inline"]) == 0  # a TOML file is UTF-8
    (record,) = results(output)
    assert record["status"] == "done", record.get("error")


def test_path_hashes_are_of_the_bytes_on_disk_and_unchanged_for_utf8_names(tmp_path):
    """A frame array's key hashes its samples' paths: as UTF-8 for a UTF-8 name (as before, so
    that no key changes), as the bytes on disk for any other name."""
    import hashlib

    from feph_finetune.data.preparation import DataSource

    for name in ("data_é", os.fsdecode(b"data\xff")):
        root = tmp_path / name
        write_folders(tmp_path / "plain", classes=FOUR[:2], videos=1)  # OpenCV crashes on a name that is not UTF-8
        (tmp_path / "plain").rename(root)
        dataset = load_dataset({"root": str(root), "format": "folders"})
        expected = hashlib.sha256(b"\0".join(bytes(sample.path) for sample in dataset.samples)).hexdigest()
        assert DataSource.frames_key(dataset, [], 32)[1] == expected
    assert bytes(Path("data_é")) == "data_é".encode("utf-8")


def test_a_class_whose_name_is_not_utf8_is_refused_naming_it(tmp_path, capsys):
    root = tmp_path / "data"
    write_folders(root, classes=("happy", "sad"), videos=1)
    (root / "sad").rename(root / os.fsdecode(b"sad\xff"))  # OpenCV crashes on a name that is not UTF-8
    assert main(["data", str(root), "--format", "folders"]) == 2
    error = capsys.readouterr().err
    assert f"class 'sad\\xff' in {root}: not valid UTF-8" in error and "rename it" in error


@pytest.mark.parametrize("header, data, repeated", [
    ("path,label,group,label", {"format": "csv", "group_column": "group"}, "'label' appears 2 times (columns 2, 4)"),
    ("External ID,Facial_label,Facial_label", {}, "'Facial_label' appears 2 times (columns 2, 3)"),
])
def test_a_labels_csv_repeating_a_column_it_reads_is_refused_naming_line_1_and_the_column(tmp_path, header, data, repeated):
    root = tmp_path / "data"
    write_image(root / "images" / "a.png", 0, 0)
    (root / "labels.csv").write_text(f"{header}\nimages/a.png,1,g,2\n", encoding="utf-8")
    with pytest.raises(DatasetError) as raised:
        load_dataset({"root": str(root), **data})
    assert f"labels CSV {root / 'labels.csv'} line 1: column {repeated}" in str(raised.value)


def test_label_names_giving_one_code_twice_is_refused_at_the_dry_run(tmp_path, capsys):
    """``"1"`` and ``"1.0"`` are one code as a cell reads: one of the two classes would win silently."""
    root = tmp_path / "data"
    for index in range(4):
        write_image(root / f"{index}.png", index % 2, index)
    (root / "labels.csv").write_text("path,label\n0.png,0\n1.png,1\n2.png,0\n3.png,1\n", encoding="utf-8")
    path = matrix_toml(tmp_path / "m.toml", root, 'format = "csv"\nlabel_names = { "0" = "calm", "1" = "tense", "1.0" = "wild" }\n', "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 2
    assert "names one code twice ('1' and '1.0')" in " ".join(capsys.readouterr().err.split())


def test_a_labels_csv_repeating_a_column_is_refused_at_the_dry_run(tmp_path, capsys):
    root = tmp_path / "data"
    write_image(root / "a.png", 0, 0)
    (root / "labels.csv").write_text("path,label,group,label\na.png,calm,g,tense\n", encoding="utf-8")
    path = matrix_toml(tmp_path / "m.toml", root, 'format = "csv"\n', "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 2
    assert f"labels CSV {root / 'labels.csv'} line 1: column 'label' appears 2 times (columns 2, 4)" in " ".join(capsys.readouterr().err.split())
