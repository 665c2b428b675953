"""The demo end to end, in miniature: fine-tuning beats the pretrained model used as is.

This is the slowest test (about two minutes on two cores): it writes the synthetic data,
pre-trains a small MobileNet base on 3,600 generic faces, and runs No-FT and FT in 3-fold
cross-validation. Smaller settings do not give a base whose features transfer.
"""

from __future__ import annotations

import json

from feph_finetune.cli import main

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
base_epochs = 10

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
