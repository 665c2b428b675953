"""What a person sees on the console: output piped into ``head``, TensorFlow's start-up noise, and
tables and logs at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO, run_cli, write_matrix
from fake_store import write_fake_store
from fephfixture import write_png


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


#: What TensorFlow 2.21 prints from C++ on its own when imported or when it looks for devices.
TENSORFLOW_NOTICES = ("absl::InitializeLog", "cuda", "cuInit", "cpu_feature_guard", "oneDNN", "I0000", "E0000", "W0000")

TINY_BUNDLE_MODEL = """
import sys, keras
inputs = keras.Input((32, 32, 3))
outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
keras.Model(inputs, outputs).save(sys.argv[1])
"""


def tiny_bundle(folder):
    """A bundle of a 7-class model without preprocessing, written in a separate process."""
    import json

    from feph_finetune.api import CLASSES
    from feph_finetune.bundle import FORMAT, FORMAT_VERSION, MANIFEST, MODEL_FILE

    folder.mkdir()
    subprocess.run([sys.executable, "-c", TINY_BUNDLE_MODEL, str(folder / MODEL_FILE)], check=True, capture_output=True, timeout=300)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL_FILE, "input_size": 32, "classes": list(CLASSES), "preprocess": [],
        "run": {"id": "tiny", "experiment": "tiny", "phase": "exploratory", "fold": None, "seed": 1}, "config": {},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_commands_that_import_tensorflow_print_none_of_its_notices(tmp_path, synthetic_feph):

    bundle = tiny_bundle(tmp_path / "bundle")
    image = tmp_path / "face.png"
    write_png(image, (40, 40), channels=3)
    predicted = run_cli("predict", str(bundle), str(image), env={"COLUMNS": "80"})
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stderr == "", predicted.stderr
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n")
    ran = run_cli(str(matrix), "--executor", "inline", "--output", str(tmp_path / "runs"), env={"COLUMNS": "80"})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert not [notice for notice in TENSORFLOW_NOTICES if notice in ran.stdout + ran.stderr], ran.stdout + ran.stderr
