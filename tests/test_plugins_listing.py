"""``plugins`` never cuts a cell with "…" (issue 22, round 9): a table whose every word is whole,
or, where none fits the console (40 columns, a long plugin name, option or origin), a list of the
plugins one under another, as ``plugins --settings`` does.

No test here trains or imports TensorFlow.
"""

from __future__ import annotations

import pytest
from rich.cells import cell_len

from feph_finetune.cli import main
from feph_finetune.plugins import get_plugins

from conftest import write_distribution

LONG_OPTIONS = '''
from feph_finetune import Option, hookimpl


@hookimpl
def plugin_options():
    return {"a_really_long_option_name_for_the_weighting": 1.0, "mode": Option("x" * 70, choices=("x" * 70, "y"))}


@hookimpl
def evaluate(y_true, y_prob, context):
    return {}
'''


def listed_at(columns: int, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["plugins"]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def assert_whole(listing: str, columns: int) -> None:
    """No line wider than ``columns``, no "…", and every plugin's name, hooks, option names and
    (JSON) defaults, and origin words, each a word of some line."""
    assert "…" not in listing
    assert max(cell_len(line) for line in listing.splitlines()) <= columns
    words = {word.strip(",") for line in listing.splitlines() for word in line.split()}
    for info in get_plugins().info():
        expected = {info.name, *info.hooks, *info.origin.split(), *(f"{key}=" for key in info.options)}
        missing = [word for word in expected if word not in words and not any(found.startswith(word) for found in words if word.endswith("="))]
        assert not missing, f"{missing} not whole at {columns} columns:\n{listing}"


@pytest.mark.parametrize("columns", [40, 80, 240])
def test_the_built_in_plugins_are_listed_whole_at_any_width(columns, capsys, monkeypatch):
    assert_whole(listed_at(columns, capsys, monkeypatch), columns)


def test_a_wide_console_keeps_the_table(capsys, monkeypatch):
    assert "hooks and options, or the problem" in listed_at(240, capsys, monkeypatch).splitlines()[1]


@pytest.mark.parametrize("name", ["emotion_metrics_extended", "p" * 49])
def test_long_names_options_and_defaults_of_a_third_party_plugin_are_listed_whole_at_80(name, tmp_path, capsys, monkeypatch):
    write_distribution(tmp_path / "site", name, LONG_OPTIONS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    listing = listed_at(80, capsys, monkeypatch)
    assert_whole(listing, 80)
    assert f'mode="{"x" * 70}"' in listing.split()
