"""What a new user meets in the first hour: help texts that say what happens, a missing dataset
folder that says where FePh comes from, and `plugins` listing the options the TOML can set."""

from __future__ import annotations

import json
import re

import pytest

from feph_finetune.cli import COMMANDS, main, run_parser
from feph_finetune.config.reading import read_config
from feph_finetune.plugins import get_plugins
from conftest import REPO


def test_jobs_help_states_the_demo_default():
    help_text = " ".join(run_parser().format_help().split())
    assert "default 1; one per device with --devices; with --demo, one per CPU core" in help_text


def test_force_help_says_the_old_results_are_kept():
    """``--force`` sets each old record aside (:meth:`RunStore.discard`; test_command_line checks
    the file): a help that says "discard" scares off a user who wants to keep them."""
    from feph_finetune.results.store import PREVIOUS_RESULT_FILE, RESULT_FILE

    help_text = " ".join(run_parser().format_help().split())
    assert f"each old {RESULT_FILE} is kept as {PREVIOUS_RESULT_FILE}" in help_text and "discard" not in help_text


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_option_is_in_the_readmes_commands_table(command):
    """The table of commands is where a newcomer looks first: an option --help has and it lacks
    (--track, data's --group-by) is one they never learn of."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = " ".join(line for line in readme.splitlines() if line.startswith(f"| `python -m feph_finetune {command or 'EXPERIMENTS.toml'}"))
    parser = COMMANDS[command][0]() if command else run_parser()
    options = [option for action in parser._actions for option in action.option_strings if option.startswith("--") and option not in ("--help", "--version")]
    assert [option for option in options if option not in rows] == []


def test_the_readme_and_help_give_one_default_results_folder():
    row = next(line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| `python -m feph_finetune EXPERIMENTS.toml` |"))
    assert "`--output DIR` (default: the TOML's `output`, else `runs/`; `runs/demo` with `--demo`)" in row  # as --help says
    assert "results directory (default: the TOML's output, else runs/; runs/demo with --demo)" in " ".join(run_parser().format_help().split())


def test_data_on_a_missing_folder_says_where_fephs_comes_from(tmp_path, capsys):
    assert main(["data", str(tmp_path / "FePh")]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert f"ROOT {tmp_path / 'FePh'}: no such folder" in message
    assert "Harvard Dataverse (doi:10.7910/DVN/358QMQ)" in message and '(README, "Running on the real FePh")' in message
    (tmp_path / "file").write_text("x")
    assert main(["data", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_plugins_lists_every_declared_option_with_its_default(capsys):
    plugins = get_plugins()
    assert main(["plugins", "--json"]) == 0
    listed = {entry["name"]: entry["options"] for entry in json.loads(capsys.readouterr().out)}
    for name in plugins.names():
        assert listed[name] == json.loads(json.dumps(plugins.option_defaults(name), default=str)), name
    assert listed["face_crop"]["margin"] == 0.2 and listed["class_weights"] == {}
    assert main(["plugins"]) == 0
    table = " ".join(capsys.readouterr().out.split())
    assert 'options: mode="double"' in table and "margin=0.2" in table


def test_experiments_toml_and_readme_say_where_options_and_caches_are():
    text = (REPO / "experiments.toml").read_text(encoding="utf-8")
    assert "plugin options are listed by\n# `python -m feph_finetune plugins`" in text
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    caches = re.search(r"\*\*Caches\.\*\*(.*?)(?=\*\*|Other experiment keys)", readme).group(1)
    assert "`FEPH_FINETUNE_CACHE`" in caches and "demo" in caches and "moves them too" in caches


def test_demo_cache_follows_feph_finetune_cache(tmp_path, monkeypatch):
    from feph_finetune.demo import protocol as demo

    monkeypatch.setenv("FEPH_FINETUNE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "m.toml"
    path.write_text("[dataset]\nroot = 'x'\n[experiments.A]\n", encoding="utf-8")
    paths = demo.demo_paths(demo.demo_settings(read_config(path)))
    assert paths.root.is_relative_to(tmp_path / "cache" / "demo")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_fits_80_columns(command, monkeypatch, capsys):
    """argparse wraps at COLUMNS - 2; a raw description or a hand-written usage line does not wrap."""
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"] if command else ["--help"])
    assert exit.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 5 and [line for line in lines if len(line) > 80] == []


@pytest.mark.parametrize("columns", [80, 44])
def test_the_dry_run_legend_breaks_only_between_its_phrases_left_aligned(columns, synthetic_feph, tmp_path, monkeypatch, capsys):
    from feph_finetune.cli import RUN_TABLE_LEGEND

    from conftest import write_matrix

    monkeypatch.setenv("COLUMNS", str(columns))
    assert main([str(write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    legend = lines[next(index for index, line in enumerate(lines) if line.startswith("run id: experiment")):]
    assert all(len(line) <= columns and line == line.strip() for line in legend), legend
    assert " ".join(legend) == " ".join(phrase for entry in RUN_TABLE_LEGEND for phrase in entry)
    assert all(any(phrase in line for line in legend) for entry in RUN_TABLE_LEGEND for phrase in entry), legend  # none split
    assert any(line.startswith("data steps:") for line in legend)


def readme_command_words(command: str) -> list[list[str]]:
    """The words of each command the README's table of commands shows for ``command`` (its first
    cell, brackets and the program's name dropped; ``\\|`` read as ``|``)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    cells = [line.split("`")[1] for line in readme.splitlines() if line.startswith(f"| `python -m feph_finetune {command} ")]
    return [re.sub(r"[\[\]]", "", cell.replace("\\|", "|")).split()[4:] for cell in cells]


def placeholder_matches(readme: str, usage: str) -> bool:
    """Whether --help's placeholder ``usage`` says what the README's ``readme`` says: the same
    text, the same choices (``{a,b}`` for ``a|b``), or the README's with a suffix shown
    (``FILE`` for ``FILE.csv|.jsonl``, ``INPUT`` for ``INPUT...``)."""
    if usage.startswith("{"):
        return usage.strip("{}").split(",") == readme.split("|")
    return readme == usage or (readme.startswith(usage) and readme[len(usage)] in ".|")


def help_placeholders(parser) -> tuple[dict[str, str], list[str]]:
    """What --help's usage shows for each option's value (``{"--seed": "S"}``, options that take
    one), and for each positional argument in order, as argparse formats them."""
    formatter = parser._get_formatter()
    options, positionals = {}, []
    for action in parser._actions:
        if action.option_strings and action.nargs != 0:
            shown = formatter._metavar_formatter(action, formatter._get_default_metavar_for_optional(action))(1)[0]
            options.update((option, shown) for option in action.option_strings)
        elif not action.option_strings:
            positionals.append(formatter._metavar_formatter(action, formatter._get_default_metavar_for_positional(action))(1)[0])
    return options, positionals


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_names_each_argument_as_the_readmes_commands_table_does(command):
    """``synth --images IMAGES --seed SEED out`` beside the README's ``synth OUT [--images N]
    [--seed S]``: the user cannot tell they are one command. Every placeholder of the README's
    rows, positional or an option's value, is the one --help's usage shows."""
    options, positionals = help_placeholders(COMMANDS[command][0]())
    rows = readme_command_words(command)
    assert rows, f"no row for {command} in the README's table of commands"
    for words in rows:
        values = {index + 1 for index, word in enumerate(words[:-1]) if word.startswith("--") and not words[index + 1].startswith("--")}
        for index in sorted(values):
            assert placeholder_matches(words[index], options[words[index - 1]]), (words[index - 1], words[index], options[words[index - 1]])
        shown = [word for index, word in enumerate(words) if not word.startswith("--") and index not in values]
        assert len(shown) == len(positionals) and all(map(placeholder_matches, shown, positionals)), (shown, positionals)
