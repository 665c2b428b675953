"""Names that look like rich markup are shown as they are (issue 22): rich parses a ``str`` as
markup wherever it meets one (a printed line, a table cell, header, title), so ``mk[/]`` raised
``MarkupError`` and ``[red]x`` lost its tag. Every table family is tried with such names."""

from __future__ import annotations

import io
import json
import types

import pytest

from feph_finetune import plan_matrix
from feph_finetune.cli import main
from feph_finetune.execution.progress import MatrixView
from feph_finetune.plugins import get_plugins
from feph_finetune.printable import EscapingConsole

from conftest import write_matrix
from test_reports import records_of_classes

#: A closing tag with nothing to close (rich raises), a colour and a style (rich swallows them).
NAMES = ["[/]", "[red]x", "[bold]"]


def assert_literal(output: str, names=NAMES) -> None:
    for name in names:
        assert name in output, (name, output)
    assert "Traceback" not in output and "MarkupError" not in output, output


@pytest.fixture
def markup_runs(tmp_path):
    root = tmp_path / "runs"
    for record in records_of_classes([*NAMES, "ok"]):
        folder = root / record["id"]
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(record), encoding="utf-8")
    return root


@pytest.mark.parametrize("flags", [[], ["--paper"], ["--confusion", "M2"], ["--format", "markdown"]])
def test_report_shows_class_names_that_look_like_markup_as_they_are(markup_runs, flags, capsys):
    assert main(["report", str(markup_runs), *flags]) == 0
    assert_literal(capsys.readouterr().out)


def test_report_figures_with_class_names_that_look_like_markup(markup_runs, tmp_path, capsys):
    assert main(["report", str(markup_runs), "--figures", str(tmp_path / "figures")]) == 0
    assert_literal(capsys.readouterr().out)
    assert all(name in (tmp_path / "figures" / "report.md").read_text(encoding="utf-8") for name in ("[red]x", "[bold]"))


def test_the_data_description_shows_class_folders_named_like_markup(tmp_path, capsys):
    import cv2
    import numpy as np

    folders = ["[red]x", "[bold]", "[i]"]  # a folder name holds no "/", so no closing tag
    for number, name in enumerate(folders):
        (tmp_path / "FD" / name).mkdir(parents=True)
        for index in range(2):
            cv2.imwrite(str(tmp_path / "FD" / name / f"{index}.png"), np.full((8, 8, 3), 40 * index + 10 * number, np.uint8))
    assert main(["data", str(tmp_path / "FD"), "--format", "folders"]) == 0
    assert_literal(capsys.readouterr().out, folders)


class MarkupNamedPlugin:
    def plugin_options(self):
        return {}


def test_the_plugins_listing_shows_a_plugin_named_like_markup(capsys):
    get_plugins().pm.register(MarkupNamedPlugin(), name="[/]")
    assert main(["plugins"]) == 0
    assert_literal(capsys.readouterr().out, ["[/]"])


def test_the_predict_summary_shows_inputs_and_classes_named_like_markup():
    from feph_finetune.predict.apply import InputSummary
    from feph_finetune.predict.command import print_summary

    classes = (*NAMES, "ok")
    summaries = [InputSummary(name=f"/data/mk{name}", kind="frames", classes=classes, frames=2, predicted={"[/]": 2}) for name in NAMES]
    out = io.StringIO()
    print_summary(summaries, types.SimpleNamespace(classes=classes, run_id="[/]-x-1"), EscapingConsole(file=out, width=200))
    assert_literal(out.getvalue(), [f"mk{name}" for name in NAMES] + ["model [/]-x-1"])


def test_predicts_progress_bar_shows_an_input_named_like_markup():
    from feph_finetune.predict.command import input_progress

    out = io.StringIO()
    progress = input_progress(EscapingConsole(file=out, width=100, force_terminal=True, color_system=None))
    progress.add_task("/data/mk[/] [red]x [bold]", total=3)
    progress.console.print(progress.make_tasks_table(progress.tasks))
    assert_literal(out.getvalue())


def test_the_live_view_and_its_lines_show_runs_named_like_markup(synthetic_feph, tmp_path):
    runs = plan_matrix(write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\n'))
    out = io.StringIO()
    console = EscapingConsole(file=out, width=200, force_terminal=True, color_system=None)
    view = MatrixView(console, runs)
    view.report({"event": "started", "run": runs[0].id, "time": 0})
    view.report({"event": "finished", "run": runs[0].id, "status": "failed", "accuracy": None, "seconds": 1.0, "error": "x: [red]x [/] [bold]"})
    console.print(view.render())
    assert_literal(out.getvalue())


def test_a_styled_message_still_shows_its_own_style_and_the_data_inside_literally():
    from feph_finetune.errors import print_error

    out = io.StringIO()
    print_error(EscapingConsole(file=out, width=200, force_terminal=True, color_system="standard"), ["mk[/] is bad", "[red]x"], heading="in [bold]")
    shown = out.getvalue()
    assert "\x1b[1;31merror: in [bold]" in shown and "mk[/] is bad" in shown and "[red]x" in shown, repr(shown)
