"""A float setting whose value changes meaning in float32, the precision training computes in, is
refused at its place, core and plugin options alike (issue 22, round 9: a learning rate of
5e-324 is 0 in float32; the run trained nothing and read "done")."""

from __future__ import annotations

import pytest

from feph_finetune.cli import main
from feph_finetune.config.options import Option, option_problems

from conftest import line_of, write_matrix


def test_a_float_that_is_zero_or_infinite_in_float32_is_refused_at_its_place(tmp_path, synthetic_feph, capsys):
    experiments = "[experiments.A]\nvalidation_split = 1e-50\noptions.adam.lr = 5e-324\noptions.adam.head_lr = 1e-300\n"
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    assert main([str(path), "--dry-run", "--set", "dataset.test_fraction=1e-46"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    for line in (
        f"{path}:{line_of(path, 'options.adam.lr')} experiments.A.options.adam.lr: 5e-324 is 0 in float32, which training uses",
        f"{path}:{line_of(path, 'head_lr')} experiments.A.options.adam.head_lr: 1e-300 is 0 in float32, which training uses",
        f"{path}:{line_of(path, 'validation_split')} experiments.A.validation_split: 1e-50 is 0 in float32, which training uses",
        "--set dataset.test_fraction=1e-46: 1e-46 is 0 in float32, which training uses",
    ):
        assert line in error, f"missing: {line}\n{error}"


def test_a_float_that_float32_holds_is_accepted(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\noptions.adam.lr = 1e-45\noptions.adam.head_lr = 10\n")
    assert main([str(path), "--dry-run"]) == 0


@pytest.mark.parametrize(("value", "problem"), [(10**39, "is inf in float32"), (-1e39, "is -inf in float32"), ([0.5, 1e-60], "1e-60 is 0 in float32")])
def test_an_integer_for_a_float_and_the_items_of_a_list_are_checked_as_float32(value, problem):
    declared = Option([0.1]) if isinstance(value, list) else Option(0.1)
    assert any(problem in message for message in option_problems(value, declared))


def test_integer_settings_and_zero_are_not_float32_values():
    assert option_problems(10**39, Option(1)) == [] and option_problems(0.0, Option(0.1)) == [] and option_problems(-0.0, Option(0.1)) == []
