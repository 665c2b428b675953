"""Running matrices: resume after a kill, failures isolated to their run, reports from the store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from feph_finetune import PluginError, hookimpl
from feph_finetune.api import CLASSES
from feph_finetune.cli import main
from feph_finetune.plugins import get_plugins

from conftest import REPO, run_cli, write_matrix

#: Four runs (both phases) of one all-layers epoch each: the head stage (a second traced model, a
#: fifth of a tiny run's CPU) adds nothing to what a resume must keep, the finished runs and their numbers.
TWO_EXPERIMENTS = """
[experiments.A]
phases = ["cv"]
deterministic = true
options.adam.head_epochs = 0

[experiments.B]
augment = ["flip"]
deterministic = true
options.adam.head_epochs = 0
"""


def report_json(outdir) -> list[dict]:
    result = run_cli("report", str(outdir), "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow(130)
def test_a_killed_matrix_resumes_without_redoing_finished_runs(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_EXPERIMENTS)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "feph_finetune", str(path), "--output", str(interrupted)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(interrupted.glob("*/result.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {path.parent.name: path.stat().st_mtime_ns for path in interrupted.glob("*/result.json")}
    assert 1 <= len(finished) < 4, "the kill should land mid-matrix"

    resumed = run_cli(str(path), "--output", str(interrupted))
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipped {len(finished)} finished run" in resumed.stdout
    for run_id, mtime in finished.items():
        assert (interrupted / run_id / "result.json").stat().st_mtime_ns == mtime
    assert len(list(interrupted.glob("*/result.json"))) == 4

    straight = tmp_path / "straight"
    assert run_cli(str(path), "--executor", "inline", "--output", str(straight)).returncode == 0
    assert without_timing(report_json(interrupted)) == without_timing(report_json(straight))


def without_timing(rows: list[dict]) -> list[dict]:
    """Report rows less the wall-clock times, which no two runs share."""
    return [{key: value for key, value in row.items() if key != "time_s"} for row in rows]


class FailingAugment:
    @hookimpl
    def augment(self, context):
        raise PluginError("this augmentation always fails")


def test_a_failing_plugin_fails_its_run_only(synthetic_feph, tmp_path, capsys):
    get_plugins().pm.register(FailingAugment(), name="broken_augment")
    experiments = '[experiments.good]\n\n[experiments.bad]\naugment = ["broken_augment"]\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    outdir = tmp_path / "runs"
    assert main([str(path), "--executor", "inline", "--output", str(outdir)]) == 1
    output = capsys.readouterr().out
    assert "1 of 2 runs failed" in output and "broken_augment" in output
    records = {json.loads(p.read_text())["experiment"]: json.loads(p.read_text()) for p in outdir.glob("*/result.json")}
    assert records["good"]["status"] == "done"
    assert records["bad"]["status"] == "failed"
    assert records["bad"]["error"]["plugin"] == "broken_augment" and records["bad"]["error"]["hook"] == "augment"
    rows = {row["experiment"]: row for row in report_json(outdir)}
    assert rows["good"]["folds"] == 1 and rows["bad"]["failed"] == 1


@pytest.mark.slow(20)
def test_report_metrics_match_the_stored_predictions(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nphases = ["cv"]\n')
    outdir = tmp_path / "runs"
    assert main([str(path), "--executor", "inline", "--output", str(outdir)]) == 0
    accuracies, sensitivities = [], {name: [] for name in CLASSES}
    for run_dir in sorted(folder for folder in outdir.iterdir() if folder.is_dir()):  # not the lock file
        with np.load(run_dir / "predictions.npz") as stored:
            y_true, predicted = stored["y_true"], stored["y_prob"].argmax(axis=1)
        confusion = np.zeros((7, 7), dtype=int)
        for true, guess in zip(y_true, predicted):
            confusion[true, guess] += 1
        accuracies.append(np.trace(confusion) / confusion.sum())
        for index, name in enumerate(CLASSES):
            if confusion[index].sum():
                sensitivities[name].append(confusion[index, index] / confusion[index].sum())
    (row,) = report_json(outdir)
    assert row["folds"] == 3
    assert np.isclose(row["accuracy"], np.mean(accuracies))
    assert np.isclose(row["accuracy_std"], np.std(accuracies, ddof=1))
    for name, values in sensitivities.items():
        assert np.isclose(row["sensitivity"][name], np.mean(values))


def test_changed_data_means_new_runs_and_the_report_says_which_data(synthetic_feph, tmp_path, capsys):
    """Editing the labels CSV and rerunning the same TOML must not reuse the old results."""
    import shutil

    from feph_finetune_plugins.feph import read_release as load_dataset

    root = tmp_path / "FePh"
    shutil.copytree(synthetic_feph, root)
    path = write_matrix(tmp_path / "m.toml", root, "[experiments.A]\npreprocess = []\noptions.adam.epochs = 0\n")
    outdir = tmp_path / "runs"
    assert main([str(path), "--output", str(outdir)]) == 0
    first = load_dataset(root).fingerprint
    assert f"{first}: all rows" in capsys.readouterr().out
    assert main([str(path), "--output", str(outdir)]) == 0
    assert "skipped 1 finished run " in capsys.readouterr().out

    (csv_path,) = root.glob("*.csv")
    lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    relabelled = next(number for number, line in enumerate(lines) if line.split(",")[2] == "6")   # a surprise frame
    lines[relabelled] = lines[relabelled].replace(",6,", ",5,", 1)                                # becomes sad
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    second = load_dataset(root).fingerprint
    assert second != first

    assert main([str(path), "--output", str(outdir)]) == 0
    printed = capsys.readouterr().out
    assert "skipped" not in printed and f"{second}: all rows" in printed
    records = [json.loads(file.read_text()) for file in outdir.glob("*/result.json")]
    assert sorted(record["data"] for record in records) == sorted([first, second])
    rows = report_json(outdir)
    assert sorted(row["data"] for row in rows) == sorted([first, second])   # never averaged together
