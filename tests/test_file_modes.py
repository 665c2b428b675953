"""Every file and folder the project writes atomically gets the umask's mode, as any file the user
creates (README, "Results"): no writer may make a private 0o600 file or 0o700 folder under 0o022.

The writers are exercised with stand-in models (an object whose ``save`` writes bytes), so no
TensorFlow is imported; what is tested is the writing, not Keras.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from feph_finetune.predict.bundle import FORMAT, FORMAT_VERSION, MANIFEST, MODEL_FILE, STATE_FILE, export_bundle
from feph_finetune.results.store import RunStore, atomic_folder, atomic_path, write_arrays, write_model

UMASKS = [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]


class FakeModel:
    """Stands in for a Keras model: ``save`` and ``save_weights`` write a few bytes to the path."""

    def save(self, path):
        assert str(path).endswith((".keras", ".h5")), f"Keras would refuse the name {path}"
        Path(path).write_bytes(b"model")

    save_weights = save


@pytest.fixture
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_fake_bundle(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(b"model")
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL_FILE, "input_size": 32, "classes": ["a", "b"], "preprocess": [],
        "run": {"id": "x", "experiment": "x", "phase": "exploratory", "fold": None, "seed": 1}, "config": {},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), UMASKS, indirect=["umask"])
def test_atomic_file_and_folder_follow_the_umask(tmp_path, umask, file_mode, folder_mode):
    with atomic_path(tmp_path / "new" / "a.json") as temporary:
        temporary.write_text("{}")
    with atomic_folder(tmp_path / "folder") as temporary:
        (temporary / "inside.txt").write_text("x")
    assert mode(tmp_path / "new" / "a.json") == file_mode
    assert mode(tmp_path / "folder") == folder_mode and mode(tmp_path / "folder" / "inside.txt") == file_mode
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder", "new"]  # no temporary left


@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), UMASKS, indirect=["umask"])
def test_saved_model_and_exported_bundle_follow_the_umask(tmp_path, umask, file_mode, folder_mode):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_model(run_dir / MODEL_FILE, FakeModel())
    write_arrays(run_dir / STATE_FILE, mean=np.zeros(3, np.float32))
    assert mode(run_dir / MODEL_FILE) == file_mode and mode(run_dir / STATE_FILE) == file_mode
    source = write_fake_bundle(tmp_path / "bundle")
    (source / MODEL_FILE).chmod(0o600)  # a bundle saved before this fix: the copy still follows the umask
    out = export_bundle(source, tmp_path / "deep" / "exported")
    assert mode(out) == folder_mode
    assert {path.name: mode(path) for path in out.iterdir()} == {MODEL_FILE: file_mode, MANIFEST: file_mode}
    assert [path.name for path in (tmp_path / "deep").iterdir()] == ["exported"]


@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), UMASKS, indirect=["umask"])
def test_converted_model_and_its_sidecar_follow_the_umask(tmp_path, umask, file_mode, folder_mode):
    from feph_finetune.convert import ConvertedModel, _write

    info = ConvertedModel(**{name: () if name in ("classes", "notes") else "x" for name in ConvertedModel.__dataclass_fields__})
    for out in (tmp_path / "m.keras", tmp_path / "w.weights.h5"):
        _write(FakeModel(), info, out)
        assert mode(out) == file_mode and mode(out.with_name(out.name + ".json")) == file_mode
    assert len(list(tmp_path.iterdir())) == 4


@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), UMASKS, indirect=["umask"])
def test_demo_data_folder_follows_the_umask(tmp_path, umask, file_mode, folder_mode, monkeypatch):
    from feph_finetune.demo import protocol as demo

    monkeypatch.setattr("feph_finetune.demo.synth.write_synthetic_dataset", lambda folder, **_: (Path(folder) / "labels.csv").write_text("x"))
    paths = demo.DemoPaths(tmp_path / "root", tmp_path / "data", tmp_path / "generic", base_models={})
    demo.write_demo_data({"images": 1, "generic_images": 1, "seed": 0}, paths, type("Quiet", (), {"log": lambda *_: None})())
    assert mode(paths.data) == folder_mode and mode(paths.data / "labels.csv") == file_mode


class FakeFigure:
    """Stands in for a Matplotlib figure: ``savefig`` writes a few bytes to the path; it has no
    text that the check for text cut at the edge would measure."""

    texts, axes, legends, bbox = (), (), (), None

    def savefig(self, path, **_):
        Path(path).write_bytes(b"png")


@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), UMASKS, indirect=["umask"])
def test_run_files_figures_crop_cache_and_demo_bases_follow_the_umask(tmp_path, umask, file_mode, folder_mode):
    """The other writers: a run's JSON files, predictions and ``result.json``; a figure; a
    crop-cache entry (and the folders it creates); a demo base model and its record."""
    from feph_finetune.api import FrameResult
    from feph_finetune.data.frames import CropCache
    from feph_finetune.demo.protocol import save_base
    from feph_finetune.results.figures import _save

    store = RunStore(tmp_path / "runs")
    store.write("r", "config.json", {"a": 1})
    store.write_predictions("r", np.zeros(2, np.int64), np.zeros((2, 7), np.float32))
    store.finish("r", {"experiment": "A", "phase": "exploratory", "status": "failed"})
    _save(FakeFigure(), tmp_path / "figures", "cv_accuracy.png", "section", "caption")
    cache = CropCache(tmp_path / "cache")
    cache.store("ab" + "0" * 62, FrameResult(np.zeros((4, 4, 3), np.uint8)))
    save_base(FakeModel(), tmp_path / "demo" / "mobilenet_base.keras", {"held_out_accuracy": 0.5})
    assert cache.problem is None
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert sorted(path.name for path in files) == sorted([
        "config.json", "predictions.npz", "result.json", "cv_accuracy.png", "ab" + "0" * 62 + ".npz", "mobilenet_base.keras", "mobilenet_base.json",
    ])  # and no temporary file left
    assert {path.relative_to(tmp_path).as_posix(): mode(path) for path in files} == {path.relative_to(tmp_path).as_posix(): file_mode for path in files}
    folders = [path for path in tmp_path.rglob("*") if path.is_dir()]
    assert {path.name: mode(path) for path in folders} == {path.name: folder_mode for path in folders}


def test_failed_atomic_folder_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "out") as temporary:
        (temporary / "half").write_text("x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
