"""Figures, report.md, the console confusion matrix, and the [report] table, on a fake results store."""

from __future__ import annotations

import errno
import io
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console

from feph_finetune.cli import main
from feph_finetune.results.confusion import confusion_table, row_shares, summed_confusion
from feph_finetune.results.reports import configurations
from feph_finetune.results.store import RunStore
from feph_finetune.results.stats import mean_ci95, t_ppf

from conftest import REPO, run_cli, write_matrix
from fake_store import CLASSES, FOLDS, history_of, metrics_of, sample_confusion, write_fake_store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPERIMENTS = ["M0", "M2", "E2"]  # a baseline and two fine-tuned configurations, both phases each

DOCUMENTED = {
    "cv_accuracy.png",
    "sensitivity_exploratory.png",
    "sensitivity_cv.png",
    *(f"confusion_{phase}_{name}.png" for phase in ("exploratory", "cv") for name in EXPERIMENTS),
    *(f"learning_curves_{phase}_{name}.png" for phase in ("exploratory", "cv") for name in ("M2", "E2")),  # No-FT trains nothing
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_fake_store(root, experiments=EXPERIMENTS)
    return root


@pytest.fixture(scope="module")
def report_dir(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "figures"
    assert main(["report", str(store), "--paper", "--figures", str(out)]) == 0
    return out


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path.name
    return struct.unpack(">II", data[16:24])


def test_figures_are_the_documented_pngs_and_not_blank(report_dir, tmp_path):
    import matplotlib.image

    assert {path.name for path in report_dir.glob("*.png")} == DOCUMENTED
    for path in report_dir.glob("*.png"):
        width, height = png_size(path)
        blank = tmp_path / f"blank-{path.name}"
        matplotlib.image.imsave(blank, np.ones((height, width, 3)))
        assert png_size(blank) == (width, height)
        assert path.stat().st_size > 3 * blank.stat().st_size, path.name


def test_report_md_embeds_every_figure_and_holds_the_tables(report_dir, store):
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(linked) == sorted(DOCUMENTED)  # relative links: the folder can be moved as it is
    assert "### Exploratory phase (paper Table 4)" in text and "### Cross-validation phase (paper Table 5)" in text
    m2 = next(row for row, _ in configurations(RunStore(store).records()) if row["phase"] == "cv" and row["experiment"] == "M2")
    cv_line = next(line for line in text.splitlines() if line.startswith("| M2 |"))
    assert f"{100 * m2['accuracy']:.1f} ({100 * m2['accuracy_std']:.1f})" in cv_line
    assert "62.4 (3.2)" in cv_line  # --paper reaches report.md too


def test_summed_confusion_adds_the_folds(store):
    for row, runs in configurations(RunStore(store).records()):
        counts, folds = summed_confusion(runs, CLASSES)
        assert folds == (FOLDS if row["phase"] == "cv" else 1)
        assert counts.tolist() == np.sum([run["metrics"]["confusion"] for run in runs], axis=0).tolist()
        if row["phase"] == "exploratory":  # the diagonal of the row shares is the sensitivity
            (run,) = runs
            assert np.diag(row_shares(counts)) == pytest.approx([run["metrics"]["sensitivity"][name] for name in CLASSES])


def test_mean_ci95_is_the_t_interval():
    values = [61.0, 64.5, 58.2, 66.0, 62.7]
    interval = mean_ci95(values)
    half = t_ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert t_ppf(0.975, 4) == pytest.approx(2.7764451, abs=1e-6)  # the t table's 4-dof value
    assert interval["ci95"] == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert mean_ci95([60.0])["ci95"] is None
    with pytest.raises(ValueError, match="mean_ci95: value at position 1"):
        mean_ci95([1.0, float("nan")])


def test_confusion_in_the_console_shows_the_summed_counts_with_colour(store, capsys):
    assert main(["report", str(store), "--confusion", "M2"]) == 0
    out = capsys.readouterr().out
    assert "M2 (FT-SGD + IP + HF), cross-validation, summed over 5 folds" in out
    assert "FT-SGD + IP + HF (mobilenet), exploratory phase" in out
    row, runs = next(pair for pair in configurations(RunStore(store).records()) if pair[0]["phase"] == "cv" and pair[0]["experiment"] == "M2")
    counts, _ = summed_confusion(runs, CLASSES)
    anger = [line for line in out.splitlines() if line.startswith("anger")][1]  # exploratory first, then cv
    assert anger.split()[1:9] == [str(value) for value in counts[0]] + [str(counts[0].sum())]

    buffer = io.StringIO()
    Console(file=buffer, width=80, force_terminal=True, color_system="truecolor").print(confusion_table(row, runs))
    assert "\x1b[" in buffer.getvalue() and ";48;2;" in buffer.getvalue()  # background colour by row share
    assert max(len(line) for line in buffer.getvalue().splitlines() if "\x1b" not in line) <= 80


def test_unknown_configuration_for_confusion_exits_2_with_the_names(store):
    result = run_cli("report", str(store), "--confusion", "M3")
    assert result.returncode == 2
    assert "--confusion M3: no configuration 'M3'" in result.stderr and "M0, M2, E2" in result.stderr


REPORTING_IMPORTS = (
    "import sys; from feph_finetune.cli import main; code = main(sys.argv[1:]); "
    "sys.stderr.write('imported: ' + ' '.join(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules)); sys.exit(code)"
)


def test_report_tables_fit_an_80_column_pipe_without_importing_tensorflow(store):
    result = subprocess.run([sys.executable, "-c", REPORTING_IMPORTS, "report", str(store), "--paper"],
                            capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80 and "…" not in result.stdout
    assert "62.4" in result.stdout and "±3.2" in result.stdout
    assert result.stderr.endswith("imported: ")  # neither TensorFlow nor matplotlib for the tables


WITHOUT_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None; from feph_finetune.cli import main; sys.exit(main(sys.argv[1:]))"


def test_figures_without_matplotlib_exit_2_with_the_install_command(store, tmp_path):
    out = tmp_path / "figures"
    result = subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, "report", str(store), "--figures", str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert 'pip install "feph_finetune[plots]"' in result.stderr and f"--figures {out}" in result.stderr
    assert not out.exists() and result.stdout == ""  # refused before any work


def test_report_table_figures_without_matplotlib_is_a_configuration_error(tmp_path):
    path = write_matrix(tmp_path / "m.toml", tmp_path, "[experiments.A]\n", extra="[report]\nfigures = true\n")
    result = subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, str(path), "--dry-run"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert re.search(r"m\.toml:\d+ report\.figures: figures need matplotlib.*pip install \"feph_finetune\[plots\]\"", result.stderr)


def test_report_table_keys_are_validated(tmp_path):
    path = write_matrix(tmp_path / "m.toml", tmp_path, "[experiments.A]\n", extra="[report]\nfigurs = true\npaper = \"yes\"\n")
    result = run_cli(str(path), "--dry-run")
    assert result.returncode == 2
    assert "report.figurs: unknown key 'figurs' (did you mean 'figures'?)" in result.stderr
    assert "report.paper: expected boolean, got string 'yes'" in result.stderr


def test_a_matrix_with_report_figures_writes_them_after_its_runs(tmp_path, capsys, monkeypatch, synthetic_feph):
    """The runner is replaced by one that stores fake results (training is tested elsewhere)."""
    from feph_finetune.execution.job import run_record
    from feph_finetune.execution.runner import MatrixOutcome, MatrixRunner

    def fake_run_all(runner, runs):
        outcome = MatrixOutcome()
        for run in runs:
            confusion = sample_confusion(0.6, np.random.default_rng(0), scale=0.2)
            runner.store.write(run.id, "history.json", history_of([("head", 1), ("adam", 1)], 0.6, np.random.default_rng(1)))
            runner.store.finish(run.id, {**run_record(run, "done"), "metrics": metrics_of(confusion), "error": None,
                                         "timing": {"total_s": 1.0, "stages": {}}, "counters": {}})
            outcome.done.append(run.id)
        return outcome

    monkeypatch.setattr(MatrixRunner, "run_all", fake_run_all)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n", extra=f"[report]\nfigures = true\nfigures_dir = \"{tmp_path / 'shared'}\"\n")
    assert main([str(path), "--output", str(tmp_path / "runs")]) == 0
    written = {file.name for file in (tmp_path / "shared").iterdir()}
    assert written == {"report.md", "sensitivity_exploratory.png", "confusion_exploratory_A.png", "learning_curves_exploratory_A.png"}
    assert f"and {tmp_path / 'shared' / 'report.md'}" in capsys.readouterr().out


def _fonts_have(characters: str) -> bool:
    """Whether each of ``characters`` is in some font matplotlib finds (not the Last Resort placeholder)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    covered = set()
    for entry in font_manager.fontManager.ttflist:
        if not entry.name.startswith("Last Resort"):
            covered |= {chr(code) for code in FT2Font(entry.fname).get_charmap()}
    return set(characters) <= covered


@pytest.mark.parametrize("label", ["Ɑᶁ tuned", "手語-A 微調整"])
def test_labels_in_any_script_use_a_font_that_has_them_else_one_clear_warning(tmp_path, capsys, label):
    """ᶁ is not in DejaVu Sans but in STIXGeneral, which matplotlib ships: always drawn. CJK needs a
    system font (fonts-noto-cjk...): drawn where one is installed, else one warning names the
    characters, never matplotlib's "Glyph ... missing" for every label."""
    import json
    import warnings

    write_fake_store(tmp_path / "runs", experiments=["M-FT"])  # one exploratory run: three figures
    (path,) = (tmp_path / "runs").glob("*/result.json")
    record = json.loads(path.read_text(encoding="utf-8"))
    record["label"] = label
    path.write_text(json.dumps(record), encoding="utf-8")
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        assert main(["report", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures")]) == 0
    assert [str(warning.message) for warning in raised if "Glyph" in str(warning.message)] == []
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    if _fonts_have(label.replace(" ", "")):
        assert warned == []
    else:
        assert len(warned) == 1 and "no installed font has the characters" in warned[0] and "手" in warned[0]


def test_console_tables_measure_labels_in_terminal_cells():
    from fake_store import record as fake_record

    runs = [fake_record("M2", 0, "exploratory", None, metrics_of(sample_confusion(0.6, np.random.default_rng(0))), 10.0)]
    runs[0].update(cv_label="手語-A", label="手語の表情-微調整")
    from feph_finetune.results.reports import render

    for width in (160, 80):
        printed = io.StringIO()
        render(runs, "table", Console(file=printed, width=width))
        assert "手語-A" in printed.getvalue() and "手語の表情-微調整" in printed.getvalue(), printed.getvalue()


def test_figures_onto_a_disk_that_fills_leave_no_new_folder_behind(store, tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    real, saved = Figure.savefig, []

    def fill_the_disk_on_the_third(figure, target, **options):
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        saved.append(target)
        return real(figure, target, **options)

    monkeypatch.setattr(Figure, "savefig", fill_the_disk_on_the_third)
    out = tmp_path / "new" / "figures"
    assert main(["report", str(store), "--figures", str(out)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not out.exists() and list((tmp_path / "new").iterdir()) == [], "no figures folder, no temporary one"


def _with_classes(root, names: list[str]) -> None:
    """Rename the classes of every run recorded under ``root`` to ``names`` (in CLASSES' order)."""
    import json

    mapping = dict(zip(CLASSES, names))
    for path in root.glob("*/result.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("metrics"):
            record["classes"] = names
            record["metrics"]["sensitivity"] = {mapping[name]: value for name, value in record["metrics"]["sensitivity"].items()}
        path.write_text(json.dumps(record), encoding="utf-8")


def test_long_class_names_are_abbreviated_on_the_axes_and_spelled_out_in_the_captions(tmp_path, capsys):
    import warnings

    names = [f"{name} {'a very long class name ' * 5}"[:120] for name in CLASSES]
    write_fake_store(tmp_path / "runs", experiments=["M-FT"])
    _with_classes(tmp_path / "runs", names)
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        assert main(["report", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures")]) == 0
    assert [str(warning.message) for warning in raised if "constrained_layout" in str(warning.message)] == []
    assert "warning:" not in capsys.readouterr().err
    markdown = (tmp_path / "figures" / "report.md").read_text(encoding="utf-8")
    assert markdown.count(f"ang: {names[0].strip()}") >= 2, "the sensitivity and confusion captions spell the classes out"


def test_labels_too_long_to_lay_out_give_one_warning_line_not_matplotlibs(tmp_path, capsys):
    import json
    import warnings

    write_fake_store(tmp_path / "runs", experiments=["M-FT"])
    for path in (tmp_path / "runs").glob("*/result.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**record, "label": "FT " + "with a very long description " * 12}), encoding="utf-8")
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        assert main(["report", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures")]) == 0
    assert [str(warning.message) for warning in raised if "constrained_layout" in str(warning.message)] == []
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "too long to lay out" in warned[0], warned


def test_a_long_figure_warning_wraps_at_the_terminals_width(tmp_path):
    import json

    from rich.cells import cell_len

    write_fake_store(tmp_path / "runs", experiments=["M-FT"])
    for path in (tmp_path / "runs").glob("*/result.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**record, "label": "FT " + "with a very long description " * 12}), encoding="utf-8")
    result = run_cli("report", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures"), env={"COLUMNS": "80"})
    assert result.returncode == 0 and "too long to lay out" in " ".join(result.stderr.split()), result.stderr
    assert max(cell_len(line) for line in result.stderr.splitlines()) <= 80, result.stderr


def test_sigterm_while_figures_are_drawn_exits_130_leaving_no_new_folder(store, tmp_path, monkeypatch, capsys):
    import signal

    from matplotlib.figure import Figure

    real, saved = Figure.savefig, []

    def terminated_on_the_second(figure, target, **options):
        if saved:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would, while the second figure is saved
        saved.append(target)
        return real(figure, target, **options)

    monkeypatch.setattr(Figure, "savefig", terminated_on_the_second)
    out = tmp_path / "new" / "figures"
    before = signal.getsignal(signal.SIGTERM)
    assert main(["report", str(store), "--figures", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() and list((tmp_path / "new").iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before, "the command puts the previous handler back"


def test_figure_names_from_long_experiment_names_and_grid_values_fit_a_file_name():
    """A figure's name holds its experiment and grid point; cut with a digest where it would pass
    the 255 bytes a file name may have (its temporary's prefix included), still distinct."""
    from feph_finetune.results.figures import _StableNames
    from feph_finetune.data.user_files import NAME_MAX
    from feph_finetune.results.store import LONGEST_ATOMIC_NAME

    names = _StableNames()
    long_value = "v" * 300
    rows = [{"phase": "cv", "experiment": "E" * 240, "variant": {"options.x.path": long_value + end}} for end in ("1", "2", "2")]
    files = [names.file("learning_curves", row) for row in rows]
    assert all(len(name.encode()) <= LONGEST_ATOMIC_NAME < NAME_MAX for name in files), [len(name) for name in files]
    assert len(set(files)) == 3 and files[2] == files[1].replace(".png", "-2.png")
    assert names.file("confusion", {"phase": "x", "experiment": "A", "variant": {"seed": 1}}) == "confusion_x_A_seed-1.png"  # short names as before


def test_figures_onto_a_full_disk_name_the_figures_folder_not_its_temporary(store, tmp_path, monkeypatch, capsys):
    """The figures are drawn into a hidden temporary folder that becomes DIR; the error is shown
    once that folder is removed, so it names DIR, and measures what is free then."""
    from matplotlib.figure import Figure

    from test_full_disk import fake_free_space

    def full(figure, target, **options):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(Figure, "savefig", full)
    out = tmp_path / "new" / "figures"
    fake_free_space(monkeypatch, tmp_path, lambda: 0 if list((tmp_path / "new").glob(".*.tmp.*")) else 2 * 10**6)
    assert main(["report", str(store), "--figures", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: no space left on the disk of {out} for " in err and err.endswith("(2.0 MB free)"), err
    assert ".tmp." not in err
