"""What a person sees on the console: output piped into ``head``, TensorFlow's start-up noise, and
tables and logs at 80 columns."""

from __future__ import annotations

import errno
import io
import os
import re
import shlex
import subprocess
import sys

import pytest
from rich.text import Text

from conftest import REPO, run_cli, write_matrix
from fake_store import write_fake_store
from fephfixture import write_png


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake") / "runs"
    write_fake_store(root)
    return root


def cli_with_reader_gone(*args: str) -> subprocess.CompletedProcess:
    """``python -m feph_finetune ARGS | head -0``: the reader closes the pipe before anything is
    written, so the command's first write (or its last flush) meets a broken pipe."""
    process = subprocess.Popen([sys.executable, "-m", "feph_finetune", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "80"})
    process.stdout.close()
    stderr = process.stderr.read().decode()
    return subprocess.CompletedProcess(process.args, process.wait(timeout=300), "", stderr)


def test_commands_piped_into_a_closed_reader_end_quietly(fake_store, synthetic_feph, tmp_path):
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n[experiments.FT2]\n")
    for args in (
        ["plugins", "--json"], ["plugins"], ["report", str(fake_store)], ["report", str(fake_store), "--format", "json"],
        [str(matrix), "--dry-run"], [str(matrix), "--dry-run", "--json"], ["data", str(synthetic_feph)],
    ):
        result = cli_with_reader_gone(*args)
        assert result.stderr == "", f"{args}: {result.stderr}"
        assert result.returncode == 141, args  # as if SIGPIPE had ended it (128 + 13), not 1 ("some runs failed")


def cli_with_full_stdout(*args: str) -> subprocess.CompletedProcess:
    """``python -m feph_finetune ARGS > /dev/full`` (a closed stdout is devnull: test_closed_descriptors.py)."""
    command = f"{shlex.join([sys.executable, '-m', 'feph_finetune', *args])} > /dev/full"
    return subprocess.run(["sh", "-c", command], cwd=REPO, stderr=subprocess.PIPE, text=True, timeout=300, env={**os.environ, "COLUMNS": "80"})


def test_commands_whose_stdout_cannot_be_written_say_so_in_one_line(fake_store, synthetic_feph, tmp_path):
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n[experiments.FT2]\n")
    for args in (
        ["plugins", "--json"], ["plugins"], ["report", str(fake_store)], ["report", str(fake_store), "--format", "csv"],
        [str(matrix), "--dry-run", "--json"], ["data", str(synthetic_feph), "--json"],
    ):
        result = cli_with_full_stdout(*args)
        assert result.stderr == "error: the output could not be written: no space left on device\n", f"{args}: {result.stderr}"
        assert result.returncode == 2, args


#: What TensorFlow 2.21 prints from C++ on its own when imported or when it looks for devices.
TENSORFLOW_NOTICES = ("absl::InitializeLog", "cuda", "cuInit", "cpu_feature_guard", "oneDNN", "I0000", "E0000", "W0000")

TINY_BUNDLE_MODEL = """
import sys, keras
inputs = keras.Input((32, 32, 3))
outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
keras.Model(inputs, outputs).save(sys.argv[1])
"""


def tiny_bundle(folder):
    """A bundle of a 7-class model without preprocessing, written in a separate process."""
    import json

    from feph_finetune.api import CLASSES
    from feph_finetune.predict.bundle import FORMAT, FORMAT_VERSION, MANIFEST, MODEL_FILE

    folder.mkdir()
    subprocess.run([sys.executable, "-c", TINY_BUNDLE_MODEL, str(folder / MODEL_FILE)], check=True, capture_output=True, timeout=300)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL_FILE, "input_size": 32, "classes": list(CLASSES), "preprocess": [],
        "run": {"id": "tiny", "experiment": "tiny", "phase": "exploratory", "fold": None, "seed": 1}, "config": {},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.mark.slow(35)
def test_commands_that_import_tensorflow_print_none_of_its_notices(tmp_path, synthetic_feph):

    bundle = tiny_bundle(tmp_path / "bundle")
    image = tmp_path / "face.png"
    write_png(image, (40, 40), channels=3)
    predicted = run_cli("predict", str(bundle), str(image), env={"COLUMNS": "80"})
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stderr == "", predicted.stderr
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n")
    ran = run_cli(str(matrix), "--executor", "inline", "--output", str(tmp_path / "runs"), env={"COLUMNS": "80"})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert not [notice for notice in TENSORFLOW_NOTICES if notice in ran.stdout + ran.stderr], ran.stdout + ran.stderr


def perfect_classes_store(root):
    """The fake store with some accuracies and many class sensitivities at 100%: the widest
    numbers a table meets (the demo's small test splits have such classes)."""
    import json

    write_fake_store(root)
    for index, path in enumerate(sorted(root.glob("*/result.json"))):
        record = json.loads(path.read_text(encoding="utf-8"))
        for name in list(record["metrics"]["sensitivity"])[: 1 + index % 7]:
            record["metrics"]["sensitivity"][name] = 1.0
        if index % 5 == 0:
            record["metrics"]["accuracy"] = 1.0
        path.write_text(json.dumps(record), encoding="utf-8")
    return root


def printed_at(columns: int, capsys, monkeypatch, *args: str) -> str:
    from feph_finetune.cli import main

    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def assert_readable(text: str, names: set[str], columns: int = 80) -> None:
    """No line wider than ``columns`` display cells, nothing cut with an ellipsis, and every name
    printed whole (as a word of some line, not split across two)."""
    from rich.cells import cell_len

    assert max(cell_len(line) for line in text.splitlines()) <= columns
    assert "…" not in text
    words = {word.strip(",;()[]") for line in text.splitlines() for word in line.split()}
    assert not sorted(name for name in names if name not in words), text


def test_reports_are_readable_at_80_columns(tmp_path, capsys, monkeypatch):
    from fake_store import MATRIX

    store = perfect_classes_store(tmp_path / "runs")
    names = {"configuration", "mobilenet", "efficientnet", "architecture"} | {word for _, label, *_ in MATRIX.values() for word in label.split()}
    for args in (["report", str(store)], ["report", str(store), "--paper"]):
        assert_readable(printed_at(80, capsys, monkeypatch, *args), names)
        assert_readable(printed_at(160, capsys, monkeypatch, *args), names, columns=160)


def test_dry_run_plugins_and_data_are_readable_at_80_columns(tmp_path, synthetic_feph, capsys, monkeypatch):
    from feph_finetune.config.reading import read_config
    from feph_finetune.config.matrix import build_matrix
    from feph_finetune.plugins import get_plugins

    experiments = """
    [experiments.M-FT-SGD-SAM-HF-CW-IP]
    optimizer = "sam_sgd"
    preprocess = ["face_crop", "normalize"]
    augment = ["flip"]
    class_weights = "class_weights"
    phases = ["exploratory", "cv"]
    grid = { "options.sam_sgd.rho" = [0.05, 0.1], seed = [1, 2] }
    [experiments.E]
    model = "efficientnet"
    [experiments.E.options.efficientnet]
    weights = "none"
    """
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    runs = build_matrix(read_config(matrix), get_plugins()).runs
    names = {run.id for run in runs} | {"face_crop", "normalize", "+flip", "weights=class_weights", "sam_sgd", "efficientnet", "mobilenet", "seed=1"}
    for columns in (80, 160):
        assert_readable(printed_at(columns, capsys, monkeypatch, str(matrix), "--dry-run"), names, columns)
    plugins = get_plugins()
    option_names = {name for plugin in plugins.names() for name in plugins.option_defaults(plugin)}
    listing = printed_at(80, capsys, monkeypatch, "plugins")
    assert_readable(listing, set(plugins.names()) | {"options:"})
    assert all(f"{name}=" in listing for name in option_names)
    assert_readable(printed_at(80, capsys, monkeypatch, "data", str(synthetic_feph)), {"conflicting_labels", "duplicate_row", "surprise"})


def test_plugins_settings_prints_every_word_whole_at_80_columns(capsys, monkeypatch):
    """Five columns of settings do not fit 80 columns without cutting words ("cross-validat/ion"):
    there the settings are listed under a heading per TOML table; a wide console keeps the table."""
    import json

    rows = json.loads(printed_at(80, capsys, monkeypatch, "plugins", "--settings", "--json"))
    words = {word.strip(",;()[]") for row in rows for text in (row["key"], row["accepts"], row["help"]) for word in text.split()} - {""}
    narrow = printed_at(80, capsys, monkeypatch, "plugins", "--settings")
    assert_readable(narrow, words)
    assert {f"[{row['table']}]" for row in rows if row["table"]} <= set(narrow.splitlines())
    wide = printed_at(240, capsys, monkeypatch, "plugins", "--settings")
    assert "┃ table" in wide
    assert_readable(wide, words, columns=240)


def test_log_lines_show_no_source_column_at_80_columns(monkeypatch):
    from feph_finetune.cli import output_console

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal: rich's log lines, wrapped to its width
    console = output_console()
    with console.capture() as captured:
        console.log("demo: the efficientnet base model classifies 54% of held-out generic faces (chance: 14%); pre-trained in 281 s")
    text = Text.from_ansi(captured.get()).plain
    assert "test_console_output.py" not in text and ".py:" not in text
    assert "pre-trained in 281 s" in " ".join(text.split()) and max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize("columns", [None, "80"])
def test_in_a_log_file_the_demos_lines_and_the_runners_have_one_format_unpadded(columns, monkeypatch):
    """A log file (or a pipe) reads with ``grep``: one timestamp style, one line per message, no
    trailing blanks, whatever COLUMNS says."""
    from feph_finetune.cli import output_console
    from feph_finetune.execution.progress import MatrixView

    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    console = output_console()
    console.file = io.StringIO()  # not a terminal, as `> log` makes it
    message = "demo: the efficientnet base model classifies 61% of held-out generic faces (chance: 14%); shipped, pre-trained once"
    console.log(message)
    MatrixView(console, []).line("running 0 runs")
    demo_line, runner_line = console.file.getvalue().splitlines()
    stamp = r"\d\d:\d\d:\d\d "
    assert re.fullmatch(stamp + re.escape(message), demo_line), demo_line
    assert re.fullmatch(stamp + re.escape("[0/0] running 0 runs"), runner_line), runner_line


def test_a_long_label_without_spaces_folds_and_every_metric_column_stays_at_80_columns(tmp_path, capsys, monkeypatch):
    import json

    from feph_finetune.results.reports import class_abbreviations
    from feph_finetune.api import CLASSES

    write_fake_store(tmp_path / "runs", experiments=["M0", "M2"])
    label, cv_label = "Ａ" * 10 + "A" * 55, "B" * 60  # 75 display cells, 10 of them wide characters
    for path in (tmp_path / "runs").glob("*/result.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["experiment"] == "M2":
            record.update(label=label, cv_label=cv_label)
        path.write_text(json.dumps(record), encoding="utf-8")
    for args in (["report", str(tmp_path / "runs")], ["report", str(tmp_path / "runs"), "--paper"]):
        text = printed_at(80, capsys, monkeypatch, *args)
        abbreviations = set(class_abbreviations(list(CLASSES)).values())
        assert_readable(text, {"configuration", "acc.", "sens.", "runs", "time", *abbreviations})
        for table in text.split("\n\n"):
            if "acc." in table:  # the metric headers of the exploratory and the cross-validation table
                assert abbreviations <= set(table.split()), table
        folded = "".join(word for line in text.splitlines() for word in line.split() if set(word) <= set("ＡA"))
        assert label in folded, "the label is folded, not cut"


def test_a_dry_runs_variant_folds_a_long_option_between_its_parts(tmp_path, synthetic_feph, capsys, monkeypatch):
    experiments = """
    [experiments.Aug]
    augment = ["flip"]
    preprocess = ["face_crop", "normalize"]
    class_weights = "class_weights"
    grid = { "options.flip.mode" = ["double", "random"], "options.face_crop.margin" = [0.1, 0.25] }
    """
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    text = printed_at(80, capsys, monkeypatch, str(matrix), "--dry-run")
    words = {word for line in text.splitlines() for word in line.split()}
    assert {"options.flip.", "mode=double", "mode=random", "margin=0.1", "margin=0.25"} <= words, text
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text


#: Counters as plugins name them through ``RunContext.count``: long names, and twelve of them.
COUNTERS = ["face_fallback", "frames_without_face_found", "images_rejected_blurry", *(f"{letter * 12}" for letter in "abcdefghi")]


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_counters_continue_in_further_tables_and_every_number_stays_whole(tmp_path, capsys, monkeypatch, columns):
    """The runs/counters table splits its number columns over several tables (as the per-class
    tables do), the names repeated in each, so that no count, run number or time is cut."""
    import json

    write_fake_store(tmp_path / "runs", experiments=["M0", "M2"])
    sums: dict[tuple[str, str], dict[str, int]] = {}
    for index, path in enumerate(sorted((tmp_path / "runs").glob("*/result.json"))):
        record = json.loads(path.read_text(encoding="utf-8"))
        record["counters"] = {name: 1000 * (position + 1) + index for position, name in enumerate(COUNTERS)}
        totals = sums.setdefault((record["phase"], record["experiment"]), dict.fromkeys(COUNTERS, 0))
        for name, value in record["counters"].items():
            totals[name] += value
        path.write_text(json.dumps(record), encoding="utf-8")
    text = printed_at(columns, capsys, monkeypatch, "report", str(tmp_path / "runs"))
    fitting = {name for name in COUNTERS if len(name) + len("architecture  configuration  ") <= columns}
    assert_readable(text, {"architecture", "configuration", "mobilenet", "exploratory", "runs", "failed", "No-FT", *fitting}, columns)
    cost = [block for block in text.split("\n\n") if block.startswith("Runs, mean training time")]
    assert all("architecture" in block.split() for block in cost), "the name columns repeat in every part"
    words = {word for block in cost for word in block.split()}
    assert {"5", "1", "0"} <= words  # runs of a cv row and of an exploratory row, no failure
    for totals in sums.values():
        assert {str(value) for value in totals.values()} <= words, text
    assert len(cost) > 1 or columns > 80


@pytest.mark.parametrize("columns", [40, 80])
def test_a_dry_run_with_a_long_experiment_name_keeps_its_values_whole(tmp_path, synthetic_feph, capsys, monkeypatch, columns):
    experiments = """
    [experiments.A_very_long_experiment_name_for_fine_tuning_with_everything_switched_on]
    grid = { "options.mobilenet.dropout" = [0.25, 0.5], "options.adam.lr" = [0.001, 0.0001] }
    """
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    text = printed_at(columns, capsys, monkeypatch, str(matrix), "--dry-run")
    assert_readable(text, {"mobilenet", "face_crop"}, columns)
    words = {word for line in text.splitlines() for word in line.split()}
    for value in ("0.25", "0.5", "0.001", "0.0001"):
        assert value in words or any(word.endswith(f"={value}") for word in words), text


@pytest.mark.parametrize("word, width, pieces", [
    ("options.flip.mode=double", 16, ["options.flip.", "mode=double"]),
    ("/tmp/h12b/v/multi.tiff", 20, ["/tmp/h12b/v/", "multi.tiff"]),  # a path's "/" first: the file's name stays whole
    ("options.adam.lr=0.001]", 19, ["options.adam.lr=", "0.001]"]),  # never inside a number
    ("dropout=0.25,", 11, ["dropout=", "0.25,"]),
    ("lr=1e-05", 5, ["lr=", "1e-05"]),
    ("1234567", 3, ["123", "456", "7"]),  # a number wider than the column has to break
    ("手語手語手語", 5, ["手語", "手語", "手語"]),  # two cells a character
    ("नमस्तेनमस्ते", 2, ["नम", "स्ते", "नम", "स्ते"]),  # a virama or vowel sign (no cell of its own) stays with its consonant
    ("👩‍💻👩‍💻👩‍💻", 4, ["👩‍💻👩‍💻", "👩‍💻"]),  # a ZWJ sequence is one picture
    ("short", 10, ["short"]),
])
def test_a_word_folds_at_display_cells_between_character_clusters(word, width, pieces):
    from rich.cells import cell_len

    from feph_finetune.results.reports import fold_long_words

    folded = fold_long_words(word, width).split("\n")
    assert "".join(folded) == word
    assert folded == pieces, [cell_len(piece) for piece in folded]


#: Twelve classes with long names: their per-class columns do not fit 80 columns in one table.
TWELVE = [f"{word}_expression_marker" for word in
          "raised furrowed puffed squinted pursed tilted nodding shaking widened lowered clenched blinking".split()]


def test_a_twelve_class_confusion_matrix_fits_80_columns_in_two_tables():
    import io

    import numpy as np
    from rich.console import Console

    from feph_finetune.results.confusion import confusion_table
    from feph_finetune.results.reports import class_abbreviations

    counts = np.random.default_rng(0).integers(0, 3000, (len(TWELVE), len(TWELVE)))
    row = {"sensitivity": dict.fromkeys(TWELVE, 0.5), "phase": "cv", "experiment": "M2", "cv_label": "M2", "label": "FT", "variant": {}, "model": "mobilenet"}
    runs = [{"status": "done", "metrics": {"confusion": counts.tolist()}, "classes": TWELVE}]
    buffer = io.StringIO()
    Console(file=buffer, width=80).print(confusion_table(row, runs, 80))
    text = buffer.getvalue()
    assert_readable(text, set(TWELVE) | {"images", "sens."})
    short = class_abbreviations(TWELVE)
    headers = [line.split() for line in text.splitlines() if line.startswith("true class")]
    assert len(headers) == 2 and [word for words in headers for word in words[2:] if word in short.values()] == [short[name] for name in TWELVE]
    assert all(str(count) in text.split() for count in counts.ravel())  # every count shown, none cut


def test_predicts_summary_of_twelve_classes_fits_80_columns():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from feph_finetune.predict.command import print_summary
    from feph_finetune.results.reports import class_abbreviations

    bundle = SimpleNamespace(classes=TWELVE, run_id="A-x-0123456789")
    predicted = {name: index + 1 for index, name in enumerate(TWELVE)}  # 78 frames: 1%, 3%, ... 15%
    summaries = [SimpleNamespace(name="clips/sentence3.avi", frames=sum(predicted.values()), faces=70, predicted=predicted)]
    buffer = io.StringIO()
    print_summary(summaries, bundle, Console(file=buffer, width=80))  # the summary takes the console's width: a terminal of 80
    text = buffer.getvalue()
    assert_readable(text, {"frames", "faces", *class_abbreviations(TWELVE).values()})
    shares = [word for line in text.splitlines() for word in line.split() if word.endswith("%")]
    assert shares == [f"{100 * count / 78:.0f}%" for count in predicted.values()]


def test_predicts_summary_title_wraps_at_the_consoles_width_not_a_narrow_tables():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from feph_finetune.predict.command import print_summary

    bundle = SimpleNamespace(classes=["a", "b"], run_id="A-x-0123456789")
    summaries = [SimpleNamespace(name="clip.avi", frames=4, faces=4, predicted={"a": 3, "b": 1})]
    buffer = io.StringIO()
    print_summary(summaries, bundle, Console(file=buffer, width=160))
    assert buffer.getvalue().splitlines()[0] == "model A-x-0123456789: share of frames per predicted class", buffer.getvalue()


def test_a_failed_write_to_another_open_file_is_not_reported_as_the_output(tmp_path):
    """Only stdout's own failures are "the output could not be written"; a file the command
    opened and could not write (no file name on the error either) still stops it as before."""
    from feph_finetune.cli import guarded
    from feph_finetune.printable import EscapingConsole
    from feph_finetune.stdout import OutputError

    def writing_a_full_file(args, console):
        with open("/dev/full", "w") as file:
            file.write("x")

    with pytest.raises(OSError) as caught:
        guarded(writing_a_full_file, None, EscapingConsole(file=io.StringIO()), EscapingConsole(file=io.StringIO()))
    assert caught.value.errno == errno.ENOSPC and not isinstance(caught.value, OutputError)
