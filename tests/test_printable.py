"""Text from data never acts on the terminal: every message family shows control, format and
separator characters escaped (issue 22; rule in feph_finetune/printable.py)."""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from feph_finetune import PluginError, hookimpl
from feph_finetune.cli import main
from feph_finetune import plan_matrix
from feph_finetune.errors import print_error
from feph_finetune.execution.progress import MatrixView
from feph_finetune.plugins import get_plugins
from feph_finetune.printable import EscapingConsole, printable

from conftest import REPO, write_matrix

#: A name that would clear the screen, overwrite its line, forge a line of its own and display
#: the rest reversed, were it printed raw.
HOSTILE = "a\x1b[2J\rb\nall runs done\u202eevil"
SHOWN = "a\\x1b[2J\\rb\\nall runs done\\u202eevil"


def assert_escaped(output: str) -> None:
    assert SHOWN in output, output
    assert not {"\x1b", "\r", "\u202e"} & set(output), repr(output)
    assert not any(line.startswith("all runs done") for line in output.splitlines()), output


def test_printable_escapes_bidi_and_invisible_characters_and_keeps_joined_emoji_and_scripts():
    assert printable("x\u202eabc\u2066d\u2069\u200b\ufeff\u00ad\x9b\x00") == "x\\u202eabc\\u2066d\\u2069\\u200b\\ufeff\\xad\\x9b\\x00"
    assert printable("bad\udcffbytes") == "bad\\xffbytes"  # a file name that is not UTF-8: the byte, as ls -b shows it
    kept = "👩‍💻 ❤️‍🔥 क्‍ष می‌خواهم 怒り naïve"  # ZWJ emoji, a Devanagari conjunct (ZWJ), Persian (ZWNJ)
    assert printable(kept) == kept
    assert printable("a\u200db \u200dx y\u200c") == "a\\u200db \\u200dx y\\u200c"  # joining nothing: escaped
    assert printable(printable(HOSTILE)) == printable(HOSTILE) == SHOWN


def test_ordinary_text_prints_exactly_as_on_a_plain_console():
    text = "[bold]M2[/bold] done 👩‍💻 怒り ±1.5 │ tab-free"
    plain, escaping = io.StringIO(), io.StringIO()
    # markup off on both: an escaping console reads no markup (a name "[bold]" is data)
    for console in (Console(file=plain, width=90, force_terminal=True, log_time=False, markup=False), EscapingConsole(file=escaping, width=90, force_terminal=True, log_time=False)):
        console.print(text)
        console.log(text)  # the source column names this file and line on both
        console.out("a,b\nc,d")
    link_ids = re.compile(r"id=\d+;")  # rich numbers each hyperlink of the source column afresh
    assert link_ids.sub("", escaping.getvalue()) == link_ids.sub("", plain.getvalue())


def test_an_error_message_is_one_line_whatever_it_holds():
    out = io.StringIO()
    assert print_error(EscapingConsole(file=out, width=300), [f"data ROOT {HOSTILE}: no such folder", "second"]) == 2
    assert_escaped(out.getvalue())
    assert out.getvalue().splitlines()[1:] == [f"data ROOT {SHOWN}: no such folder", "second"]


def test_configuration_errors_show_experiment_names_and_arguments_escaped(synthetic_feph, tmp_path, capsys):
    escaped_key = json.dumps(HOSTILE)  # a TOML basic string: the same escapes as JSON's
    named = write_matrix(tmp_path / "named.toml", synthetic_feph, f"[experiments.{escaped_key}]\n")
    plain = write_matrix(tmp_path / "plain.toml", synthetic_feph, "[experiments.A]\n")
    for argv in ([str(named), "--dry-run"], [str(plain), "--dry-run", "--only", HOSTILE],
                 [str(plain), "--dry-run", "--set", f"{HOSTILE}=1"], ["data", str(tmp_path / HOSTILE)]):
        assert main(argv) == 2, argv
        assert_escaped(capsys.readouterr().err)


class HostileAugment:
    @hookimpl
    def augment(self, context):
        raise PluginError(f"cannot read {HOSTILE}.png")


def test_progress_and_failed_lines_show_a_failing_runs_message_escaped(synthetic_feph, tmp_path, capsys):
    get_plugins().pm.register(HostileAugment(), name="hostile_augment")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.bad]\naugment = ["hostile_augment"]\n')
    assert main([str(path), "--executor", "inline", "--output", str(tmp_path / "runs")]) == 1
    output = capsys.readouterr().out
    assert "FAILED" in output and "1 of 1 runs failed" in output
    assert_escaped(output)


def test_the_live_view_shows_a_failure_escaped(synthetic_feph, tmp_path):
    runs = plan_matrix(write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n"))
    console = Console(width=200, force_terminal=True, color_system=None, record=True, file=io.StringIO())
    view = MatrixView(console, runs)
    view.report({"event": "started", "run": runs[0].id, "time": 0})
    view.report({"event": "finished", "run": runs[0].id, "status": "failed", "accuracy": None, "seconds": 1.0, "error": f"x: {HOSTILE}"})
    console.print(view.render())
    assert_escaped(console.export_text())


def test_a_warning_names_a_hostile_result_file_escaped(tmp_path, capsys):
    broken = tmp_path / "runs" / HOSTILE
    broken.mkdir(parents=True)
    (broken / "result.json").write_text("{not json", encoding="utf-8")
    assert main(["report", str(tmp_path / "runs")]) == 2  # nothing usable: the warning, then the error
    err = capsys.readouterr().err
    assert "warning:" in err
    assert_escaped(err)


def test_predict_names_hostile_inputs_and_models_escaped(tmp_path, capsys, monkeypatch):
    assert main(["predict", str(tmp_path / HOSTILE), str(tmp_path / "in.png")]) == 2  # the MODEL's path
    assert_escaped(capsys.readouterr().err)
    monkeypatch.setattr("feph_finetune.predict.bundle.open_bundle", lambda path, plugins: object())  # inputs are opened before the model is loaded
    assert main(["predict", str(tmp_path), str(tmp_path / f"{HOSTILE}.mp4")]) == 2
    assert_escaped(capsys.readouterr().err)


def test_a_success_line_shows_its_path_escaped(tmp_path, capsys):
    assert main(["synth", str(tmp_path / HOSTILE), "--images", "3"]) == 0
    assert_escaped(capsys.readouterr().out)


def test_an_unrecognized_argument_is_shown_escaped(synthetic_feph, tmp_path, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    with pytest.raises(SystemExit) as exit:  # argparse exits by itself
        main([str(path), HOSTILE])
    assert exit.value.code == 2
    assert_escaped(capsys.readouterr().err)


def test_no_module_prints_on_a_console_or_parser_that_does_not_escape():
    """The chokepoint holds only if every console and parser is one: a plain rich ``Console(...)``
    or ``argparse.ArgumentParser(...)`` made anywhere in the package fails here (printable.py and
    cli.py define the escaping ones by subclassing, which makes no call)."""
    made = []
    for path in sorted((REPO / "feph_finetune").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            called = getattr(node, "func", None)
            if isinstance(node, ast.Call) and (getattr(called, "id", None) == "Console" or getattr(called, "attr", None) in ("Console", "ArgumentParser")):
                made.append(f"{Path(path).relative_to(REPO)}:{node.lineno}")
    assert made == []


def test_a_label_with_a_right_to_left_override_is_refused_like_a_control_character(synthetic_feph, tmp_path, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nlabel = "FT\\u202eTF"\n')
    assert main([str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "'FT\\u202eTF' holds control or invisible characters" in err and "\u202e" not in err, err


def test_the_python_apis_default_warning_names_a_hostile_result_file_escaped(tmp_path):
    from feph_finetune import load_results

    broken = tmp_path / "runs" / HOSTILE
    broken.mkdir(parents=True)
    (broken / "result.json").write_text("{not json", encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        load_results(tmp_path / "runs")
    assert_escaped(" ".join(str(warning.message) for warning in caught))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_machine_readable_reports_keep_class_names_raw_off_a_terminal_and_escape_them_on_one(fmt):
    import csv

    from feph_finetune.results.reports import render
    from test_reports import records_of_classes

    names = ["cr\rOVER", "ok\x1b[2J", "a,b\"c"]
    records = records_of_classes([*names, "plain"])
    piped, terminal = io.StringIO(), io.StringIO()
    render(records, fmt, EscapingConsole(file=piped, width=80))
    render(records, fmt, EscapingConsole(file=terminal, width=80, force_terminal=True, color_system=None))
    if fmt == "csv":
        header = next(csv.reader(io.StringIO(piped.getvalue(), newline="")))
        assert all(f"sensitivity_{name}" in header for name in names), header
    else:
        assert all(name in row["sensitivity"] for row in json.loads(piped.getvalue()) for name in names)
    shown = terminal.getvalue()
    assert "\x1b" not in shown and "\r" not in shown and ("cr\\rOVER" in shown and "ok\\x1b[2J" in shown if fmt == "csv" else True), repr(shown)
def test_emoji_codes_in_names_are_shown_as_written(synthetic_feph, tmp_path, capsys, monkeypatch):
    """rich turns ``:smile:`` into 😄 and ``:B:`` into 🅱 unless told not to: in a file name, an
    experiment name, a label, each family of message shows the text as written."""
    monkeypatch.setattr("feph_finetune.predict.bundle.open_bundle", lambda path, plugins: object())
    assert main(["predict", str(tmp_path), "emo/:smile:/nonexist.png"]) == 2
    assert "emo/:smile:/nonexist.png: no such file" in capsys.readouterr().err
    named = write_matrix(tmp_path / "named.toml", synthetic_feph, '[experiments."A:B:"]\n')
    assert main([str(named), "--dry-run"]) == 2
    assert "experiments.A:B::" in capsys.readouterr().err
    console = EscapingConsole(file=io.StringIO(), width=80)  # as the progress log shows a label
    console.log("started :smile: A:B:")
    assert "started :smile: A:B:" in console.file.getvalue()
