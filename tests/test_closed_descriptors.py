"""Commands started with a standard descriptor closed (``<&-``, ``>&-``, ``2>&-``, or a parent
such as cron or a service manager that closed it) run as if it were ``/dev/null``: the same
files, the same exit code, and no file of theirs takes the closed descriptor's number, where
TensorFlow's or FFmpeg's writes to stderr would land in it."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feph_finetune.results.output_lock import LOCK_FILE

from conftest import REPO, write_matrix
from fake_store import write_fake_store
from test_console_output import tiny_bundle
from test_predict import write_video

#: The shell's words that start a command with the descriptor closed.
CLOSED = {0: "<&-", 1: ">&-", 2: "2>&-"}


def cli_closed(descriptors: tuple[int, ...], *args: str) -> subprocess.CompletedProcess:
    """``python -m feph_finetune ARGS`` started by a shell with ``descriptors`` closed; what the
    open ones receive is captured."""
    closing = " ".join(CLOSED[fd] for fd in descriptors)
    command = f"{shlex.join([sys.executable, '-m', 'feph_finetune', *args])} {closing}"
    return subprocess.run(["sh", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "80"})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("closed") / "bundle")


@pytest.mark.slow(30)
@pytest.mark.parametrize("descriptors", [(2,), (1,), (0, 1, 2)])
def test_predict_with_a_standard_descriptor_closed_writes_its_csv_and_exits_0(bundle, tmp_path, descriptors):
    frames = [np.full((32, 32, 3), 40 * level, np.uint8) for level in range(4)]
    video = write_video(tmp_path / "a.avi", frames, fps=5, codec="MJPG")
    out = tmp_path / "o.csv"
    result = cli_closed(descriptors, "predict", str(bundle), str(video), "--out", str(out))
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as rows:
        assert [row["frame"] for row in csv.DictReader(rows)] == ["0", "1", "2", "3"]


@pytest.mark.slow(60)
def test_a_matrix_with_stderr_closed_trains_its_run_and_its_files_hold_only_their_own_bytes(synthetic_feph, tmp_path):
    """The process executor (the default), whose child starts with the command's descriptors."""
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n")
    runs = tmp_path / "runs"
    result = cli_closed((2,), str(matrix), "--phase", "exploratory", "--output", str(runs))
    assert result.returncode == 0, result.stdout
    (record,) = runs.glob("*/result.json")
    assert json.loads(record.read_text(encoding="utf-8"))["status"] == "done"
    for written in runs.rglob("*.json"):
        json.loads(written.read_text(encoding="utf-8"))  # stray bytes (a notice meant for stderr) would not parse
    holder = (runs / LOCK_FILE).read_text(encoding="utf-8")  # the first file the command opens, and keeps open
    assert re.fullmatch(r"pid \d+, started [^\n]+\n?", holder), holder


@pytest.mark.parametrize("descriptors", [(1,), (0, 1, 2)])
def test_commands_whose_output_is_discarded_exit_0_quietly(synthetic_feph, tmp_path, descriptors):
    """Closing stdout discards the output, as ``> /dev/null`` does: the command still works."""
    store = tmp_path / "runs"
    write_fake_store(store)
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n")
    for args in (
        ["plugins", "--json"], ["plugins"], ["report", str(store)], ["report", str(store), "--format", "json"],
        [str(matrix), "--dry-run", "--json"], ["data", str(synthetic_feph), "--json"],
    ):
        result = cli_closed(descriptors, *args)
        assert (result.returncode, result.stderr) == (0, ""), args


def test_the_entry_point_puts_devnull_on_every_closed_descriptor(tmp_path):
    """What importing the entry point leaves: descriptors 0-2 open on devnull and usable ``sys``
    streams, so that the first file opened after it takes a number above 2, not a closed
    descriptor's (where stderr's writes would land)."""
    written = tmp_path / "probe.txt"
    probe = (
        "import os, sys, feph_finetune.__main__\n"
        "first = os.open(os.devnull, os.O_RDONLY)\n"
        "null = os.stat(os.devnull)\n"
        "same = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) == (null.st_dev, null.st_ino) for fd in (0, 1, 2)]\n"
        "print('discarded', file=sys.stderr); print('discarded'); sys.stdin.read()\n"
        "open(sys.argv[1], 'w').write(repr((first, same)))\n"
    )
    command = f"{shlex.join([sys.executable, '-c', probe, str(written)])} <&- >&- 2>&-"
    assert subprocess.run(["sh", "-c", command], cwd=REPO, timeout=120).returncode == 0
    assert written.read_text() == repr((3, [True, True, True]))
