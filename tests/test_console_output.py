"""What a person sees on the console: output piped into ``head``, TensorFlow's start-up noise, and
tables and logs at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO, write_matrix
from fake_store import write_fake_store


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake") / "runs"
    write_fake_store(root)
    return root


def cli_with_reader_gone(*args: str) -> subprocess.CompletedProcess:
    """``python -m feph_finetune ARGS | head -0``: the reader closes the pipe before anything is
    written, so the command's first write (or its last flush) meets a broken pipe."""
    process = subprocess.Popen([sys.executable, "-m", "feph_finetune", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "80"})
    process.stdout.close()
    stderr = process.stderr.read().decode()
    return subprocess.CompletedProcess(process.args, process.wait(timeout=300), "", stderr)


def test_commands_piped_into_a_closed_reader_end_quietly(fake_store, synthetic_feph, tmp_path):
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n[experiments.FT2]\n")
    for args in (
        ["plugins", "--json"], ["plugins"], ["report", str(fake_store)], ["report", str(fake_store), "--format", "json"],
        [str(matrix), "--dry-run"], [str(matrix), "--dry-run", "--json"], ["data", str(synthetic_feph)],
    ):
        result = cli_with_reader_gone(*args)
        assert result.stderr == "", f"{args}: {result.stderr}"
        assert result.returncode == 1, args  # Python's documented choice for a broken pipe, and rich's
