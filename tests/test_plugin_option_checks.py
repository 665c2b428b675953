"""A plugin's option checks are the plugin's code: one that raises, exits or returns no message
is that plugin's failure, one line naming the plugin and the option at the value's place, exit 2,
among the other problems of the one pass (issue 22, round 9: a traceback, or exit 3 silently)."""

from __future__ import annotations

import sys

import pytest

from feph_finetune import Executor, Option
from feph_finetune.cli import main
from feph_finetune.execution.executors import check_executor
from feph_finetune.config.reading import read_config
from feph_finetune.hookspecs import hookimpl
from feph_finetune.plugins import get_plugins

from conftest import line_of, write_matrix


class Checked:
    """An evaluate plugin whose option ``x``'s check runs ``check`` and ``y``'s rule ``rule``."""

    def __init__(self, check, rule):
        self.declared = {"x": Option(1.0, check=check), "y": Option(2, check_with_options=rule)}

    @hookimpl
    def plugin_options(self):
        return self.declared

    @hookimpl
    def evaluate(self, y_true, y_prob, context):
        return {}


def _exits(value):
    sys.exit(3)


def _divides(value):
    return 1 / 0


@pytest.mark.parametrize(("check", "shown"), [(_divides, "ZeroDivisionError: division by zero"), (_exits, "sys.exit(3)"),
                                              (lambda value: 5, "the check must return a message (str) or None, got int")])
def test_an_option_check_that_fails_is_the_plugins_failure_at_the_dry_run(check, shown, tmp_path, synthetic_feph, capsys):
    get_plugins().pm.register(Checked(check, None), name="chk")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nevaluate = ["paper_metrics", "chk"]\nbatch_size = 0\noptions.chk.x = 3.0\n')
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert f"{path}:{line_of(path, 'options.chk.x')} experiments.A.options.chk.x: plugin 'chk' failed checking option 'x': {shown}" in error
    assert "experiments.A.batch_size: must be >= 1, not 0" in error  # in the same pass


def test_a_check_with_options_that_fails_is_the_plugins_failure_at_the_dry_run(tmp_path, synthetic_feph, capsys):
    get_plugins().pm.register(Checked(None, lambda value, options: options["zz"]), name="chk")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nevaluate = ["paper_metrics", "chk"]\noptions.chk.y = 3\n')
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert f"{path}:{line_of(path, 'options.chk.y')} experiments.A.options.chk.y: plugin 'chk' failed checking option 'y': KeyError: 'zz'" in error


class Odd(Executor):
    """A third party's executor whose option check and availability fail."""

    name = "odd"
    options = {"n": Option(1, check=_divides)}

    @classmethod
    def unavailable(cls):
        raise RuntimeError("no cluster")

    def execute(self, jobs, report, here):
        raise NotImplementedError


class RegistersOdd:
    @hookimpl
    def register_executors(self, register):
        register(Odd)


def test_an_executors_option_check_and_availability_that_fail_are_its_failure(tmp_path, synthetic_feph):
    get_plugins().pm.register(RegistersOdd(), name="oddexec")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n", extra='\n[executor]\nname = "odd"\n\n[executor.odd]\nn = 2\n')
    _, problems = check_executor(read_config(path), get_plugins())
    messages = [str(problem) for problem in problems]
    assert any("executor.odd.n: executor 'odd' failed checking option 'n': ZeroDivisionError: division by zero" in message for message in messages), messages
    assert any("executor 'odd' is not available: its unavailable() failed: RuntimeError: no cluster" in message for message in messages), messages


class AnswersBadly:
    """A preprocess and model plugin that breaks the promise of ``hook``: ``plugin_traits``
    (bytes for a trait name) or ``model_input`` (text for a size)."""

    def __init__(self, hook):
        self.hook = hook

    @hookimpl
    def plugin_traits(self, options):
        return b"normalizes_pixels" if self.hook == "plugin_traits" else None

    @hookimpl
    def preprocess(self, context):
        return None

    @hookimpl
    def model_input(self, options):
        return {"size": "big"} if self.hook == "model_input" else None

    @hookimpl
    def build_model(self, context):
        raise AssertionError("never built: the configuration is refused")


@pytest.mark.parametrize("listed, flags, hook", [
    ("", ["--set", 'experiments.A.preprocess=["face_crop","bad"]'], "plugin_traits"),
    ("", ["--set", "experiments.A.model=bad"], "model_input"),
    ('preprocess = ["face_crop", "bad"]\n', [], "plugin_traits"),
], ids=["set-preprocess", "set-model", "defaults"])
def test_a_plugins_bad_answer_is_named_where_the_plugin_is_listed(tmp_path, synthetic_feph, capsys, listed, flags, hook):
    """It was named at the experiment's table line under ``options.bad``, a key the file does
    not have, though the plugin came from a --set or from [defaults]."""
    get_plugins().pm.register(AnswersBadly(hook), name="bad")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    if listed:
        path.write_text(path.read_text(encoding="utf-8").replace('preprocess = ["face_crop"]\n', listed), encoding="utf-8")
    assert main([str(path), "--dry-run", *flags]) == 2
    error = capsys.readouterr().err
    place = " ".join(flags[1:]) and f"--set {flags[1]}" or f"{path}:{line_of(path, listed.strip())} defaults.preprocess"
    assert f"{place}: plugin 'bad' failed in hook '{hook}'" in error, error
    assert "options.bad" not in error, error
