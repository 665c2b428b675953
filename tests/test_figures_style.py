"""The figures are drawn under the project's settings whatever the user's matplotlibrc or a
plugin's ``rcParams`` say: no traceback (``text.usetex`` without LaTeX), no ``findfont`` line per
text (a font family that is not installed), the same PNGs as under matplotlib's defaults."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib  # the plots extra, which CI installs: never skipped
import matplotlib.mathtext
import numpy as np
import pytest

from feph_finetune.cli import main
from feph_finetune.results.figures_style import project_style

from conftest import REPO, run_cli  # noqa: E402
from fake_store import CLASSES, write_fake_store  # noqa: E402

#: matplotlibrc files that broke the figures (issue 22, round 9): LaTeX that is not installed,
#: a font family that is not (as paper figures often ask for), a font 20 times the default.
HOSTILE = {
    "usetex": "text.usetex: True\n",
    "missing_font": "font.family: sans-serif\nfont.sans-serif: Arial\n",
    "huge_font": "font.family: NoSuchFont\nfont.size: 200\n",
}


def config_dir(folder, matplotlibrc: str):
    """A ``MPLCONFIGDIR`` holding ``matplotlibrc`` and a copy of this machine's font cache (so that
    matplotlib does not spend seconds rebuilding it, and says so, in every subprocess)."""
    folder.mkdir()
    (folder / "matplotlibrc").write_text(matplotlibrc, encoding="utf-8")
    for cache in Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
        shutil.copy(cache, folder)
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_fake_store(root, experiments=["M2"])  # cross-validation and one split: every kind of figure
    return root


@pytest.fixture(scope="module")
def default_figures(store, tmp_path_factory):
    """The figures drawn under an empty matplotlibrc (matplotlib's defaults; not the tester's own)."""
    folder = tmp_path_factory.mktemp("default")
    done = run_cli("report", str(store), "--figures", str(folder / "figures"), env={"MPLCONFIGDIR": str(config_dir(folder / "mpl", ""))})
    assert done.returncode == 0, done.stderr
    return folder / "figures"


def same_pngs(drawn, expected) -> list[str]:
    """The PNG files of ``expected`` that ``drawn`` lacks or holds with other bytes (the Agg canvas
    writes the same bytes for the same pixels: no date in the file)."""
    return [path.name for path in sorted(expected.glob("*.png")) if not (drawn / path.name).is_file() or (drawn / path.name).read_bytes() != path.read_bytes()]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_matplotlibrc_changes_nothing_in_the_figures(store, default_figures, tmp_path, name):
    done = run_cli("report", str(store), "--figures", str(tmp_path / "figures"), env={"MPLCONFIGDIR": str(config_dir(tmp_path / "mpl", HOSTILE[name]))})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == [], done.stderr[:2000]  # no findfont line, no layout warning
    assert len(list(default_figures.glob("*.png"))) == 7
    assert same_pngs(tmp_path / "figures", default_figures) == []


_PREDICT_PLOT = """
import sys
from pathlib import Path
import numpy as np
from feph_finetune.predict.apply import InputSummary
from feph_finetune.predict.plots import plot_probabilities

summary = InputSummary("clip.avi", "video", ("anger", "happy", "sad"))
for frame in range(60):
    probabilities = np.array([0.2, 0.3, 0.5]) if frame % 3 else np.array([0.6, 0.3, 0.1])
    summary.add({"frame": frame, "time_s": frame / 30, "face_found": frame < 50, "predicted": "sad"}, probabilities, None, series=True)
assert plot_probabilities([summary], Path(sys.argv[1]), "Class probabilities") == 1
"""


def test_predicts_plot_under_a_usetex_matplotlibrc_is_the_default_plot(tmp_path):
    drawn = {}
    for name, rc in (("default", ""), ("usetex", HOSTILE["usetex"] + HOSTILE["huge_font"])):
        done = subprocess.run([sys.executable, "-c", _PREDICT_PLOT, str(tmp_path / f"{name}.png")], capture_output=True, text=True,
                              cwd=REPO, timeout=300, env={**os.environ, "MPLCONFIGDIR": str(config_dir(tmp_path / name, rc))})
        assert done.returncode == 0 and done.stderr == "", done.stderr[:2000]
        drawn[name] = (tmp_path / f"{name}.png").read_bytes()
    assert drawn["usetex"] == drawn["default"]


def test_a_plugins_rcparams_do_not_reach_the_figures_and_are_kept(store, default_figures, tmp_path, monkeypatch, capsys):
    """A plugin may set ``matplotlib.rcParams`` at import; the figures ignore it, and the setting is
    still there afterwards (it is the plugin's, for its own figures)."""
    for key, value in {"text.usetex": True, "font.size": 200.0, "axes.prop_cycle": matplotlib.cycler(color=["red"])}.items():
        monkeypatch.setitem(matplotlib.rcParams, key, value)
    assert main(["report", str(store), "--figures", str(tmp_path / "figures")]) == 0
    assert same_pngs(tmp_path / "figures", default_figures) == []
    assert capsys.readouterr().err == ""
    assert matplotlib.rcParams["text.usetex"] is True and matplotlib.rcParams["font.size"] == 200.0


def test_what_matplotlib_logs_or_warns_while_drawing_is_one_warning_line():
    lines = []
    with project_style(["a"], lines.append):
        for _ in range(500):
            logging.getLogger("matplotlib.font_manager").warning("findfont: Font family 'Arial' not found.")
        warnings.warn("something else", UserWarning)
    assert len(lines) == 1 and "501 problem(s)" in lines[0] and "findfont: Font family 'Arial' not found." in lines[0], lines
    assert logging.getLogger("matplotlib").propagate and not any(type(handler).__name__ == "_Collected" for handler in logging.getLogger("matplotlib").handlers)


def test_nothing_logged_or_warned_is_no_line_and_the_class_fonts_still_apply():
    lines = []
    with project_style(CLASSES, lines.append):
        assert list(matplotlib.rcParams["font.family"])[0] == "sans-serif" and matplotlib.rcParams["font.size"] == 10.0
    assert lines == []


#: Names a user or a plugin may give that hold two ``$``: invalid mathtext (a typo'd brace, an
#: unknown macro, which stopped every figure with a traceback) and valid mathtext (drawn as math).
MATH_LOOKING = {"label": "FT (lr $10^{-3$)", "cv_label": "$\\frac{1}{$", "class": "cost $5{$", "stage_label": "$\\undefinedmacro{x}$",
                "valid": "lr $10^{-3}$"}


def no_mathtext(monkeypatch) -> list[str]:
    """The texts matplotlib is asked to parse as mathtext from now on (each also an error)."""
    parsed = []

    def parse(self, text, *args, **kwargs):
        parsed.append(text)
        raise AssertionError(f"drawn as mathtext: {text!r}")

    monkeypatch.setattr(matplotlib.mathtext.MathTextParser, "parse", parse)
    return parsed


def test_names_that_look_like_mathtext_are_drawn_as_plain_text_in_every_figure(tmp_path, monkeypatch, capsys):
    """``report --figures`` ended with a mathtext traceback (exit 1, no figure) for such a label,
    c/v label, class name or stage label; every text is drawn as written, never parsed as math."""
    write_fake_store(tmp_path / "runs", experiments=["M2"])
    for result in (tmp_path / "runs").glob("*/result.json"):
        record = json.loads(result.read_text(encoding="utf-8"))
        renamed = {CLASSES[0]: MATH_LOOKING["class"], CLASSES[1]: MATH_LOOKING["valid"]}
        record["classes"] = [renamed.get(name, name) for name in record["classes"]]
        record["metrics"]["sensitivity"] = {renamed.get(name, name): value for name, value in record["metrics"]["sensitivity"].items()}
        record.update(label=MATH_LOOKING["label"], cv_label=MATH_LOOKING["cv_label"])
        result.write_text(json.dumps(record), encoding="utf-8")
        history = result.with_name("history.json")
        epochs = json.loads(history.read_text(encoding="utf-8"))
        history.write_text(json.dumps([{**epoch, "stage_label": MATH_LOOKING["stage_label"]} for epoch in epochs]), encoding="utf-8")
    parsed = no_mathtext(monkeypatch)
    assert main(["report", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert len(list((tmp_path / "figures").glob("*.png"))) == 7 and parsed == []


def test_predicts_plot_draws_a_class_name_that_looks_like_mathtext_as_text(tmp_path, monkeypatch):
    from feph_finetune.predict.apply import InputSummary
    from feph_finetune.predict.plots import plot_probabilities

    summary = InputSummary("clip $5{$.avi", "video", (MATH_LOOKING["class"], MATH_LOOKING["valid"], "sad"))
    for frame in range(6):
        summary.add({"frame": frame, "time_s": frame / 30, "face_found": True, "predicted": "sad"}, np.array([0.2, 0.3, 0.5]), None, series=True)
    parsed = no_mathtext(monkeypatch)
    assert plot_probabilities([summary], tmp_path / "plot.png", "Class probabilities $x$") == 1
    assert (tmp_path / "plot.png").is_file() and parsed == []
