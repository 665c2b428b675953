"""The demo: fine-tuning beats the pretrained model used as is, and the demo's base models and
data come out the same every time.

The end-to-end test is the slowest of the suite (about two minutes on two cores): it writes the
synthetic data, pre-trains a small MobileNet base on 3,600 generic faces, and runs No-FT and FT in
3-fold cross-validation. Smaller settings do not give a base whose features transfer: measured at
48 px with 1,440 generic training faces (MobileNet 10, EfficientNet 5 epochs), fine-tuning gained
only 5 points over MobileNet's No-FT (16% to 21%) and EfficientNet's No-FT stayed at chance (13%).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from feph_finetune import demo
from feph_finetune.cli import main
from feph_finetune.config import ConfigError, read_config
from feph_finetune.synth import write_synthetic_dataset

from conftest import run_cli

MINI_DEMO = """
seed = 5

[dataset]
root = "unused: --demo replaces it"
folds = 3

[defaults]
input_size = 64
batch_size = 32
model = "mobilenet"
preprocess = ["face_crop", "normalize"]
phases = ["cv"]
deterministic = true

[experiments.NoFT]
fine_tune = false

[experiments.FT]
optimizer = "adam"

[demo]
images = 600
generic_images = 4000
seed = 3
base_epochs = { mobilenet = 10 }

[demo.defaults.options.mobilenet]
alpha = 0.5

[demo.defaults.options.adam]
head_epochs = 10
head_lr = 1e-2
epochs = 5
lr = 1e-4
"""


def test_fine_tuning_beats_the_no_ft_baseline_on_the_demo(tmp_path, capsys):
    path = tmp_path / "mini.toml"
    path.write_text(MINI_DEMO, encoding="utf-8")
    outdir = tmp_path / "runs"
    assert main([str(path), "--demo", "--output", str(outdir)]) == 0
    printed = capsys.readouterr().out
    assert "Table 5" in printed and "efficientnet" not in printed  # only the base the runs use is pre-trained
    result = run_cli("report", str(outdir), "--format", "json")
    rows = {row["experiment"]: row for row in json.loads(result.stdout)}
    no_ft, fine_tuned = rows["NoFT"], rows["FT"]
    print(f"No-FT {no_ft['accuracy']:.3f}, FT {fine_tuned['accuracy']:.3f}")
    assert no_ft["folds"] == fine_tuned["folds"] == 3
    assert no_ft["accuracy"] > 1 / 7, "the base should transfer something: No-FT above chance"
    assert fine_tuned["accuracy"] >= no_ft["accuracy"] + 0.10, f"fine-tuned {fine_tuned['accuracy']:.3f} vs No-FT {no_ft['accuracy']:.3f}"


def test_the_mobilenet_base_takes_rgb_minus_savchenkos_means_without_a_channel_flip():
    images = np.array([[[[10, 20, 30]]]], dtype=np.uint8)
    np.testing.assert_allclose(demo.base_model_input("mobilenet", images), [[[[10 - 103.939, 20 - 116.779, 30 - 123.68]]]], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(demo.base_model_input("efficientnet", images), images.astype(np.float32))


def test_pre_training_a_base_twice_gives_the_same_weights_bit_for_bit_here_or_in_a_child(tmp_path):
    import keras
    from rich.console import Console

    generic = tmp_path / "generic"
    write_synthetic_dataset(generic, images=40, seed=1, domain="generic")
    settings = {"input_size": 32, "seed": 4, "alpha": 0.25, "base_epochs": 1}
    here, child = tmp_path / "here" / "base.keras", tmp_path / "child" / "base.keras"
    here.parent.mkdir()
    child.parent.mkdir()
    demo.pretrain_base_model("mobilenet", settings, generic, here)
    paths = demo.DemoPaths(tmp_path, tmp_path / "FePh", generic, {"mobilenet": child})
    demo.pretrain_in_children(["mobilenet"], {**settings, "base_epochs": {"mobilenet": 1}}, paths, Console(file=io.StringIO()))
    weights = [keras.models.load_model(path).get_weights() for path in (here, child)]
    assert len(weights[0]) == len(weights[1]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def test_synthetic_data_is_the_same_bit_for_bit_from_the_same_seed(tmp_path):
    for attempt in ("a", "b"):
        write_synthetic_dataset(tmp_path / attempt, images=40, seed=9, domain="feph")
    files = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*") if path.is_file())
    assert files and files == sorted(path.relative_to(tmp_path / "b") for path in (tmp_path / "b").rglob("*") if path.is_file())
    assert all((tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() for name in files)


@pytest.mark.parametrize(
    "base_epochs, message",
    [({"mobilenet": 0}, "must be at least 1"), ({"resnet": 3}, "unknown key 'resnet'"), ({"efficientnet": "6"}, "expected int"), (10, "expected table")],
)
def test_bad_base_epochs_are_refused_naming_the_key(tmp_path, capsys, base_epochs, message):
    value = "{ " + ", ".join(f"{key} = {json.dumps(number)}" for key, number in base_epochs.items()) + " }" if isinstance(base_epochs, dict) else str(base_epochs)
    path = tmp_path / "bad.toml"
    path.write_text(f'[dataset]\nroot = "x"\n\n[experiments.A]\nmodel = "mobilenet"\n\n[demo]\nbase_epochs = {value}\n', encoding="utf-8")
    assert main([str(path), "--demo", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "base_epochs" in error and message in error
    with pytest.raises(ConfigError):
        demo.demo_settings(read_config(path, []))


def test_the_demo_cache_key_follows_every_setting():
    settings = {"images": 300, "generic_images": 2000, "seed": 7, "base_epochs": {"mobilenet": 10, "efficientnet": 6}, "input_size": 48, "alpha": 0.5}
    changed = {**settings, "base_epochs": {"mobilenet": 10, "efficientnet": 5}}
    assert demo.demo_paths(settings).root != demo.demo_paths(changed).root
    assert demo.demo_paths(settings).root == demo.demo_paths(dict(settings)).root
