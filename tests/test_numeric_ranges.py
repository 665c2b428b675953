"""Every number a user can give (a flag of any command, a setting of any table) has a declared
range, checked before any work: an absurd value ends with exit 2 and a message naming the flag
or the file:line key, never a traceback or a run that allocates or loops for ever."""

from __future__ import annotations

import pytest

from feph_finetune.cli import main
from feph_finetune.config.flags import DATA_NUMBERS, PREDICT_NUMBERS, SYNTH_NUMBERS
from feph_finetune.config.options import Option, as_option, option_problems
from feph_finetune.config.schema import CORE_TABLES

from conftest import line_of, write_matrix

#: Values tried on every numeric flag and setting: below any minimum, huge, not finite.
ABSURD = ("-1", str(10**30), "1e20", "nan", "inf", "-inf")


def exit_code(argv: list[str]) -> int:
    """``main``'s exit code, argparse's own refusals (``SystemExit``) included."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def command_with(flag: str, value: str, tmp_path) -> list[str]:
    if flag in PREDICT_NUMBERS:
        return ["predict", str(tmp_path / "no-model"), str(tmp_path / "no-input.png"), flag, value]
    if flag in SYNTH_NUMBERS:
        return ["synth", str(tmp_path / "synthetic"), flag, value]
    return ["data", str(tmp_path), flag, value]


@pytest.mark.parametrize("value", ABSURD)
@pytest.mark.parametrize("flag", sorted({*PREDICT_NUMBERS, *SYNTH_NUMBERS, *DATA_NUMBERS} - {"--seed"}) + ["synth --seed", "data --seed"])
def test_every_numeric_flag_refuses_absurd_values_with_exit_2_naming_it(flag, value, tmp_path, capsys):
    if flag.endswith("--seed"):
        command, flag = flag.split()
        argv = command_with(flag, value, tmp_path) if command == "data" else ["synth", str(tmp_path / "synthetic"), flag, value]
    else:
        argv = command_with(flag, value, tmp_path)
    assert exit_code(argv) == 2
    error = capsys.readouterr().err
    assert flag in error and "Traceback" not in error
    assert not (tmp_path / "synthetic").exists(), "nothing is written before the flags are checked"


def test_a_seed_numpy_cannot_take_is_refused(tmp_path, capsys):
    """NumPy takes seeds 0 to 2**32 - 1; ``synth --seed -1`` gave its traceback."""
    assert main(["synth", str(tmp_path / "s"), "--seed", str(2**32)]) == 2
    assert "--seed 4294967296: must be <= 4294967295" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "s"), "--seed", "-1", "--images", "0"]) == 2
    error = capsys.readouterr().err
    assert "--seed -1: must be >= 0" in error and "--images 0: must be >= 1" in error, "both in one pass"


def test_predict_smooth_must_be_odd(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "m"), "x.png", "--smooth", "4"]) == 2
    assert "--smooth 4: must be odd" in capsys.readouterr().err


def test_flag_help_gives_the_declared_range(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "<= 4096" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command, declarations", [("predict", PREDICT_NUMBERS), ("synth", SYNTH_NUMBERS), ("data", DATA_NUMBERS)])
def test_every_numeric_flags_help_gives_its_declared_range(command, declarations):
    from feph_finetune import cli
    from feph_finetune.config.options import describe

    actions = {flag: action for action in getattr(cli, f"{command}_parser")()._actions for flag in action.option_strings}
    for flag, option in declarations.items():
        assert describe(option) in (actions[flag].help or ""), (flag, actions[flag].help)


def test_every_option_of_every_command_has_help():
    from feph_finetune import cli

    parsers = [getattr(cli, name)() for name in dir(cli) if name.endswith("_parser") and callable(getattr(cli, name))]
    assert len(parsers) >= 8
    missing = [(parser.prog, action.dest) for parser in parsers for action in parser._actions if not action.help]
    assert not missing, missing


@pytest.mark.parametrize("flags, message", [
    (["--jobs", "1e9"], "--jobs: expected a number of runs at once"),
    (["--jobs", str(10**9)], "--jobs: must be <= 256"),
    (["--jobs", "nan"], "--jobs: expected a number of runs at once"),
    (["--devices", "0,0"], "--devices: lists GPU 0 more than once"),
    (["--devices", str(10**12)], "--devices: must be <= 255"),
])
def test_jobs_and_devices_have_bounds_and_devices_are_distinct(flags, message, tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run", *flags]) == 2
    assert message in capsys.readouterr().err


def test_absurd_settings_in_a_toml_name_their_file_line_and_key(tmp_path, synthetic_feph, capsys):
    experiment = f"""
[experiments.A]
optimizer = "adam"
options.adam.lr = 1e3
options.face_crop.margin = inf
options.mobilenet.alpha = {10**30}

[executor.process]
devices = [1, 1]
jobs = 100000
"""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiment)
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    for text, key, message in (
        ("lr = 1e3", "experiments.A.options.adam.lr", "must be <= 10.0"),
        ("margin = inf", "experiments.A.options.face_crop.margin", "must be a finite number"),
        ("alpha = ", "experiments.A.options.mobilenet.alpha", "must be <= 4"),
        ("devices = ", "executor.process.devices", "lists GPU 1 more than once"),
        ("jobs = 100000", "executor.process.jobs", "must be <= 256"),
    ):
        assert f"{path}:{line_of(path, text)} {key}: {message}" in error, error


def declared_numbers():
    """Every numeric setting ``plugins --settings`` lists: (place, key, Option)."""
    from feph_finetune.demo.protocol import DEMO_OPTIONS
    from feph_finetune.execution.executors import executor_classes
    from feph_finetune.plugins import get_plugins

    plugins = get_plugins()
    tables = {**CORE_TABLES, "demo": DEMO_OPTIONS, "demo.base_epochs": DEMO_OPTIONS["base_epochs"].table}
    tables.update({f"executor.{name}": cls.declarations() for name, cls in executor_classes(plugins).items()})
    tables.update({f"options.{name}": plugins.option_declarations(name) for name in sorted(info.name for info in plugins.info() if info.status == "ok")})
    for place, declarations in tables.items():
        for key, value in declarations.items():
            option = as_option(value)
            example = option.default if option.default not in (None, []) else (option.kind() if option.kind else None)
            example = example[0] if isinstance(example, list) and example else example
            if isinstance(example, (int, float)) and not isinstance(example, bool):
                yield place, key, option


def test_every_numeric_setting_has_an_upper_bound_and_refuses_absurd_values():
    found = list(declared_numbers())
    assert len(found) > 30, "the listing should hold the core's, the executors' and the plugins' numbers"
    for place, key, option in found:
        assert option.maximum is not None, f"[{place}] {key} has no upper bound"
        for value in (10**30, float("inf"), float("nan"), -(10**30)):
            given = [value] if isinstance(option.default, list) else value
            assert option_problems(given, option), f"[{place}] {key} accepts {value!r}"
        assert not option_problems(option.default, option) or option.default is None, f"[{place}] {key}: its default is refused"


def test_an_int_too_large_for_a_float_is_refused_not_a_traceback():
    """TOML reads ``lr = 1`` followed by 400 zeros as an int that ``math.isfinite`` cannot take."""
    learning_rate = Option(0.001, minimum=0, exclusive_minimum=True, maximum=10.0)
    assert option_problems(10**400, learning_rate) == ["must be <= 10.0, not an integer of 401 digits"]


def test_a_huge_flag_value_is_quoted_short_so_its_message_stays_one_readable_line(tmp_path, capsys):
    """``--images 1`` followed by 400 zeros used to be quoted whole: a 470-character line."""
    assert main(["synth", str(tmp_path / "s"), "--images", str(10**400)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: --images 10000000000000000000…00000000: must be <= 1000000, not an integer of 401 digits"


#: More digits than Python turns into an int (``sys.get_int_max_str_digits()``: 4300).
LONG_INTEGER = "9" * 5000


@pytest.mark.parametrize("arguments, message", [
    (["--jobs", LONG_INTEGER], "--jobs: must be <= 256, not an integer of 5000 digits"),
    (["--devices", LONG_INTEGER], "--devices: must be <= 255, not an integer of 5000 digits"),
    (["--devices", f"0,-{LONG_INTEGER}"], "--devices: must be >= 0, not an integer of 5000 digits"),
    (["--set", f"seed={LONG_INTEGER}"], "--set seed=" + "9" * 100 + "…99999999: a number too long to read (over 4300 digits)"),
    (["--set", f"experiments.A.grid.seed=[1, {LONG_INTEGER}]"], "a number too long to read (over 4300 digits)"),
])
def test_an_integer_longer_than_python_reads_is_refused_naming_its_flag(arguments, message, tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert exit_code([str(path), "--dry-run", *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error and len(error.encode()) < 1024


def test_an_integer_longer_than_python_reads_in_a_toml_names_its_file_and_line(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n", extra=f"\n[executor.process]\njobs = {LONG_INTEGER}\n")
    assert exit_code([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"error: {path}:{line_of(path, 'jobs =')}: a number too long to read (over 4300 digits)"


@pytest.mark.parametrize("flag", ["--folds", "--seed"])
def test_an_integer_longer_than_python_reads_in_a_command_flag_is_refused_by_its_range(flag, tmp_path, capsys):
    argv = ["synth", str(tmp_path / "synthetic"), flag, LONG_INTEGER] if flag == "--seed" else ["data", str(tmp_path), flag, LONG_INTEGER]
    assert exit_code(argv) == 2
    error = capsys.readouterr().err
    assert f"{flag} 99999999999999999999…99999999: must be <= " in error and "not an integer of 5000 digits" in error
    assert "Traceback" not in error and len(error.encode()) < 1024


def test_data_set_of_an_integer_longer_than_python_reads_names_the_assignment(tmp_path, capsys):
    assert exit_code(["data", str(tmp_path), "--set", f"dataset.folds={LONG_INTEGER}"]) == 2
    error = capsys.readouterr().err
    assert "--set dataset.folds=" + "9" * 100 + "…99999999: a number too long to read (over 4300 digits)" in error
    assert "Traceback" not in error and len(error.encode()) < 1024
