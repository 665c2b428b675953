"""One schema, one pass (issue 20): every setting is declared with an ``Option`` (core keys,
executors' options, plugins' options, ``[demo]``), and a single ``--dry-run`` reports every
problem of a file, whatever stage it belongs to, each with its place, exit code 2.

No test here trains or imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from feph_finetune.cli import main
from feph_finetune.config.options import Option, option_problems
from feph_finetune.config.reading import ConfigError, read_config
from feph_finetune.printable import shortened
from feph_finetune.config.checking import check_configuration
from feph_finetune.plugins import get_plugins

from conftest import line_of, run_cli, write_distribution, write_matrix
from fephfixture import write_keras_archive

EIGHT_FAULTS = """
[executor.process]
jobs = "many"

[demo]
fodls = 3

[experiments.Good]
phases = ["cv"]

[experiments.Typed]
batch_size = "eight"

[experiments.Misnamed]
model = "mobilenett"

[experiments.Flipped]
augment = ["flip"]
options.flip.mode = "dubble"

[experiments.Gridded]
grid = { batch_sise = [8, 16] }

[experiments.Weighted]
fine_tune = false
options.mobilenet.weights = "{missing}"

[experiments.Child]
extends = "Goood"
"""


def place(path, text: str, key: str) -> str:
    return f"{path}:{line_of(path, text)} {key}"


def test_one_dry_run_reports_faults_of_every_stage_at_once(tmp_path, synthetic_feph, capsys):
    missing = tmp_path / "models" / "mobilenet_7.h5"
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, EIGHT_FAULTS.replace("{missing}", str(missing)))
    (tmp_path / "taken").write_text("a file, not a folder", encoding="utf-8")
    text = path.read_text().replace("folds = 3", "folds = 9000").replace("seed = 3", f'seed = 3\noutput = "{tmp_path / "taken"}"')
    path.write_text(text, encoding="utf-8")
    code = main([str(path), "--dry-run"])
    error = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in error
    expected = [
        f"{place(path, 'batch_size = ', 'experiments.Typed.batch_size')}: expected integer, got string 'eight'",
        f"{place(path, 'model = ', 'experiments.Misnamed.model')}: plugin 'mobilenett' is not installed (did you mean 'mobilenet'?)",
        f"{place(path, 'options.flip.mode', 'experiments.Flipped.options.flip.mode')}: 'dubble' is not one of 'double', 'random'",
        f"{place(path, 'grid = ', 'experiments.Gridded.grid.batch_sise')}: cannot expand 'batch_sise': not a setting of a run (did you mean 'batch_size'?)",
        f"{place(path, 'jobs = ', 'executor.process.jobs')}: expected a number of runs at once",
        f"{place(path, 'fodls = ', 'demo.fodls')}: unknown key 'fodls' (did you mean 'folds'?)",
        f"{place(path, 'folds = 9000', 'dataset.folds')}: 9000 folds need at least 9000 groups",
        f"{place(path, 'options.mobilenet.weights', 'experiments.Weighted.options.mobilenet.weights')}: no such file",
        f"{place(path, 'extends = ', 'experiments.Child.extends')}: no experiment 'Goood' (did you mean 'Good'?)",
        f"results directory {tmp_path / 'taken'}: ",
    ]
    for line in expected:
        assert line in error, f"missing: {line}\n{error}"
    assert f"error: {len(expected)} problems" in error


def test_a_list_that_would_leave_nothing_to_do_is_refused_with_the_other_problems(tmp_path, synthetic_feph, capsys):
    """``phases = []`` gave an experiment no runs without a word (``--only`` of it then said the
    file defines none), ``evaluate = []`` runs that measure nothing: each is refused at its place,
    with the file's other problems; lists where empty is a choice stay accepted."""
    experiments = ('[experiments.A]\nphases = []\n[experiments.B]\nevaluate = []\nbatch_size = "eight"\n'
                   '[experiments.C]\npreprocess = []\naugment = []\ngrid = {}\n')
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments, extra="\n[tracking]\nplugins = []\n")
    assert main([str(path), "--dry-run", "--only", "A", "--set", "experiments.C.phases=[]"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert error.startswith("error: 4 problems "), error
    for line in (
        f"{place(path, 'phases = []', 'experiments.A.phases')}: phases lists nothing: it would give the experiment no runs; "
        'list "exploratory", "cv" or both, or remove the experiment',
        f"{place(path, 'evaluate = []', 'experiments.B.evaluate')}: evaluate lists nothing: it would measure nothing",
        f"{place(path, 'batch_size = ', 'experiments.B.batch_size')}: expected integer",
        "--set experiments.C.phases=[]: phases lists nothing: it would give the experiment no runs",
    ):
        assert line in error, f"missing: {line}\n{error}"
    assert main([str(path), "--dry-run", "--set", 'experiments.A.phases=["cv"]', "--set", 'experiments.B.evaluate=["paper_metrics"]',
                 "--set", "experiments.B.batch_size=8"]) == 0, capsys.readouterr().err


def test_an_empty_or_blank_plugin_name_is_refused_in_every_key_that_names_plugins(tmp_path, synthetic_feph, capsys):
    """``evaluate = [""]`` was accepted and its runs measured nothing (exit 0), ``preprocess`` or
    ``augment = [""]`` did what ``[]`` does under another run id: a name of nothing or of spaces
    names no plugin. Each is refused at its place, in every key that names plugins, with the
    file's other problems; the plugin named beside a blank one is still checked."""
    experiments = ('[experiments.A]\nevaluate = [""]\n[experiments.B]\npreprocess = ["face_crop", " "]\nbatch_size = "eight"\n'
                   '[experiments.C]\naugment = ["flipp", "", ""]\n[experiments.D]\nmodel = "  "\nclass_weights = " "\n'
                   '[experiments.E]\ngrid = { evaluate = [["paper_metrics"], [""]] }\n')
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments, extra='\n[tracking]\nplugins = [""]\n')
    assert main([str(path), "--dry-run", "--track", " ", "--set", 'defaults.augment=[""]']) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in error
    empty_evaluate = 'evaluate = [""]'
    expected = [
        f"{place(path, empty_evaluate, 'experiments.A.evaluate')}: evaluate lists '', which names no plugin; list a plugin that implements evaluate there",
        f"{place(path, 'preprocess = ', 'experiments.B.preprocess')}: preprocess lists ' ', which names no plugin",
        f"{place(path, 'batch_size = ', 'experiments.B.batch_size')}: expected integer",
        f"{place(path, 'augment = ', 'experiments.C.augment')}: augment lists '', which names no plugin",
        f"{place(path, 'augment = ', 'experiments.C.augment')}: plugin 'flipp' is not installed",
        f"{place(path, 'model = ', 'experiments.D.model')}: names no plugin; a build_model plugin is needed",
        f"{place(path, 'class_weights = ', 'experiments.D.class_weights')}: ' ' names no plugin; name a plugin that implements weight_classes, or write \"\" for none",
        f"{place(path, 'grid = ', 'experiments.E.grid.evaluate')}: evaluate lists '', which names no plugin",
        f"{place(path, 'plugins = ', 'tracking.plugins')}: plugins lists '', which names no plugin",
        "--track : ' ' names no plugin",
        "--set defaults.augment=[\"\"]: augment lists '', which names no plugin",
    ]
    for line in expected:
        assert line in error, f"missing: {line}\n{error}"
    assert error.startswith(f"error: {len(expected)} problems "), error


def test_a_type_error_does_not_hide_the_plugins_options_and_traits_of_the_same_experiment(tmp_path, synthetic_feph):
    experiments = """
    [experiments.A]
    batch_size = "eight"
    augment = ["flipp"]
    options.face_crop.margin = -5.0
    grid = { threads = [1, -1], input_sise = [32] }
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    try:
        check_configuration(read_config(path), get_plugins())
    except ConfigError as error:
        text = str(error)
    else:
        raise AssertionError("no problem reported")
    for part in ("experiments.A.batch_size: expected integer", "experiments.A.augment: plugin 'flipp' is not installed (did you mean 'flip'?)",
                 "experiments.A.options.face_crop.margin: must be >= 0", "experiments.A.grid.threads: must be >= 0, not -1",
                 "experiments.A.grid.input_sise: cannot expand"):
        assert part in text, f"missing: {part}\n{text}"


def test_an_experiment_with_an_unknown_plugin_still_has_its_folds_checked_against_the_data(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nphases = ["exploratory", "cv"]\npreprocess = ["face_crop", "normalise"]\n')
    with_faults = check_configuration_problems(read_config(path, ["dataset.folds=500"]))
    assert "experiments.A.preprocess: plugin 'normalise' is not installed (did you mean 'normalize'?)" in with_faults
    assert "--set dataset.folds=500: 500 folds need at least 500 groups" in with_faults


def check_configuration_problems(raw) -> str:
    try:
        check_configuration(raw, get_plugins())
    except ConfigError as error:
        return str(error)
    raise AssertionError("no problem reported")


def test_the_demo_table_is_checked_without_demo(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n", extra="\n[demo]\nfolds = 1\nbase_epochs = { mobilenet = 0 }\n")
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert f"{place(path, 'folds = 1', 'demo.folds')}: must be 0 (keep [dataset] folds), or 2 and more up to 10,000, not 1" in error
    assert "demo.base_epochs.mobilenet: must be >= 1, not 0" in error


def test_the_check_returns_what_a_run_needs(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\n[experiments.B]\nphases = ["cv"]\n')
    checked = check_configuration(read_config(path), get_plugins(), only=["B"], output=tmp_path / "out", jobs="2")
    assert [run.experiment for run in checked.runs] == ["B"] * 3
    assert checked.output == tmp_path / "out"
    assert checked.executor.cls.name == "process" and checked.executor.settings == {"jobs": 2, "devices": []}


SLURM_EXECUTOR = '''
from feph_finetune import Executor, Option, hookimpl


class SlurmExecutor(Executor):
    name = "slurm"
    summary = "each run as a Slurm job"
    options = {"partition": Option("gpu", choices=("gpu", "cpu")), "hours": Option(1.0, minimum=0, exclusive_minimum=True), "account": ""}

    def execute(self, jobs, report, here):
        raise NotImplementedError


@hookimpl
def register_executors(register):
    register(SlurmExecutor)
'''


def test_a_third_party_executor_declares_its_options_and_they_are_checked_in_the_same_pass(tmp_path, synthetic_feph):
    env = write_distribution(tmp_path / "site", "slurm", SLURM_EXECUTOR)
    extra = '\n[executor]\nname = "slurm"\n\n[executor.slurm]\npartition = "gpus"\nhours = 0\nacount = "lab"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nbatch_size = "eight"\n', extra=extra)
    result = run_cli(str(path), "--dry-run", env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for line in (
        f"{place(path, 'partition = ', 'executor.slurm.partition')}: 'gpus' is not one of 'gpu', 'cpu' (did you mean 'gpu'?)",
        f"{place(path, 'hours = ', 'executor.slurm.hours')}: must be > 0, not 0",
        f"{place(path, 'acount = ', 'executor.slurm.acount')}: executor 'slurm' has no option 'acount' (did you mean 'account'?)",
        f"{place(path, 'batch_size = ', 'experiments.A.batch_size')}: expected integer, got string 'eight'",
    ):
        assert line in result.stderr, f"missing: {line}\n{result.stderr}"
    listed = json.loads(run_cli("plugins", "--settings", "--json", env=env).stdout)
    slurm = {row["key"]: row for row in listed if row["table"] == "executor.slurm"}
    assert slurm["partition"]["default"] == "gpu" and "one of 'gpu', 'cpu'" in slurm["partition"]["accepts"]


def test_plugins_settings_lists_every_declared_setting(capsys):
    assert main(["plugins", "--settings", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {(row["table"], row["key"]) for row in rows}
    assert {("", "seed"), ("dataset", "folds"), ("defaults / experiments.NAME", "batch_size"), ("report", "figures"),
            ("executor.process", "jobs"), ("executor.ray", "num_cpus"), ("demo", "folds"), ("demo.base_epochs", "mobilenet"),
            ("options.flip", "mode")} <= keys
    folds = next(row for row in rows if (row["table"], row["key"]) == ("dataset", "folds"))
    assert folds["default"] == 5 and ">= 2" in folds["accepts"] and "<= 10000" in folds["accepts"]
    assert main(["plugins", "--settings"]) == 0
    assert "test_fraction" in capsys.readouterr().out


def test_flags_are_checked_by_the_declarations_of_the_settings_they_set(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run", "--jobs", "-2", "--devices", "0,-1", "--set", "defaults.batch_size=0"]) == 2
    error = capsys.readouterr().err
    assert "--jobs: must be >= 0, not -2" in error and "--devices: must be >= 0, not -1" in error
    assert "--set defaults.batch_size=0: must be >= 1, not 0" in error


def test_an_option_with_keywords_kind_and_expects():
    jobs = Option(0, minimum=0, keywords=("auto",))
    assert option_problems("auto", jobs) == [] and option_problems("many", jobs) == ["expected integer or 'auto', got string 'many'"]
    seed = Option(None, kind=int, minimum=0)
    assert option_problems(3, seed) == [] and option_problems("3", seed) == ["expected integer, got string '3'"]
    names = Option([], kind=str)
    assert option_problems(["a"], names) == [] and option_problems([1], names) == ["expected array of strings, got array [1]"]
    devices = Option([], kind=int, minimum=0, expects="GPU indices")
    assert option_problems([0, -1], devices) == ["must be >= 0, not -1"] and option_problems(["x"], devices) == ["expected GPU indices, got array ['x']"]


DEMO_DEFAULTS_FAULTS = """
[demo.defaults]
augment = ["flipp"]

[demo.defaults.options.mobilenet]
alpah = 0.5

[demo.defaults.options.flip]
mode = "dubble"
"""


def test_the_demo_defaults_plugins_and_options_are_checked_without_demo_in_the_same_pass(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nbatch_size = "eight"\n', extra=DEMO_DEFAULTS_FAULTS)
    expected = [
        f"{place(path, 'augment = ', 'demo.defaults.augment')}: plugin 'flipp' is not installed (did you mean 'flip'?)",
        f"{place(path, 'alpah = ', 'demo.defaults.options.mobilenet.alpah')}: plugin 'mobilenet' has no option 'alpah' (did you mean 'alpha'?)",
        f"{place(path, 'mode = ', 'demo.defaults.options.flip.mode')}: 'dubble' is not one of 'double', 'random'",
        f"{place(path, 'batch_size = ', 'experiments.A.batch_size')}: expected integer, got string 'eight'",
    ]
    for flags in ([], ["--demo"]):  # with --demo they are laid over [defaults]: each is still said once, where it is written
        assert main([str(path), "--dry-run", *flags]) == 2
        error = capsys.readouterr().err
        assert "Traceback" not in error
        for line in expected:
            assert error.count(line) == 1, f"{flags}: not once: {line}\n{error}"
        assert f"error: {len(expected)} problems" in error, error


def test_a_valid_demo_defaults_table_passes_a_plain_dry_run(tmp_path, synthetic_feph):
    extra = '\n[demo.defaults]\naugment = ["flip"]\n\n[demo.defaults.options.flip]\nmode = "random"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n", extra=extra)
    assert main([str(path), "--dry-run"]) == 0


def test_one_dry_runs_problems_are_listed_by_line_then_those_without_one(tmp_path, synthetic_feph, capsys):
    """The folds are checked against the data last, the executor's options after the experiments:
    listed, they follow the file from top to bottom, then come the flags and the folders."""
    missing = tmp_path / "models" / "mobilenet_7.h5"
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, EIGHT_FAULTS.replace("{missing}", str(missing)))
    path.write_text(path.read_text().replace("folds = 3", "folds = 9000"), encoding="utf-8")
    assert main([str(path), "--dry-run", "--only", "Goodd", "--devices", "-1"]) == 2
    problems = capsys.readouterr().err.splitlines()[1:]
    lines = [int(found.group(1)) for problem in problems if (found := re.match(rf"{re.escape(str(path))}:(\d+) ", problem))]
    assert len(lines) == 9 and lines == sorted(lines), problems
    assert lines[0] == line_of(path, "folds = 9000") < line_of(path, "jobs = ")
    assert [problem.split(":")[0] for problem in problems[len(lines):]] == ["--only Goodd", "--devices"], problems


def test_options_of_a_tracker_that_is_not_enabled_are_a_warning_not_an_error(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n", extra='\n[tracking.tensorboard]\nconfusion_image = false\n')
    assert main([str(path), "--dry-run"]) == 0
    warning = " ".join(capsys.readouterr().err.split())
    assert (f"warning: {place(path, '[tracking.tensorboard]', 'tracking.tensorboard')}: options of the tracking plugin 'tensorboard', "
            'which is not enabled, so they have no effect; enable it with [tracking] plugins = ["tensorboard"] or --track tensorboard') in warning
    assert main([str(path), "--dry-run", "--track", "tensorboard"]) == 0  # --track enables it: its options count, nothing to say
    assert "warning" not in capsys.readouterr().err


def dry_run_error(path, capsys, *flags: str) -> str:
    """The error of ``--dry-run`` over ``path``, which must exit 2 without a traceback."""
    assert main([str(path), "--dry-run", *flags]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    return error


def test_an_experiment_name_too_long_for_a_folder_name_is_refused_at_the_dry_run(tmp_path, synthetic_feph, capsys):
    """A run id names its results folder; Linux refuses a name over 255 bytes (ENAMETOOLONG)."""
    longest = "A" * (255 - len("-cv2-0123456789"))  # the longest name whose every run id fits
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f'[experiments.{longest}]\nphases = ["exploratory", "cv"]\n[experiments.{"B" * 300}]\nphases = ["exploratory", "cv"]\n')
    error = dry_run_error(path, capsys)
    assert f"{place(path, 'B' * 300, 'experiments.' + 'B' * 300)}: the experiment's name is too long" in error
    assert "more than the 255 a file name may have; shorten the name to at most 240 characters" in error
    assert "error: 2 problems" not in error and f"experiments.{longest}" not in error


def test_a_grid_value_given_twice_is_refused_naming_the_key_and_the_value(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    error = dry_run_error(path, capsys, "--set", "experiments.A.grid={seed=[1,1]}")
    assert "experiments.A.grid.seed: the value 1 is repeated: each value makes a run" in error
    error = dry_run_error(path, capsys, "--set", 'experiments.A.grid={"options.adam.lr"=[0.001,1e-3]}')
    assert "experiments.A.grid.options.adam.lr: the value 0.001 is repeated" in error


def test_two_runs_with_one_id_are_refused_naming_both(tmp_path, synthetic_feph, capsys):
    """Values of an option of a plugin the experiment does not use do not change the run."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\ngrid = { "options.sam.rho" = [0.01, 0.02] }\n')
    error = dry_run_error(path, capsys)
    assert re.search(r"experiments\.A\.grid: two runs have the id A-x-\w+: experiments\.A \(grid options\.sam\.rho=0\.01\) "
                     r"and experiments\.A \(grid options\.sam\.rho=0\.02\) make the same run", error), error


def test_paths_with_a_name_too_long_for_the_file_system_are_problems_of_the_one_pass(tmp_path, synthetic_feph, capsys):
    """Linux refuses a file or folder name over 255 bytes (ENAMETOOLONG): looking such a path up
    raised a traceback, or passed the dry run and failed every run."""
    long = str(tmp_path / ("q" * 300))
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\n')
    error = dry_run_error(path, capsys, "--set", f"experiments.A.options.mobilenet.weights={long}.h5", "--set", f"dataset.cache_dir={long}", "--output", long)
    too_long = "a name in it has 300 bytes, more than the 255 a file or folder name may have"
    for place_ in (f"--set experiments.A.options.mobilenet.weights={shortened(long + '.h5', 120)}: '{long}.h5': a name in it has 303 bytes",
                   f"--set dataset.cache_dir={shortened(long, 120)}: {too_long}", f"results directory {long}: {too_long}"):
        assert place_ in error, error
    error = dry_run_error(path, capsys, "--set", f"dataset.root={long}")
    assert f"--set dataset.root={shortened(long, 120)}: '{long}': {too_long}" in error


@pytest.mark.parametrize("command", ["data", "synth", "report", "predict"])
def test_every_command_names_a_path_too_long_for_the_file_system(command, tmp_path, capsys, monkeypatch):
    long = str(tmp_path / ("q" * 300))
    monkeypatch.setattr("feph_finetune.predict.bundle.open_bundle", lambda path, plugins: object())  # inputs are opened before the model
    argv = {"data": ["data", long], "synth": ["synth", long], "report": ["report", long], "predict": ["predict", str(tmp_path), long + ".png"]}[command]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"{long}{'.png' * (command == 'predict')}: a name in it has" in error and "more than the 255 a file or folder name may have" in error, error
    assert "Traceback" not in error


def test_a_path_that_is_no_file_or_no_folder_is_named_for_what_it_is(tmp_path, synthetic_feph, capsys):
    """A FIFO (reading it waits forever), a folder or a file where the other is expected was
    reported as missing."""
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    (tmp_path / "folder.h5").mkdir()
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\n[experiments.B]\n')
    error = dry_run_error(path, capsys, "--set", f"experiments.A.options.mobilenet.weights={fifo}",
                          "--set", f"experiments.B.options.mobilenet.weights={tmp_path / 'folder.h5'}")
    assert f"'{fifo}': is not a regular file (a FIFO); only regular files are read" in error
    assert f"'{tmp_path / 'folder.h5'}': is a folder, not a file" in error
    error = dry_run_error(path, capsys, "--set", f"dataset.root={path}")
    assert f"--set dataset.root={path}: '{path}': is a file, not a folder" in error


@pytest.mark.parametrize("spelling", ["dotted", "link"])
def test_a_grid_that_names_one_file_two_ways_is_refused_naming_both(tmp_path, synthetic_feph, capsys, spelling):
    """``bases/a.keras`` and ``bases/../bases/a.keras`` (or a link to it) are one file: two runs
    of one experiment under two ids (issue 22). The ids of other files are unchanged."""
    bases = tmp_path / "bases"
    bases.mkdir()
    write_keras_archive(bases / "a.keras")
    write_keras_archive(bases / "b.keras")
    other = {"dotted": f"{bases}/../bases/a.keras", "link": str(tmp_path / "link.keras")}[spelling]
    if spelling == "link":
        os.symlink(bases / "a.keras", other)
    grid = f'[experiments.A]\ngrid = {{ "options.mobilenet.weights" = ["{bases / "a.keras"}", "{other}"] }}\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, grid)
    error = " ".join(dry_run_error(path, capsys).split())
    assert f"{place(path, 'grid = ', 'experiments.A.grid.options.mobilenet.weights')}: the values '{bases / 'a.keras'}' and '{other}' name the same file" in error, error
    assert "same run twice" in error
    distinct = write_matrix(tmp_path / "d.toml", synthetic_feph, grid.replace(other, str(bases / "b.keras")))
    assert main([str(distinct), "--dry-run"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["loop", "dangling", "fifo", "missing"])
def test_a_dataset_file_set_on_the_command_line_is_named_there_and_says_what_it_is(tmp_path, synthetic_feph, capsys, kind):
    """``--set dataset.labels=LOOP`` was reported at the TOML's ``dataset.root`` line as "does not
    exist" (issue 22): the place is the ``--set``, the text says what the path is."""
    odd = tmp_path / kind
    words = {"loop": "is a link loop", "dangling": f"is a link to nothing ({tmp_path / 'nowhere'})",
             "fifo": "is not a regular file (a FIFO)", "missing": "no such file"}[kind]
    if kind == "loop":
        os.symlink(tmp_path / "loop2", odd)
        os.symlink(odd, tmp_path / "loop2")
    elif kind == "dangling":
        os.symlink(tmp_path / "nowhere", odd)
    elif kind == "fifo":
        os.mkfifo(odd)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    error = " ".join(dry_run_error(path, capsys, "--set", f"dataset.labels={odd}").split())
    assert f"--set dataset.labels={odd}: labels CSV {odd}: {words}" in error, error
    assert "dataset.root" not in error, error
    error = " ".join(dry_run_error(path, capsys, "--set", f"dataset.images={odd}").split())
    folder_words = {"fifo": "is a FIFO, not a folder", "missing": "no such folder"}.get(kind, words)
    assert f"--set dataset.images={odd}: image folder {odd}: {folder_words}" in error, error


@pytest.mark.parametrize("device", ["fifo", "/dev/null"])
def test_a_root_or_folder_option_that_is_a_fifo_or_device_is_named_as_such(tmp_path, synthetic_feph, capsys, device):
    """A FIFO or a device was "a file, not a folder": every path problem is named by one classifier."""
    odd = str(tmp_path / "fifo") if device == "fifo" else device
    if device == "fifo":
        os.mkfifo(odd)
    words = "is a FIFO, not a folder" if device == "fifo" else "is a character device, not a folder"
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    error = " ".join(dry_run_error(path, capsys, "--set", f"dataset.root={odd}").split())
    assert f"--set dataset.root={odd}: '{odd}': {words}" in error, error
    assert option_problems(odd, Option("", path="dir")) == [f"'{odd}': {words}"]


@pytest.mark.parametrize("first, second", [
    ("FT\u00e9", "FTe\u0301"),  # NFC and NFD (what macOS file names and some editors give)
    ("FT x", "FT x "),  # a trailing space
    ("FT x", "FT  x"),  # a doubled space
    ("FT", "\uff26\uff34"),  # fullwidth letters
], ids=["normal-form", "trailing-space", "doubled-space", "fullwidth"])
def test_labels_that_differ_only_in_what_does_not_show_read_the_same_and_are_refused(tmp_path, synthetic_feph, capsys, first, second):
    """Three rows all shown "FTé" passed --dry-run: labels were compared code point by code point."""
    both = 'phases = ["exploratory", "cv"]\n'
    body = f'[experiments.A]\n{both}label = "{first}"\ncv_label = "{first}"\n\n[experiments.B]\n{both}label = "{second}"\ncv_label = "{second}"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, body)
    error = " ".join(dry_run_error(path, capsys).split())
    assert error.count("would read the same") == 2, error
    assert "experiments.B.label: experiment 'B' has the label" in error and "experiments.B.cv_label: experiment 'B' has the c/v label" in error, error


def test_two_experiments_whose_report_rows_would_read_the_same_are_refused_at_the_second(tmp_path, synthetic_feph, capsys):
    body = '[experiments.A]\nlabel = "Fine tune"\nphases = ["exploratory", "cv"]\n\n[experiments.B]\nphases = ["exploratory", "cv"]\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, body)
    assert main([str(path), "--dry-run"]) == 0
    error = " ".join(dry_run_error(path, capsys, "--set", 'experiments.B.cv_label="A"', "--set", 'experiments.B.label="Fine tune"').split())
    assert "--set experiments.B.label=\"Fine tune\": experiment 'B' has the label 'Fine tune' with model 'mobilenet' of experiment 'A'" in error
    assert "--set experiments.B.cv_label=\"A\": experiment 'B' has the c/v label 'A' of experiment 'A'" in error
    assert error.count("would read the same") == 2  # once per clash, not once per fold
    other_model = body.replace('[experiments.B]\n', '[experiments.B]\nlabel = "Fine tune"\nmodel = "efficientnet"\n')
    path.write_text(path.read_text().replace(body, other_model), encoding="utf-8")
    assert main([str(path), "--dry-run"]) == 0  # the exploratory table heads each backbone's rows: "No-FT" twice is the paper's
    path.write_text(path.read_text().replace('model = "efficientnet"\n', 'model = "efficientnet"\ncv_label = "A"\n'), encoding="utf-8")
    error = " ".join(dry_run_error(path, capsys).split())
    where = place(path, 'cv_label = "A"', "experiments.B.cv_label")
    assert f"{where}: experiment 'B' has the c/v label 'A' of experiment 'A'" in error
