"""Files named as Keras models or weights are checked in the configuration pass (issue 22).

A ``weights`` file that is no Keras file (a text file, an empty ``.h5``, an image or a zip under a
Keras name, a ``.keras`` archive renamed ``.h5``) used to pass ``--dry-run`` and then fail every
run in ``build_model``. Each kind is refused by ``--dry-run`` with exit 2, naming the key; good
files made here with a tiny Keras model still pass and train; at run time, a file Keras cannot
load is described as what it is, not as "File not found".
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import zipfile

import h5py
import pytest

from feph_finetune import Option, PluginError, keras_file_problem
from feph_finetune.cli import main
from feph_finetune.config.options import option_problems

from conftest import line_of, write_matrix

PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(32)
TINY_SIDE = 32


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """Good files of a MobileNet alpha 0.25 base at 32 px: ``base.weights.h5`` (``save_weights``),
    ``base.keras`` (``.save``) and ``base.h5`` (legacy whole model)."""
    import keras

    folder = tmp_path_factory.mktemp("keras_files")
    base = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(TINY_SIDE, TINY_SIDE, 3), alpha=0.25, pooling="avg")
    base.save_weights(folder / "base.weights.h5")
    base.save(folder / "base.keras")
    base.save(folder / "base.h5")
    return folder


def write_bad_files(folder, keras_files) -> dict[str, str]:
    """One file of each bad kind, by name: what its message must say it is."""
    (folder / "notes.h5").write_text("these are not weights\n", encoding="utf-8")
    (folder / "empty.h5").write_bytes(b"")
    (folder / "image.keras").write_bytes(PNG_START)
    (folder / "image.weights.h5").write_bytes(PNG_START)
    with zipfile.ZipFile(folder / "archive.keras", "w") as archive:
        archive.writestr("readme.txt", "a zip, not a model")
    shutil.copy(keras_files / "base.keras", folder / "renamed.h5")
    shutil.copy(keras_files / "base.weights.h5", folder / "renamed.keras")
    shutil.copy(keras_files / "base.h5", folder / "legacy.weights.h5")
    shutil.copy(keras_files / "base.weights.h5", folder / "keras3.h5")
    h5py.File(folder / "nothing.h5", "w").close()
    for name in ("base.h5", "base.keras"):  # a download cut short
        (folder / f"truncated{name[4:]}").write_bytes((keras_files / name).read_bytes()[:3000])
    with zipfile.ZipFile(folder / "unconfigured.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.write(keras_files / "base.weights.h5", "model.weights.h5")
    return {
        "notes.h5": "a text file, not HDF5",
        "empty.h5": "the file is empty",
        "image.keras": "a PNG image, not a zip archive",
        "image.weights.h5": "a PNG image, not HDF5",
        "archive.keras": "a zip archive without config.json and model.weights.h5",
        "renamed.h5": "a .keras archive named .h5: rename it to end in .keras",
        "renamed.keras": "an HDF5 file named .keras, which Keras reads as a zip archive: rename it to end in .weights.h5",
        "legacy.weights.h5": "a legacy Keras HDF5 file named .weights.h5",
        "keras3.h5": "a Keras 3 weights file named .h5",
        "nothing.h5": "an HDF5 file without Keras weights in it",
        "unconfigured.keras": "a zip archive whose config.json is not JSON",
        "truncated.h5": "a damaged HDF5 file",
        "truncated.keras": "a damaged zip archive",
    }


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, keras_files):
    folder = tmp_path_factory.mktemp("bad_files")
    return folder, write_bad_files(folder, keras_files)


BAD_NAMES = ["notes.h5", "empty.h5", "image.keras", "image.weights.h5", "archive.keras", "renamed.h5", "renamed.keras",
             "legacy.weights.h5", "keras3.h5", "nothing.h5", "unconfigured.keras",
             "truncated.h5", "truncated.keras"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("plugin", ["mobilenet", "efficientnet"])
def test_a_backbone_weights_file_of_a_wrong_kind_is_refused_by_the_dry_run(tmp_path, synthetic_feph, bad_files, capsys, name, plugin):
    folder, says = bad_files
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f'[experiments.A]\nmodel = "{plugin}"\n')
    junk = folder / name
    assert main([str(path), "--dry-run", "--set", f'defaults.options.{plugin}.weights="{junk}"']) == 2
    error = capsys.readouterr().err
    assert f'--set defaults.options.{plugin}.weights="{junk}": {junk}: not a Keras weights file ({says[name]}' in error
    assert "Traceback" not in error


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_keras_model_file_of_a_wrong_kind_is_refused_by_the_dry_run(tmp_path, synthetic_feph, bad_files, capsys, name):
    folder, says = bad_files
    junk = folder / name
    experiments = f'[experiments.A]\nmodel = "keras_model"\noptions.keras_model.file = "{junk}"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    place = f"{path}:{line_of(path, 'options.keras_model.file')} experiments.A.options.keras_model.file"
    assert f"{place}: {junk}: not a Keras model file ({says[name]}" in error


def test_every_bad_file_of_a_configuration_is_reported_in_one_pass(tmp_path, synthetic_feph, bad_files, capsys):
    folder, _ = bad_files
    experiments = f"""
    [experiments.Mobile]
    options.mobilenet.weights = "{folder / 'notes.h5'}"

    [experiments.Efficient]
    model = "efficientnet"
    options.efficientnet.weights = "{folder / 'renamed.h5'}"

    [experiments.Whole]
    model = "keras_model"
    options.keras_model.file = "{folder / 'image.keras'}"
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    for key, name in (("Mobile.options.mobilenet.weights", "notes.h5"), ("Efficient.options.efficientnet.weights", "renamed.h5"),
                      ("Whole.options.keras_model.file", "image.keras")):
        assert f"{path}:{line_of(path, str(folder / name))} experiments.{key}: {folder / name}: not a Keras" in error
    assert "error: 3 problems" in error


def test_a_whole_model_option_refuses_weights_only(keras_files):
    problem = keras_file_problem(keras_files / "base.weights.h5", whole_model=True)
    assert problem == f"{keras_files / 'base.weights.h5'}: not a Keras model file (weights only, without the model's architecture)"
    assert keras_file_problem(keras_files / "base.weights.h5") is None


@pytest.mark.parametrize("name", ["base.weights.h5", "base.keras", "base.h5"])
def test_good_files_pass_the_check(keras_files, name):
    assert keras_file_problem(keras_files / name) is None
    assert keras_file_problem(keras_files / name, whole_model=name != "base.weights.h5") is None


def test_an_hdf5_file_with_a_user_block_is_read(tmp_path, keras_files):
    """HDF5 allows a user block before the signature (512, 1024, 2048... bytes)."""
    path = tmp_path / "blocked.h5"
    with h5py.File(keras_files / "base.h5", "r") as source, h5py.File(path, "w", userblock_size=1024) as copy:
        for key, value in source.attrs.items():
            copy.attrs[key] = value
        source.copy(source["model_weights"], copy, "model_weights")
    assert path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n"
    assert keras_file_problem(path, whole_model=True) is None


def test_what_is_no_regular_file_is_refused_once_by_the_path_check(tmp_path):
    from feph_finetune_plugins import mobilenet

    fifo, folder = tmp_path / "fifo.h5", tmp_path / "folder.keras"
    os.mkfifo(fifo)
    folder.mkdir()
    option = mobilenet.plugin_options()["weights"]
    assert option_problems(str(fifo), option) == [f"{str(fifo)!r}: is not a regular file (a FIFO); only regular files are read"]
    assert option_problems(str(folder), option) == [f"{str(folder)!r}: is a folder, not a file"]
    for path in (fifo, folder, tmp_path / "later.keras"):  # a missing one may be written later (the demo's bases)
        assert keras_file_problem(path) is None


def test_a_third_party_option_gets_the_same_check(bad_files):
    folder, says = bad_files
    option = Option("", path="file", suffixes=(".keras", ".h5"), check=functools.partial(keras_file_problem, whole_model=True))
    (problem,) = option_problems(str(folder / "image.keras"), option)
    assert problem == f"{folder / 'image.keras'}: not a Keras model file ({says['image.keras']})"


def test_good_weights_files_pass_the_dry_run_and_train(tmp_path, synthetic_feph, keras_files, capsys):
    experiments = f"""
    [experiments.Weights]
    options.mobilenet.weights = "{keras_files / 'base.weights.h5'}"

    [experiments.Whole]
    options.mobilenet.weights = "{keras_files / 'base.keras'}"
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    assert main([str(path), "--dry-run"]) == 0
    outdir = tmp_path / "runs"
    assert main([str(path), "--executor", "inline", "--output", str(outdir)]) == 0, capsys.readouterr()
    statuses = {json.loads(p.read_text())["experiment"]: json.loads(p.read_text())["status"] for p in outdir.glob("*/result.json")}
    assert statuses == {"Weights": "done", "Whole": "done"}


def test_at_run_time_a_file_keras_cannot_load_is_described_as_what_it_is(bad_files):
    """Keras says "File not found: filepath=image.keras" for a .keras name that is no zip."""
    from feph_finetune_plugins import backbones

    folder, says = bad_files
    with pytest.raises(PluginError) as caught:
        backbones.load_whole_model(folder / "image.keras", "keras_model", option="file")
    assert str(caught.value) == f"keras_model: option file: {folder / 'image.keras'}: not a Keras model file ({says['image.keras']})"
    assert "File not found" not in str(caught.value)


@pytest.mark.parametrize("name", ["image.keras", "renamed.h5", "notes.h5"])
def test_a_weights_file_spoilt_after_the_check_fails_its_run_saying_what_it_is(bad_files, name):
    from feph_finetune import RunContext
    from feph_finetune_plugins import mobilenet

    folder, says = bad_files
    context = RunContext(run_id="test", experiment="test", phase="explore", fold=None, seed=0, input_size=TINY_SIDE, config={},
                         options={"alpha": 0.25, "weights": str(folder / name)})
    with pytest.raises(PluginError) as caught:
        mobilenet.build_model(context)
    assert str(caught.value) == f"mobilenet: option weights: {folder / name}: not a Keras weights file ({says[name]})"


def test_a_bundle_model_keras_cannot_load_is_described_as_what_it_is(tmp_path):
    from feph_finetune.predict.bundle import Bundle, BundleError, load_model

    (tmp_path / "model.keras").write_bytes(PNG_START)
    with pytest.raises(BundleError) as caught:
        load_model(Bundle(tmp_path, {"model": "model.keras"}, []))
    assert str(caught.value) == f"{tmp_path / 'model.keras'}: not a Keras model file (a PNG image, not a zip archive)"
