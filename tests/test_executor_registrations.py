"""A third-party ``register_executors`` that registers something unusable (issue 22, round 9):
the registration is left out with a warning naming its plugin on every command, the built-in
executors stay, and no command that does not use it is blocked. Executor names and options follow
the rules of plugin names and options.

No test here trains or imports TensorFlow.
"""

from __future__ import annotations

import json

import pytest

from feph_finetune.cli import main
from feph_finetune.execution.executors import executor_classes
from feph_finetune.execution.executors.process import ProcessExecutor
from feph_finetune.plugins import get_plugins

from conftest import write_distribution, write_matrix

EXECUTORS = '''
from feph_finetune import Executor, Option, hookimpl


class Process(Executor):
    name = "process"


class Inline(Executor):
    name = "Inline"


class Spaced(Executor):
    name = "bad exec"


class NotANumber(Executor):
    name = "nan_default"
    options = {"o": float("nan")}


class DottedOption(Executor):
    name = "dotted_option"
    options = {"a.b": 1}


class ObjectDefault(Executor):
    name = "object_default"
    options = {"o": Option(object())}


class Good(Executor):
    name = "good"
    options = {"partition": "gpu"}


@hookimpl
def register_executors(register):
    for registered in (Process, Inline, 42, Spaced, NotANumber, DottedOption, ObjectDefault, Good):
        register(registered)
'''


@pytest.fixture
def faulty_executors(tmp_path, monkeypatch):
    """The plugin ``ex``, installed in this process, with one usable executor among faulty ones."""
    write_distribution(tmp_path / "site", "ex", EXECUTORS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_a_faulty_third_party_executor_is_left_out_with_a_warning_naming_its_plugin(faulty_executors, synthetic_feph, tmp_path, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    for executor in ("process", "inline"):
        assert main([str(path), "--dry-run", "--executor", executor]) == 0
        error = capsys.readouterr().err
        assert "plugin 'executors'" not in error
        for warning in (
            "plugin 'ex' of feph-ex 0.1: registers executor 'process', the name of a built-in executor; ignored, the built-in is used",
            "plugin 'ex' of feph-ex 0.1: registers executor 'Inline' (as 'inline' in other letter case), the name of a built-in executor; ignored",
            "plugin 'ex' of feph-ex 0.1: register_executors must register Executor subclasses, got int 42",
            "plugin 'ex' of feph-ex 0.1: executor class Spaced is left out: 'bad exec' cannot be written as a part of a TOML dotted key",
            "executor 'nan_default' is left out: its options must declare defaults that are JSON values",
            "executor 'dotted_option' is left out: its options must declare option names that a configuration can address: option 'a.b'",
            "executor 'object_default' is left out: its options must declare defaults that are JSON values",
        ):
            assert error.count(warning) == 1, f"missing once: {warning}\n{error}"
    registered = executor_classes(get_plugins())
    assert registered["process"] is ProcessExecutor
    assert sorted(registered) == ["good", "inline", "process", "ray"]


def test_the_plugins_settings_list_only_the_usable_executors(faulty_executors, capsys):
    assert main(["plugins", "--settings", "--json"]) == 0
    tables = {row["table"] for row in json.loads(capsys.readouterr().out) if row["table"].startswith("executor.")}
    assert tables == {"executor.process", "executor.ray", "executor.good"}


RAISES = '''
from feph_finetune import hookimpl


@hookimpl
def register_executors(register):
    raise RuntimeError("no cluster here")
'''

SECOND = '''
from feph_finetune import Executor, hookimpl


class Good(Executor):
    name = "good"


@hookimpl
def register_executors(register):
    register(Good)
'''


def test_a_register_executors_that_raises_or_takes_a_third_party_name_blocks_nothing(faulty_executors, tmp_path, synthetic_feph, capsys):
    write_distribution(tmp_path / "site", "boom", RAISES)
    write_distribution(tmp_path / "site", "fx", SECOND)  # after "ex" in name order: "good" is taken
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 0
    error = capsys.readouterr().err
    assert "plugin 'boom' of feph-boom 0.1: failed registering its executors, none is used: RuntimeError: no cluster here" in error
    assert "plugin 'fx' of feph-fx 0.1: registers executor 'good', already registered by plugin 'ex'; ignored" in error
    assert executor_classes(get_plugins())["good"].__module__ == "feph_ex"
