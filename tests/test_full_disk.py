"""Full disks: a results folder without room stops the matrix early, naming the folder, keeping
finished runs and printing the command that continues; a crop cache without room only warns.

The disk is faked (``shutil.disk_usage``, or ENOSPC from the results store's file creation) so
that the tests need no privileges; the last test uses a real 4 MB tmpfs where it may mount one.
"""

from __future__ import annotations

import errno
import json
import io
import os
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
from rich.console import Console

from feph_finetune import run_matrix
from feph_finetune.results import store as results
from feph_finetune.cli import main
from feph_finetune.results.store import RunStore

from conftest import run_cli, write_distribution, write_matrix

TWO_QUICK_RUNS = """
[experiments.A]
grid = { seed = [1, 2] }
options.adam.head_epochs = 0
options.adam.epochs = 0
"""

Usage = namedtuple("Usage", "total used free")


def fake_free_space(monkeypatch, folder: Path, free) -> None:
    """``shutil.disk_usage`` of paths under ``folder`` reports ``free()`` bytes free."""
    real = shutil.disk_usage

    def disk_usage(path):
        if Path(path).resolve().is_relative_to(folder.resolve()) or folder.resolve().is_relative_to(Path(path).resolve()):
            return Usage(2**30, 2**30 - free(), free())
        return real(path)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


def test_a_full_results_disk_stops_the_matrix_before_any_run_naming_the_folder(synthetic_feph, tmp_path, monkeypatch, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = tmp_path / "runs"
    fake_free_space(monkeypatch, tmp_path, lambda: 10**6)
    assert main([str(path), "--output", str(outdir)]) == 2
    err = capsys.readouterr().err
    assert f"no space left on the disk of {outdir} for the files of run A-x-" in err and "(1.0 MB free, about 8.4 MB needed)" in err
    assert f"free some space, then continue with: python -m feph_finetune {path} --output {outdir}" in err.replace("\n", " ")
    assert "finished runs are saved" not in err, "no run had finished"
    assert "Traceback" not in err
    assert not list(outdir.glob("*/result.json"))


def test_a_disk_that_fills_up_stops_the_matrix_after_the_finished_run(synthetic_feph, tmp_path, monkeypatch, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = tmp_path / "runs"
    fake_free_space(monkeypatch, tmp_path, lambda: 10**6 if list(outdir.glob("*/result.json")) else 10**9)
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 2
    err = capsys.readouterr().err
    assert f"no space left on the disk of {outdir}" in err and "Traceback" not in err
    assert "finished runs are saved; free some space, then continue with:" in " ".join(err.split())
    (finished,) = RunStore(outdir).records()
    assert finished["status"] == "done"

    monkeypatch.undo()  # room again
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 0
    assert "skipped 1 finished run " in capsys.readouterr().out


@pytest.mark.parametrize("first_failing", ["history.json", "result.json"])
def test_enospc_while_a_run_writes_its_files_stops_cleanly_keeping_the_finished_run(synthetic_feph, tmp_path, monkeypatch, capsys, first_failing):
    """The disk fills while the second run writes ``first_failing``: every file after it fails
    too, its failure record included."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = tmp_path / "runs"
    create, full = results._create_temporary, []

    def create_temporary(target: Path) -> str:
        second_run = list(outdir.glob("*/result.json")) and not (target.parent / "result.json").exists()
        if full or (second_run and target.name == first_failing):
            full.append(target)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return create(target)

    monkeypatch.setattr(results, "_create_temporary", create_temporary)
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 2
    err = capsys.readouterr().err
    run_dir = full[0].parent
    assert f"no space left on the disk of {run_dir} for {first_failing}" in " ".join(err.split()), "the message names the first file refused"
    assert "free some space, then continue with:" in " ".join(err.split())
    assert "Traceback" not in err
    (finished,) = RunStore(outdir).records()
    assert finished["status"] == "done"
    assert not list(outdir.glob("*/.*.tmp")), "no temporary file is left behind"


def test_a_crop_cache_that_cannot_be_written_warns_once_and_the_runs_go_on(synthetic_feph, tmp_path, monkeypatch):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    cache = tmp_path / "cache"
    path.write_text(path.read_text().replace("folds = 3", f'folds = 3\ncache_dir = "{cache}"'))
    create = results._create_temporary

    def create_temporary(target: Path) -> str:
        if target.is_relative_to(cache):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return create(target)

    monkeypatch.setattr(results, "_create_temporary", create_temporary)
    console = Console(file=io.StringIO(), width=200)
    result = run_matrix(path, executor="inline", output=tmp_path / "runs", console=console)
    assert len(result.done) == 2 and not result.failed
    warnings = [line for line in console.file.getvalue().splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: the crop cache {cache / 'crops'} cannot be written (No space left on device); face crops are computed without caching them"]


FILLER_PLUGIN = '''
import errno
import json
from pathlib import Path

from feph_finetune import hookimpl


@hookimpl
def plugin_options():
    return {"fill": ""}


@hookimpl
def evaluate(y_true, y_prob, context):
    """Fill the disk of the folder ``options.filler.fill`` (this run trained; now it cannot write)."""
    with open(Path(context.options["fill"]) / "filler.bin", "ab") as filler:
        try:
            while True:
                filler.write(b"x" * 65536)
                filler.flush()
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return {}
'''


def mounted_tmpfs(mount: Path, size: str):
    """Yield ``mount``, a tmpfs of ``size`` mounted there, unmounted afterwards. Mounting needs
    root: skipped for other users; as root (CI) a mount that fails is a failure, so CI never
    skips it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs as root: {mounted.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 12 MB tmpfs (:func:`mounted_tmpfs`)."""
    yield from mounted_tmpfs(tmp_path / "tmpfs", "12m")


def fake_free_inodes(monkeypatch, folder: Path, free: int) -> None:
    """``os.statvfs`` of paths under ``folder`` reports ``free`` of 1,000 inodes free (bytes as they are)."""
    real = os.statvfs

    def statvfs(path):
        status = real(path)
        if not Path(path).is_relative_to(folder):
            return status
        fields = list(status)  # f_bsize f_frsize f_blocks f_bfree f_bavail f_files f_ffree f_favail f_flag f_namemax
        fields[5:8] = [1000, free, free]
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", statvfs)


def test_a_disk_without_free_inodes_stops_the_matrix_before_any_run_saying_inodes(synthetic_feph, tmp_path, monkeypatch, capsys):
    """Bytes to spare, no inode: the check before a run counts the files it writes too."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = tmp_path / "runs"
    fake_free_inodes(monkeypatch, tmp_path, 3)
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"no free inodes (files) left on the disk of {outdir} for the files of run A-x-" in err and "(3 files free, about 16 files needed)" in err
    assert "delete some files (the disk has no free inodes), then continue with:" in err and "free some space" not in err
    assert "Traceback" not in err
    assert not list(outdir.glob("*/result.json"))


@pytest.mark.parametrize("inodes_left", [0, 500])
def test_enospc_says_whether_inodes_or_bytes_ran_out(tmp_path, monkeypatch, inodes_left):
    fake_free_inodes(monkeypatch, tmp_path, inodes_left)

    def full(target, folder=False):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results, "_create_temporary", full)
    with pytest.raises(results.NoSpaceError) as raised:
        results.write_json(tmp_path / "result.json", {})
    said = str(raised.value)
    if inodes_left:
        assert said.startswith(f"no space left on the disk of {tmp_path} for result.json (") and "free inodes" not in said
    else:
        assert said == f"no free inodes (files) left on the disk of {tmp_path} for result.json (0 files free)"


@pytest.fixture
def inode_tmpfs(tmp_path):
    """A 100 MB tmpfs of 6 inodes (:func:`mounted_tmpfs`): bytes to spare, hardly any files."""
    yield from mounted_tmpfs(tmp_path / "tmpfs", "100m,nr_inodes=6")


def test_a_real_disk_without_inodes_stops_before_training_naming_inodes(synthetic_feph, tmp_path, inode_tmpfs):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = inode_tmpfs / "r"
    result = run_cli(str(path), "--output", str(outdir), "--set", "experiments.A.save_model=false")
    err = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no free inodes (files) left on the disk of {outdir} for the files of run A-x-" in err and "Traceback" not in err
    assert "no space left" not in err and "continue with:" in err
    assert not list(outdir.glob("*/history.json")), "stopped before any run trained"


def test_a_disk_filled_during_a_child_run_stops_the_command_without_a_traceback(synthetic_feph, tmp_path, tiny_tmpfs):
    """The process executor on a real full disk: the child cannot write its files nor its failure
    record, the parent cannot write the record of the dead child; the command stops with exit 2,
    the finished run kept, and continues once there is room."""
    env = write_distribution(tmp_path / "site", "filler", FILLER_PLUGIN)
    outdir = tiny_tmpfs / "runs"
    experiments = f"""
    [experiments.A]
    options.adam.head_epochs = 0
    options.adam.epochs = 0

    [experiments.B]
    evaluate = ["paper_metrics", "filler"]
    options.filler.fill = "{tiny_tmpfs}"
    options.adam.head_epochs = 0
    options.adam.epochs = 0
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    first = run_cli(str(path), "--output", str(outdir), env=env)
    assert first.returncode == 2, first.stdout + first.stderr
    assert f"no space left on the disk of {outdir}" in first.stderr and "continue with:" in first.stderr
    assert "for predictions.npz" in " ".join(first.stderr.split()), "the first file the disk refused (the run's), not the record the parent wrote after it"
    assert "Traceback" not in first.stderr
    records = {record["experiment"]: record for record in RunStore(outdir).records()}
    assert records["A"]["status"] == "done" and "B" not in records

    (tiny_tmpfs / "filler.bin").unlink()
    again = run_cli(str(path), "--output", str(outdir), "--only", "A", env=env)
    assert again.returncode == 0 and "skipped 1 finished run " in again.stdout


# --- every command that writes: a full, read-only or forbidden disk -------------------------------

#: What each errno's one-line error says (a read-only disk is not "permission denied").
WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the disk of",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EFBIG: "the file would be larger than a file may be here",
}


def fake_bundle(folder: Path) -> Path:
    """A bundle folder as ``export`` copies it: the manifest is checked, the model only copied."""
    from feph_finetune.api import CLASSES
    from feph_finetune.predict.bundle import FORMAT, FORMAT_VERSION, MANIFEST, MODEL_FILE, STATE_FILE

    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(b"model" * 1000)
    (folder / STATE_FILE).write_bytes(b"state" * 100)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL_FILE, "input_size": 32, "classes": list(CLASSES), "preprocess": [],
        "run": {"id": "tiny", "experiment": "tiny", "phase": "exploratory", "fold": None, "seed": 1}, "config": {},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def fail_after(monkeypatch, owner, name: str, code: int, calls: int) -> None:
    """``owner.name`` (a writer) works ``calls`` times, then writes half its bytes and raises
    ``OSError(code)`` naming its target, as a filling or read-only disk does."""
    real, done = getattr(owner, name), []

    def failing(*args, **kwargs):
        if len(done) >= calls:
            target = Path(args[1] if len(args) > 1 and isinstance(args[1], (str, Path)) else args[0])
            raise OSError(code, os.strerror(code), str(target))
        done.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("code", list(WRITE_FAILURES))
def test_export_onto_a_full_or_unwritable_disk_ends_in_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, code):
    bundle = fake_bundle(tmp_path / "bundle")
    before = snapshot(bundle)
    out = tmp_path / "exports" / "model"
    fail_after(monkeypatch, shutil, "copyfile", code, calls=1)  # the model is copied, then the state fails
    assert main(["export", str(bundle), str(out)]) == 2
    err = capsys.readouterr().err
    assert WRITE_FAILURES[code] in err and str(tmp_path / "exports") in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3, err
    assert not out.exists() and not list((tmp_path / "exports").iterdir()), "no half export, no temporary folder"
    assert snapshot(bundle) == before


@pytest.mark.parametrize("code", list(WRITE_FAILURES))
def test_synth_onto_a_disk_that_fills_or_turns_read_only_removes_its_half_dataset(tmp_path, capsys, monkeypatch, code):
    out = tmp_path / "data" / "FePh"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("kept")
    fail_after(monkeypatch, Path, "write_bytes", code, calls=5)
    assert main(["synth", str(out), "--images", "30"]) == 2
    err = capsys.readouterr().err
    assert WRITE_FAILURES[code] in err and str(out) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3, err
    assert not out.exists(), "the half-written images and the folders made for them are removed"
    assert (tmp_path / "data" / "notes.txt").read_text() == "kept"


def test_a_read_only_file_system_is_refused_before_any_work_and_called_so(tmp_path, capsys, monkeypatch):
    """``statvfs`` says read-only (as root, ``os.access`` alone would not tell, and for other users
    it would say "permission denied")."""
    real = os.statvfs
    ReadOnly = namedtuple("ReadOnly", "f_flag")
    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly(os.ST_RDONLY) if Path(path).is_relative_to(tmp_path) else real(path))
    for command in (["synth", str(tmp_path / "FePh")], ["report", str(tmp_path), "--figures", str(tmp_path / "figures")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"cannot write to the folder {tmp_path} (the file system is read-only)" in " ".join(err.split()) and "permission denied" not in err


@pytest.fixture
def read_only_tmpfs(tmp_path):
    """A read-only tmpfs holding a folder ``existing``; needs root (skipped for other users)."""
    for mount in mounted_tmpfs(tmp_path / "ro", "1m"):
        (mount / "existing").mkdir()
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True, text=True)
        assert remounted.returncode == 0, remounted.stderr
        yield mount


def test_writing_commands_on_a_real_read_only_disk_say_so(tmp_path, read_only_tmpfs):
    bundle = fake_bundle(tmp_path / "bundle")
    for command in (["export", str(bundle), str(read_only_tmpfs / "existing" / "model")], ["synth", str(read_only_tmpfs / "existing")]):
        result = run_cli(*command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "read-only" in result.stderr and "Traceback" not in result.stderr and "permission denied" not in result.stderr, result.stderr
        assert str(read_only_tmpfs / "existing") in " ".join(result.stderr.split())


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_results_disk_that_turns_read_only_stops_the_matrix_saying_so(synthetic_feph, tmp_path, monkeypatch, capsys, executor):
    """Every file after the first run's is refused with EROFS (a disk remounted read-only):
    in-process the run's record cannot be written, with ``process`` not even the run's log."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = tmp_path / "runs"
    create, write_bytes = results._create_temporary, Path.write_bytes

    def read_only_once_one_finished(target: Path):
        if list(outdir.glob("*/result.json")) and Path(target).is_relative_to(outdir):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))

    monkeypatch.setattr(results, "_create_temporary", lambda target, folder=False: read_only_once_one_finished(target) or create(target, folder))
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: read_only_once_one_finished(self) or write_bytes(self, data))
    assert main([str(path), "--output", str(outdir), "--executor", executor, "--jobs", "1"] if executor == "process" else [str(path), "--output", str(outdir), "--executor", executor]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "the file system is read-only" in err and str(outdir) in err and "Traceback" not in err
    assert "finished runs are saved; make it writable, then continue with:" in err
    (finished,) = RunStore(outdir).records()
    assert finished["status"] == "done"


def test_any_command_meeting_a_full_or_read_only_disk_where_it_did_not_expect_one_names_the_path(tmp_path, capsys):
    """The command line's last resort, for writers no command wraps (the demo's data, say): a full
    or read-only disk named by the error; a permission error, which may come from reading, is
    left as it is."""
    from rich.console import Console as RichConsole

    from feph_finetune.cli import guarded

    def writing(code):
        def command(args, console):
            raise OSError(code, os.strerror(code), str(tmp_path / "cache" / "FePh_labels.csv"))
        return command

    for code, said in ((errno.EROFS, f"cannot write {tmp_path / 'cache' / 'FePh_labels.csv'}: the file system is read-only"),
                       (errno.EFBIG, f"cannot write {tmp_path / 'cache' / 'FePh_labels.csv'}: the file would be larger than a file may be here"),
                       (errno.ENOSPC, f"no space left on the disk of {tmp_path / 'cache'} for FePh_labels.csv")):
        assert guarded(writing(code), None, RichConsole(file=io.StringIO()), RichConsole(stderr=True)) == 2
        assert said in " ".join(capsys.readouterr().err.split())
    with pytest.raises(PermissionError):
        guarded(writing(errno.EACCES), None, RichConsole(file=io.StringIO()), RichConsole(stderr=True))


def test_a_full_disk_message_names_the_target_and_what_is_free_once_the_partial_output_is_removed(tmp_path, capsys, monkeypatch):
    """The export's partial copy fills the disk (0 B free while it exists); the message is shown
    once it is removed, so it says what is free then, not "0 B free" of a disk with room."""
    bundle = fake_bundle(tmp_path / "bundle")
    out = tmp_path / "exports" / "model"
    fake_free_space(monkeypatch, tmp_path, lambda: 0 if list((tmp_path / "exports").glob(".*.tmp.*")) else 10**6)
    fail_after(monkeypatch, shutil, "copyfile", errno.ENOSPC, calls=1)
    assert main(["export", str(bundle), str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: no space left on the disk of {tmp_path / 'exports'} for model (1.0 MB free)" in err, err
    assert ".tmp." not in err


def test_predict_onto_a_full_disk_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """The disk of ``--out`` has no room for the rows of the frames announced: said at once, not
    after every frame was predicted (the fake bundle's model could not even be loaded)."""
    import cv2
    import numpy as np

    from feph_finetune.predict import bundle as bundles

    from feph_finetune.predict.bundle import STATE_FILE

    bundle = fake_bundle(tmp_path / "bundle")
    np.savez(bundle / STATE_FILE)  # a state of no fitted step: the bundle opens, its model is never read
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        cv2.imwrite(str(frames / f"f{index}.png"), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out" / "p.csv"
    out.parent.mkdir()
    fake_free_space(monkeypatch, out.parent, lambda: 100)
    monkeypatch.setattr(bundles, "load_model", lambda bundle: pytest.fail("the model was loaded"))
    assert main(["predict", str(bundle), str(frames), "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: no space left on the disk of {out.parent} for p.csv (100 B free, at least " in err and "Traceback" not in err, err
    assert not out.exists()


# --- a file-size limit (EFBIG): as final as a full disk ----------------------------------------


def file_size_limit(limit: int):
    """A ``preexec_fn`` that limits the files the command writes to ``limit`` bytes
    (RLIMIT_FSIZE, what ``ulimit -f`` sets): a write past it fails with EFBIG, as Python ignores
    SIGXFSZ, which would otherwise kill the process."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def run_limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    """``python -m feph_finetune ARGS`` under a file-size limit of ``limit`` bytes."""
    import sys

    from conftest import REPO

    return subprocess.run([sys.executable, "-m", "feph_finetune", *args], capture_output=True, text=True, cwd=REPO, timeout=600,
                          preexec_fn=file_size_limit(limit))


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_file_size_limit_stops_the_matrix_naming_the_file_and_the_limit(synthetic_feph, tmp_path, executor):
    """``ulimit -f 1``: no run's configuration or record fits. Before, EFBIG was an unknown error:
    with ``process`` the command died with a traceback writing the failure record, the later run
    never tried and no continue line."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = tmp_path / "runs"
    result = run_limited(1024, str(path), "--output", str(outdir), "--executor", executor)
    err = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"error: cannot write {outdir}/A-x-" in err, err
    assert "/config.json: the file would be larger than a file may be here (the file-size limit of this process, ulimit -f, is 1.0 KB)" in err, "the first file refused, the run's"
    assert f"raise the file-size limit (ulimit -f) or write to another file system, then continue with: python -m feph_finetune {path} --output {outdir} --executor {executor}" in err, err
    assert not list(outdir.glob("*/result.json"))


def test_synth_past_the_file_size_limit_ends_in_one_line_naming_the_file(tmp_path):
    out = tmp_path / "FePh"
    result = run_limited(4096, "synth", str(out), "--images", "10")
    err = " ".join(result.stderr.split())
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot write {out}" in err and "ulimit -f, is 4.1 KB" in err, err
    assert not out.exists()


def test_a_run_whose_file_passes_the_size_limit_stops_the_matrix_keeping_its_record(synthetic_feph, tmp_path, monkeypatch, capsys):
    """A library's EFBIG names no file (Keras' ``model.save`` under ``ulimit -f``): the run is
    recorded failed naming its folder, and the matrix stops there, as every later run would train
    only to fail the same way (before: each run failed in turn, exit 1, no path, no continue line)."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = tmp_path / "runs"
    write = RunStore.write_predictions

    def too_large(self, *args, **kwargs):
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    monkeypatch.setattr(RunStore, "write_predictions", too_large)
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    (record,) = RunStore(outdir).records()
    assert record["status"] == "failed" and record["error"]["type"] == "UnwritableError"
    assert f"error: cannot write {outdir / record['id']}: the file would be larger than a file may be here" in err, err
    assert "raise the file-size limit (ulimit -f) or write to another file system, then continue with:" in err and "Traceback" not in err

    monkeypatch.setattr(RunStore, "write_predictions", write)
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 0, "the failed run runs again"


# --- the check after a run ended names the run to come, not the finished one ----------------------


ONE_QUICK_RUN = """
[experiments.A]
options.adam.head_epochs = 0
options.adam.epochs = 0
"""


def test_a_disk_full_after_a_run_names_the_next_runs_files_not_the_finished_run(synthetic_feph, tmp_path, monkeypatch, capsys):
    """The finished run wrote all its files: the message is about the run that would start next
    (with ``--jobs 2`` the check ran after whichever ended first and named it)."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_QUICK_RUNS)
    outdir = tmp_path / "runs"
    fake_free_space(monkeypatch, tmp_path, lambda: 10**6 if list(outdir.glob("*/result.json")) else 10**9)
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    (finished,) = RunStore(outdir).records()
    assert f"no space left on the disk of {outdir} for the files of the next run (1.0 MB free, about 8.4 MB needed)" in err, err
    assert finished["id"] not in err


def test_a_disk_full_after_the_last_run_is_no_error(synthetic_feph, tmp_path, monkeypatch, capsys):
    """No run is left to start: the matrix is done (before: exit 2, "no space ... for the files
    of run <the finished one>")."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, ONE_QUICK_RUN)
    outdir = tmp_path / "runs"
    fake_free_space(monkeypatch, tmp_path, lambda: 10**6 if list(outdir.glob("*/result.json")) else 10**9)
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 0, capsys.readouterr().err
    assert "no space left" not in capsys.readouterr().err
