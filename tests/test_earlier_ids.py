"""A run finished under the id an earlier version gave it is carried over to its id of today:
renamed, not trained again, and counted once by a report (issue 22: a setting that does not
change the result must not split a configuration's runs, across an upgrade either)."""

from __future__ import annotations

import json
import os
import signal
import shutil

import pytest

import feph_finetune.config.matrix as matrix
from feph_finetune.cli import main
from feph_finetune.results.earlier_ids import carry_over, earlier_folders, identify_folder
from feph_finetune.results.output_lock import LOCK_FILE
from feph_finetune.results.store import RunStore
from feph_finetune.session import Session, plan_matrix, run_matrix
from feph_finetune.config.matrix import recorded_id_rules
from feph_finetune.config.reading import config_from_dict, read_config
from feph_finetune.plugins import get_plugins
from feph_finetune.printable import EscapingConsole
from conftest import write_matrix

#: Before run ids ignored settings a phase never reads, an exploratory run hashed ``folds``
#: (the tiny matrix sets ``folds = 3``): b780e4a gave this configuration another id.
EARLIER_RULES = {"exploratory": (), "cv": ()}


@pytest.fixture(scope="module")
def trained_earlier(tmp_path_factory, synthetic_feph):
    """A tiny exploratory run trained once under its earlier id: the configuration file, the
    results folder and that id."""
    folder = tmp_path_factory.mktemp("earlier")
    config = write_matrix(folder / "m.toml", synthetic_feph, '[experiments.FT]\nphases = ["exploratory"]\n')
    with pytest.MonkeyPatch.context() as earlier:
        earlier.setattr(matrix, "NOT_READ_IN_PHASE", EARLIER_RULES)
        result = run_matrix(config, output=folder / "out", executor="inline", console=EscapingConsole(quiet=True))
    [old_id] = result.done
    return config, folder / "out", old_id


@pytest.fixture
def earlier_run(trained_earlier, tmp_path):
    """:func:`trained_earlier` with a results folder of this test's own (tests move it)."""
    config, output, old_id = trained_earlier
    shutil.copytree(output, tmp_path / "out")
    return config, tmp_path / "out", old_id


def test_a_run_finished_under_its_earlier_id_is_carried_over_not_trained_again(earlier_run, capsys):
    config, output, old_id = earlier_run
    [run] = plan_matrix(config, output=output)
    assert run.id != old_id and run.id.startswith("FT-x-")
    history = output / old_id / "history.json"
    trained, trained_at = history.read_bytes(), history.stat().st_mtime_ns

    assert main([str(config), "--output", str(output), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "1 of these runs is finished under an earlier id and would be carried over, not run again" in " ".join(dry.split())
    assert f"{old_id} -> {run.id}" in dry, "wrapped between ids, never inside one"
    assert sorted(path.name for path in output.iterdir() if path.name != LOCK_FILE) == [old_id]  # a dry run moves nothing

    assert main([str(config), "--output", str(output), "--executor", "inline"]) == 0
    printed = capsys.readouterr().out
    assert "1 finished run carried over to their new ids" in printed and "skipped 1 finished run " in printed
    assert sorted(path.name for path in output.iterdir() if path.name != LOCK_FILE) == [run.id]
    moved = output / run.id
    assert (moved / "history.json").read_bytes() == trained and (moved / "history.json").stat().st_mtime_ns == trained_at
    assert json.loads((moved / "config.json").read_text())["run"]["id"] == run.id
    assert [record["id"] for record in RunStore(output).records()] == [run.id]  # what report reads: one run

    assert main(["report", str(output), "--format", "json"]) == 0
    assert [row["folds"] for row in json.loads(capsys.readouterr().out)] == [1]  # runs of the configuration

    assert main([str(config), "--output", str(output), "--executor", "inline"]) == 0
    assert "carried over" not in capsys.readouterr().out  # said once, when it happened


def test_a_run_whose_folder_exists_is_not_overwritten_by_its_earlier_one(earlier_run, tmp_path):
    config, output, old_id = earlier_run
    [run] = plan_matrix(config, output=output)
    (output / run.id).mkdir()  # an interrupted run under the new id: both are left as they are
    session = Session(config, output=output, executor="inline", console=EscapingConsole(quiet=True))
    assert session.earlier_runs() == {}
    assert sorted(path.name for path in output.iterdir() if path.name != LOCK_FILE) == sorted([old_id, run.id])


def test_todays_rules_give_a_recorded_run_its_own_id(earlier_run, tmp_path):
    config, output, old_id = earlier_run
    [run] = plan_matrix(config, output=output)
    identify = recorded_id_rules(read_config(config, []), get_plugins())
    assert identify_folder(output / old_id, identify) == run.id
    other_seed = tmp_path / "other"
    shutil.copytree(output / old_id, other_seed)
    environment = json.loads((other_seed / "environment.json").read_text())
    (other_seed / "environment.json").write_text(json.dumps({**environment, "split_seed": environment["split_seed"] + 1}))
    assert identify_folder(other_seed, identify) not in (None, run.id)  # another split is another run


def test_a_report_counts_a_run_recorded_under_both_ids_once(earlier_run, tmp_path, capsys):
    config, output, old_id = earlier_run
    [run] = plan_matrix(config, output=output)
    shutil.copytree(output / old_id, tmp_path / "kept")
    assert carry_over(RunStore(output), {run.id: old_id}) == 1
    shutil.copytree(tmp_path / "kept", output / old_id)  # the run under both ids, as if trained again
    assert len(RunStore(output).records()) == 2

    assert main(["report", str(output), "--format", "json"]) == 0
    printed = capsys.readouterr()
    assert [row["folds"] for row in json.loads(printed.out)] == [1]  # runs of the configuration
    assert f"{output / old_id}: the same run as {output / run.id} under an earlier id" in printed.err.replace("\n", "")


def _renaming_then(monkeypatch, then):
    """Make ``carry_over``'s rename call ``then()`` once the folder has its new name."""
    import feph_finetune.results.earlier_ids as earlier_ids

    real = os.rename

    def rename(old, new):
        real(old, new)
        then()

    monkeypatch.setattr(earlier_ids.os, "rename", rename)


def test_ctrl_c_between_the_rename_and_the_rewrite_leaves_the_run_finished(earlier_run, monkeypatch):
    config, output, old_id = earlier_run
    [run] = plan_matrix(config, output=output)
    _renaming_then(monkeypatch, lambda: signal.raise_signal(signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        carry_over(RunStore(output), {run.id: old_id})
    monkeypatch.undo()
    assert RunStore(output).is_done(run.id), "the interrupt waited for the ids to be rewritten"


def test_a_carry_over_stopped_between_the_rename_and_the_rewrite_is_finished_next_time(earlier_run, monkeypatch):
    config, output, old_id = earlier_run
    [run] = plan_matrix(config, output=output)

    def killed():
        raise SystemExit("killed")  # as a SIGKILL or a full disk would stop it: no rewrite

    _renaming_then(monkeypatch, killed)
    with pytest.raises(SystemExit):
        carry_over(RunStore(output), {run.id: old_id})
    monkeypatch.undo()
    assert not RunStore(output).is_done(run.id)
    session = Session(config, output=output, executor="inline", console=EscapingConsole(quiet=True))
    assert session.earlier_runs() == {run.id: run.id}  # found half carried over
    assert main([str(config), "--output", str(output), "--executor", "inline"]) == 0
    assert RunStore(output).is_done(run.id) and json.loads((output / run.id / "config.json").read_text())["run"]["id"] == run.id
    assert sorted(path.name for path in output.iterdir() if path.name != LOCK_FILE) == [run.id]


@pytest.mark.parametrize("config_json, why", [
    ("{", "its config.json is unreadable"),
    ("[1]", "its config.json is not a JSON object"),
    ('{"config": {"dataset": null}}', "its config.json records no configuration this version reads"),
])
def test_a_finished_run_that_cannot_be_carried_over_is_named_with_why(tmp_path, config_json, why):
    """Its run trains again under the new id beside it, and a report then counts both: say so."""
    old = tmp_path / "A-x-0123456789"
    old.mkdir()
    (old / "result.json").write_text(json.dumps({"id": old.name, "experiment": "A", "phase": "exploratory", "status": "done"}), encoding="utf-8")
    (old / "config.json").write_text(config_json, encoding="utf-8")
    (old / "environment.json").write_text('{"split_seed": 0}', encoding="utf-8")
    (tmp_path / "B-x-0123456789").mkdir()  # another experiment's folder: no candidate, no word
    (tmp_path / "B-x-0123456789" / "config.json").write_text("{", encoding="utf-8")
    warnings = []
    identify = recorded_id_rules(config_from_dict({}), get_plugins())
    assert earlier_folders(RunStore(tmp_path), ["A-x-abcdefabcd"], ["A-x-abcdefabcd"], identify, warnings.append) == {}
    assert len(warnings) == 1 and warnings[0].startswith(f"{old}: a finished run not carried over to a new id: {why}")
    assert "A-x-abcdefabcd" in warnings[0] and "counts both" in warnings[0]
    assert earlier_folders(RunStore(tmp_path), ["A-x-abcdefabcd"], ["A-x-abcdefabcd", old.name], identify, warnings.append) == {}
    assert len(warnings) == 1  # a run of the matrix itself is no candidate
