"""One matrix command per results folder: a second one stops at once naming the first; the lock
ends with the process that holds it, even where a child it started lives on."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from feph_finetune.cli import main
from feph_finetune.results.output_lock import LOCK_FILE, OutputBusyError, output_locked
from feph_finetune.results.store import RunStore

from conftest import write_matrix

ONE_QUICK_RUN = """
[experiments.A]
options.adam.head_epochs = 0
options.adam.epochs = 0
"""

#: A process that takes the lock of a folder, starts a child by exec (``subprocess``) and one
#: from a fork server (as the ``process`` executor does), says so, and waits to be killed.
HOLDER = """
import multiprocessing, subprocess, sys, time
from feph_finetune.results.output_lock import output_locked

if __name__ == "__main__":
    with output_locked(sys.argv[1]):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        child = multiprocessing.get_context("forkserver").Process(target=time.sleep, args=(60,), daemon=False)
        child.start()
        print(child.pid, flush=True)
        time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """Start :data:`HOLDER` on ``tmp_path / "runs"``; yield ``(process, fork server child pid)``; kill both."""
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(HOLDER))
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs")], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    child = int(process.stdout.readline())
    yield process, child
    os.killpg(process.pid, signal.SIGKILL)  # its session: the exec'd child too
    process.wait()
    try:
        os.kill(child, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_second_matrix_command_on_the_same_folder_stops_at_once_naming_the_first(synthetic_feph, tmp_path, holder, capsys):
    process, _ = holder
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, ONE_QUICK_RUN)
    outdir = tmp_path / "runs"
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"another feph_finetune command (pid {process.pid}, started " in err
    assert f") is running in {outdir}; wait for it or use another --output" in err and "Traceback" not in err
    assert [path.name for path in outdir.iterdir()] == [LOCK_FILE], "no run started"
    assert main([str(path), "--output", str(outdir), "--dry-run"]) == 0, "a dry run only reads: no lock"


def test_the_lock_ends_with_its_process_though_its_children_live_on(tmp_path, holder):
    process, child = holder
    with pytest.raises(OutputBusyError):
        with output_locked(tmp_path / "runs"):
            pass
    process.kill()  # SIGKILL: no cleanup ran; the children live on
    process.wait()
    os.kill(child, 0)  # still alive (raises if not)
    with output_locked(tmp_path / "runs"):
        assert (tmp_path / "runs" / LOCK_FILE).read_text().startswith(f"pid {os.getpid()}, started ")


def test_the_lock_file_is_no_run_to_a_report(tmp_path):
    with output_locked(tmp_path / "runs"):
        assert RunStore(tmp_path / "runs").records() == []
    assert main(["report", str(tmp_path / "runs")]) == 2  # "no finished runs", not a traceback over the lock file


@pytest.mark.parametrize("make, what", [
    (lambda path, victim: path.symlink_to(victim), "a link to "),
    (lambda path, victim: path.symlink_to(victim.parent / "nothing"), "a link to "),
    (lambda path, victim: path.mkdir(), "a folder"),
    (lambda path, victim: os.mkfifo(path), "a FIFO"),
], ids=["link", "dangling link", "folder", "fifo"])
def test_a_lock_file_that_is_no_regular_file_is_refused_never_followed(synthetic_feph, tmp_path, capsys, make, what):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    outdir = tmp_path / "runs"
    outdir.mkdir()
    make(outdir / LOCK_FILE, victim)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, ONE_QUICK_RUN)
    assert main([str(path), "--output", str(outdir), "--executor", "inline"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{outdir / LOCK_FILE} is {what}" in err and "remove it; feph_finetune keeps its lock there" in err
    assert "Traceback" not in err
    assert victim.read_text() == "precious\n" and not (tmp_path / "nothing").exists()
    assert sorted(path.name for path in outdir.iterdir()) == [LOCK_FILE], "no run started"


def test_deleting_the_lock_file_lets_no_second_command_in(tmp_path, holder):
    process, _ = holder
    (tmp_path / "runs" / LOCK_FILE).unlink()
    with pytest.raises(OutputBusyError, match="pid unknown"):
        with output_locked(tmp_path / "runs"):
            pass


def test_a_full_disk_or_a_read_only_folder_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    from feph_finetune.results.store import NoSpaceError, UnwritableError
    import feph_finetune.results.output_lock as output_lock

    def full(descriptor, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output_lock.os, "write", full)
    with pytest.raises(NoSpaceError, match=LOCK_FILE):
        with output_locked(tmp_path / "runs"):
            pass
    monkeypatch.undo()

    real_open = os.open

    def read_only(path, flags, *mode):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *mode)

    monkeypatch.setattr(output_lock.os, "open", read_only)
    with pytest.raises(UnwritableError, match="read-only"):
        with output_locked(tmp_path / "other"):
            pass
