"""Every command the tool suggests to continue or run runs again works for how they were made: the
demo or a TOML file (its own path), the same ``--set`` overrides, the same results folder."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from feph_finetune.cli import main, run_parser
from feph_finetune.demo.session import DemoSession
from feph_finetune.execution import job as job_module
from feph_finetune.execution.job import execute_run
from feph_finetune.data.preparation import DataSource
from feph_finetune.invocation import invocation_record, matrix_command
from feph_finetune.predict.bundle import BundleError, find_bundle
from feph_finetune.results.store import RunStore
from feph_finetune.session import Session
from conftest import write_matrix
from fake_store import metrics_of, record, sample_confusion
from fephfixture import write_keras_archive


def suggested_command(message: str) -> list[str]:
    """The arguments of the ``python -m feph_finetune ...`` command that ends ``message``."""
    words = shlex.split(message[message.rindex("python -m feph_finetune"):])
    return words[3:]


def suggested_folder(message: str) -> str | None:
    """The folder the suggested command at the end of ``message`` enters first (``cd DIR && ...``),
    None where it enters none."""
    found = re.search(r"cd (.+) && $", message[:message.rindex("python -m feph_finetune")])
    return shlex.split(found.group(1))[0] if found else None


def finish_without_a_model(session: Session, run) -> None:
    """Write ``run`` of ``session`` as a finished run that saved no model, made by ``session``'s command."""
    finished = record("M2", 0, run.phase, None, metrics_of(sample_confusion(0.6, np.random.default_rng(0))), 1.0)
    session.store.finish(run.id, {**finished, "id": run.id, "experiment": run.experiment, "cv_label": ""})
    session.store.write(run.id, "config.json", {"invocation": session.invocation()})


def dry_run_ids(argv: list[str], capsys) -> list[str]:
    """The ids of the runs the command ``argv`` would run (its ``--dry-run --json``)."""
    capsys.readouterr()
    assert main([*argv, "--dry-run", "--json"]) == 0, capsys.readouterr().err
    return [listed["id"] for listed in json.loads(capsys.readouterr().out)]


@pytest.mark.parametrize("name", ["A.b", "A+b", "A-b_1"])
def test_a_suggestion_quotes_an_experiment_name_as_a_toml_key_and_finds_the_same_run(name, tmp_path, synthetic_feph, monkeypatch, capsys):
    """Experiment names may hold ``.`` and ``+``: ``--set experiments.A.b.save_model=true`` read
    as experiment ``A``'s key ``b`` ("no experiment 'A'"), ``A+b`` as no key at all. The key's
    part is quoted as TOML quotes it, which the ``--set`` parser reads; the recorded override of
    the same experiment, quoted by the user, is kept."""
    monkeypatch.chdir(tmp_path)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f'[experiments."{name}"]\nsave_model = false\n')
    session = Session(path, output=tmp_path / "runs", overrides=[f"experiments.'{name}'.batch_size=8"], console=Console(file=io.StringIO()))
    (run,) = session.plan()
    finish_without_a_model(session, run)
    with pytest.raises(BundleError) as error:
        find_bundle(session.store.run_dir(run.id))
    argv = suggested_command(str(error.value))
    assert f"experiments.'{name}'.batch_size=8" in argv
    assert dry_run_ids(argv, capsys) == [run.id]


def test_a_recorded_override_of_a_quoted_experiment_that_the_suggestion_replaces_is_left_out():
    """Keys are compared by their parts, however quoted: both would be refused together."""
    record_ = invocation_record({}, ["experiments.'M.2'={save_model = false}", 'experiments."M.2".seed=5'], demo=False)
    argv = shlex.split(matrix_command(record_, Path("runs"), ["M.2"], None, ['experiments."M.2".save_model=true']))
    assert argv.count("--set") == 2 and 'experiments."M.2".seed=5' in argv


def test_a_suggestion_read_in_another_folder_enters_the_folder_the_run_was_made_in(tmp_path, synthetic_feph, monkeypatch, capsys):
    """The TOML's relative paths (``root = "data/FePh"``) are read against the working folder:
    pasted in another one, the command read other data, or none. It says ``cd`` to the folder the
    run was made in, where it finds the same run; read in that folder, it needs no ``cd``."""
    made_in, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    made_in.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(made_in)
    path = write_matrix(made_in / "m.toml", Path(os.path.relpath(synthetic_feph, made_in)), "[experiments.FT]\n")
    session = Session(Path("m.toml"), output=Path("runs"), console=Console(file=io.StringIO()))
    (run,) = session.plan()
    finish_without_a_model(session, run)
    with pytest.raises(BundleError) as here:
        find_bundle(Path("runs") / run.id)
    assert suggested_folder(str(here.value)) is None

    monkeypatch.chdir(elsewhere)
    with pytest.raises(BundleError) as error:
        find_bundle(Path("..", "project", "runs", run.id))
    assert suggested_folder(str(error.value)) == str(made_in)
    argv = suggested_command(str(error.value))
    assert argv[0] == path.name and argv[argv.index("--output") + 1] == "runs"
    monkeypatch.chdir(suggested_folder(str(error.value)))
    assert dry_run_ids(argv, capsys) == [run.id]


def test_a_failed_runs_suggestion_repeats_its_toml_overrides_and_folder_and_finds_the_same_run(tmp_path, synthetic_feph, monkeypatch, capsys):
    """Overrides enter the run ids: a suggestion without them would run other runs than this one."""
    monkeypatch.chdir(tmp_path)  # the run is made, and its suggestion read, in one folder
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n")
    overrides = ["experiments.FT.batch_size=16", "experiments.FT.save_model=false"]
    session = Session(path, executor="inline", output=tmp_path / "runs", overrides=overrides, console=Console(file=io.StringIO()))
    (run,) = session.plan()

    def fail_at_once(run, plugins):
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(job_module, "check_installed", fail_at_once)  # the run fails at once, its config.json written
    assert execute_run(session.runner().job(run), session.plugins, DataSource()) == "failed"
    config = json.loads((session.store.run_dir(run.id) / "config.json").read_text())
    assert config["invocation"] == {"config": str(path.resolve()), "demo": False, "overrides": overrides, "cwd": str(tmp_path)}

    with pytest.raises(BundleError) as error:
        find_bundle(session.store.run_dir(run.id))
    argv = suggested_command(str(error.value))
    assert argv == ["m.toml", "--only", "FT", "--phase", "exploratory", "--set", "experiments.FT.batch_size=16",
                    "--set", "experiments.FT.save_model=true", "--output", str(session.store.root)]
    capsys.readouterr()
    assert main([*argv, "--dry-run", "--json"]) == 0
    assert [listed["id"] for listed in json.loads(capsys.readouterr().out)] == [run.id]


def test_a_demo_runs_suggestion_says_demo(tmp_path, synthetic_feph, monkeypatch):
    """The demo's data and bases exist only with --demo: a command without it cannot work."""
    monkeypatch.chdir(tmp_path)
    path = write_matrix(tmp_path / "experiments.toml", synthetic_feph, "[experiments.M2]\nphases = ['cv']\n")
    demo = DemoSession(path, overrides=["demo.folds=2"], console=Console(file=io.StringIO()))
    assert demo.invocation() == {"config": str(path.resolve()), "demo": True, "overrides": ["demo.folds=2"], "cwd": str(tmp_path)}
    assert Session(path).invocation()["demo"] is False

    store = RunStore(tmp_path / "runs" / "demo")
    finished = record("M2", 0, "cv", 0, metrics_of(sample_confusion(0.6, np.random.default_rng(0))), 1.0)
    store.finish(finished["id"], finished)
    store.write(finished["id"], "config.json", {"invocation": demo.invocation()})
    with pytest.raises(BundleError) as error:
        find_bundle(store.run_dir(finished["id"]))
    args = run_parser().parse_args(suggested_command(str(error.value)))
    assert (str(args.config), args.demo, args.only, args.phase, args.force) == ("experiments.toml", True, ["M2"], "cv", True)
    assert args.overrides == ["demo.folds=2", "experiments.M2.save_model=true"] and args.output == store.root


def test_a_run_without_a_record_says_what_to_add():
    """A run written before runs recorded their command: the placeholder, and what it may lack."""
    command = matrix_command(None, Path("runs"), ["M2"], "cv", force=True)
    assert command == "python -m feph_finetune EXPERIMENTS.toml --only M2 --phase cv --output runs --force"


@pytest.mark.parametrize("override", ["output=elsewhere", "experiments.M2.save_model=false", "experiments.M2={save_model = false}"])
def test_a_recorded_override_that_the_suggestion_replaces_is_left_out(override):
    """Both would be refused together (a key set twice with different values)."""
    record_ = invocation_record({}, [override, "seed=5"], demo=False)
    argv = shlex.split(matrix_command(record_, Path("runs"), ["M2"], None, ["experiments.M2.save_model=true"]))
    assert override not in argv and "seed=5" in argv


def test_the_matrixs_note_on_runs_without_a_saved_model_gives_the_whole_command(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n")
    store = RunStore(tmp_path / "runs")
    session = Session(path, output=store.root, overrides=["experiments.FT.batch_size=16"])
    (run,) = session.plan()
    finished = record("M2", 0, "exploratory", None, metrics_of(sample_confusion(0.6, np.random.default_rng(0))), 1.0)
    store.finish(run.id, {**finished, "id": run.id, "experiment": "FT", "cv_label": ""})
    argv = [str(path), "--output", str(store.root), "--set", "experiments.FT.batch_size=16", "--set", "experiments.FT.save_model=true"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("1 of them")]  # one line, however wide: a command to copy
    assert line.endswith(f"to run them again and save it: python -m feph_finetune {shlex.quote(str(path))} --only FT --phase exploratory "
                         f"--set experiments.FT.batch_size=16 --set experiments.FT.save_model=true --output {store.root} --force")


def no_ft_matrix(tmp_path: Path, root: Path) -> Path:
    """A matrix of one No-FT experiment N (a pretrained classifier evaluated as it is)."""
    model_file = tmp_path / "savchenko.keras"
    write_keras_archive(model_file)
    return write_matrix(tmp_path / "m.toml", root, f'[experiments.N]\nfine_tune = false\noptions.mobilenet.weights = "{model_file}"\n')


def test_predict_of_a_no_ft_run_says_it_has_no_model_and_offers_no_command_that_saves_none(tmp_path, synthetic_feph, monkeypatch, capsys):
    """Running a No-FT run again with save_model and --force saves nothing (it trains no model):
    a suggestion to do so sent the user round in a loop. The message says why there is no model
    and what gives one, and offers no command."""
    monkeypatch.chdir(tmp_path)
    session = Session(no_ft_matrix(tmp_path, synthetic_feph), output=tmp_path / "runs", console=Console(file=io.StringIO()))
    (run,) = session.plan()
    finish_without_a_model(session, run)
    session.store.write(run.id, "config.json", {"config": run.config.to_json(), "invocation": session.invocation()})
    with pytest.raises(BundleError) as error:
        find_bundle(session.store.run_dir(run.id))
    message = " ".join(str(error.value).split())
    assert "No-FT run (fine_tune = false)" in message and "trains no model" in message
    assert "fine-tuned experiment (fine_tune = true) with save_model = true" in message
    assert "python -m feph_finetune" not in message and "--force" not in message
    for command in (["export", str(session.store.run_dir(run.id)), str(tmp_path / "exported")], ["predict", str(session.store.run_dir(run.id)), "face.png"]):
        capsys.readouterr()
        assert main(command) == 2
        assert "trains no model" in " ".join(capsys.readouterr().err.split()), command


def test_a_no_ft_experiment_with_save_model_is_warned_of_and_gets_no_suggestion_to_save(tmp_path, synthetic_feph, capsys):
    """The matrix's note on finished runs without a saved model suggested ``--force`` for a No-FT
    run, which then saved nothing again; the configuration's check says instead that save_model
    does nothing there."""
    path = no_ft_matrix(tmp_path, synthetic_feph)
    store = RunStore(tmp_path / "runs")
    session = Session(path, output=store.root)  # save_model keeps the run id
    (run,) = session.plan()
    finished = record("M0", 0, "exploratory", None, metrics_of(sample_confusion(0.6, np.random.default_rng(0))), 1.0)
    store.finish(run.id, {**finished, "id": run.id, "experiment": "N", "cv_label": ""})
    assert main([str(path), "--output", str(store.root), "--set", "experiments.N.save_model=true"]) == 0
    captured = capsys.readouterr()
    assert "without a saved model" not in captured.out and "--force" not in captured.out.replace("use --force to rerun them", "")
    (warning,) = [" ".join(line.split()) for line in captured.err.split("warning: ")[1:]]
    assert warning == ("--set experiments.N.save_model=true: experiment N is No-FT (fine_tune = false): it trains no model, so save_model "
                       "saves nothing (predict and export need a fine-tuned experiment's model); remove it")
