"""A terminal width of 0 or 1 (``COLUMNS=0``, which rich takes as given) is taken as the narrowest
console, so that errors and tables still print; an empty path (an unset shell variable) is
refused rather than read as the current folder."""

from __future__ import annotations

import pytest

from feph_finetune.config.reading import ConfigError
from feph_finetune.printable import MIN_WIDTH, EscapingConsole
from feph_finetune.session import Session
from conftest import run_cli


@pytest.mark.parametrize("columns", ["0", "1"])
def test_a_width_below_the_minimum_still_prints_errors_and_tables(tmp_path, columns):
    error = run_cli("data", str(tmp_path / "nonexistent"), env={"COLUMNS": columns})
    assert error.returncode == 2 and "error:" in error.stderr and "no such folder" in error.stderr
    table = run_cli("plugins", env={"COLUMNS": columns})
    lines = table.stdout.splitlines()
    assert table.returncode == 0 and "mobilenet" in table.stdout
    # a table's border rows are as wide as the console: the minimum, not the one or no column asked for
    assert max(len(line) for line in lines) == MIN_WIDTH


def test_a_console_made_narrower_than_the_minimum_has_the_minimum_width():
    assert EscapingConsole(width=0).width == EscapingConsole(width=1).width == MIN_WIDTH
    assert EscapingConsole(width=MIN_WIDTH + 1).width == MIN_WIDTH + 1


@pytest.mark.parametrize("args, argument", [
    (["m.toml", "--output", ""], "--output"),
    (["", "--dry-run"], "EXPERIMENTS.toml"),
    (["synth", "", "--images", "10"], "OUT"),
    (["report", ""], "OUTDIR"),
    (["report", "out", "--figures", ""], "--figures"),
    (["data", ""], "ROOT"),
    (["export", "run", ""], "OUT"),
    (["convert", "", "x.keras"], "SOURCE"),
])
def test_an_empty_path_is_refused_before_anything_is_written(tmp_path, args, argument):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and f"error: argument {argument}: an empty path" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arguments", [{"output": ""}, {"config": ""}])
def test_the_python_api_refuses_an_empty_path(tmp_path, arguments):
    with pytest.raises(ConfigError, match="an empty path"):
        Session(**{"config": str(tmp_path / "m.toml"), **arguments})


@pytest.mark.parametrize("toml_output, args, place", [
    ('output = ""\n', [], 'm.toml:1 output'),
    ("", ["--set", 'output=""'], '--set output=""'),
], ids=["toml", "set"])
def test_an_empty_output_in_the_toml_or_a_set_is_refused_as_the_flag_is(tmp_path, toml_output, args, place):
    """``output = ""`` or ``--set output="$OUT"`` (unset) put every run and the lock into the
    current folder, while ``--output ""`` was refused."""
    (tmp_path / "m.toml").write_text(toml_output + '[dataset]\nroot = "data"\n[experiments.A]\nmodel = "mobilenet"\n')
    result = run_cli("m.toml", "--dry-run", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert any(place in line and "an empty path" in line for line in result.stderr.splitlines()), result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.toml"]
