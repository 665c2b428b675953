"""The demo: fine-tuning beats the pretrained model used as is for both backbones, the shipped
bases are used when the settings are theirs and pre-trained otherwise, the bases pre-train
beside the runs, and the demo's base models and data come out the same every time.

The end-to-end test is the slowest of the suite: it writes the demo's synthetic data, installs
the shipped bases and runs four of its experiments in the demo's 5-fold cross-validation.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from feph_finetune.demo import protocol as demo
from feph_finetune.demo import bases as demo_bases
from feph_finetune.cli import main
from feph_finetune.config.reading import ConfigError, read_config
from feph_finetune.demo.synth import write_synthetic_dataset

from conftest import run_cli

#: The demo's own experiment file: the test checks what the README's demo command does.
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments.toml"


@pytest.mark.slow(390)
@pytest.mark.numerics
def test_fine_tuning_beats_the_no_ft_baseline_on_the_demo_for_both_backbones(tmp_path, capsys):
    """The demo's claim, on its own settings and shipped bases, in its own 5-fold
    cross-validation (four rows of the README's table): each base classifies the held-out
    generic faces well above chance, and M1 and E2 beat their No-FT row (M0, E0) in the paired
    t-test at p < 0.05, the conclusion the README states; not particular numbers, which differ
    between CPU kernel paths."""
    outdir = tmp_path / "runs"
    argv = [str(EXPERIMENTS), "--demo", "--only", "M0", "M1", "E0", "E2", "--phase", "cv", "--output", str(outdir)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Table 5" in printed and printed.count("base model classifies") == 2
    assert "pre-training" not in printed and printed.count("shipped") >= 2
    for record in demo_bases.shipped_records().values():
        assert record["held_out_accuracy"] >= 2 / 7, "a base at twice chance or more: it learned expressions"
    result = run_cli("report", str(outdir), "--format", "json")
    rows = {row["experiment"]: row for row in json.loads(result.stdout)}
    assert all(rows[name]["folds"] == 5 for name in ("M0", "M1", "E0", "E2"))
    for no_ft, fine_tuned in (("M0", "M1"), ("E0", "E2")):
        before, after, test = rows[no_ft]["accuracy"], rows[fine_tuned]["accuracy"], rows[fine_tuned]["versus_baseline"]
        print(f"{no_ft} {before:.3f}, {fine_tuned} {after:.3f}, p = {test['p']:.4f}")
        assert test["baseline"] == no_ft and test["folds"] == 5
        assert test["mean_diff"] > 0 and test["p"] < 0.05, f"{fine_tuned} {after:.3f} vs {no_ft} {before:.3f}: {test}"


def test_the_mobilenet_base_takes_rgb_minus_savchenkos_means_without_a_channel_flip():
    images = np.array([[[[10, 20, 30]]]], dtype=np.uint8)
    np.testing.assert_allclose(demo.base_model_input("mobilenet", images), [[[[10 - 103.939, 20 - 116.779, 30 - 123.68]]]], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(demo.base_model_input("efficientnet", images), images.astype(np.float32))


def keras_reference_base(backbone, settings):
    """The demo base as the demo built it before its backbones came from the plugins: Keras'
    application on an input tensor, then ``feats`` and ``emotion_preds``."""
    import keras

    size = settings["input_size"]
    inputs = keras.Input((size, size, 3))
    if backbone == "mobilenet":
        base = keras.applications.MobileNet(include_top=False, weights=None, input_tensor=inputs, alpha=settings["alpha"], pooling="avg")
    else:
        base = keras.applications.EfficientNetB0(include_top=False, weights=None, input_tensor=inputs, pooling="avg")
    features = keras.layers.Dense(64, activation="relu", name="feats")(base.output)
    outputs = keras.layers.Dense(7, activation="softmax", name="emotion_preds")(features)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("backbone", ["mobilenet", "efficientnet"])
def test_a_base_built_through_its_plugin_starts_from_the_same_weights_as_before(backbone):
    """The shipped bases and the demo's caches were made from these initial weights: the seed
    must give the same ones, whatever the plugin builds and the demo leaves unused."""
    from feph_finetune.training.stages import seed_everything

    settings = {"input_size": 32, "seed": 4, "alpha": 0.25, "threads": 0}
    seed_everything(settings["seed"], deterministic=True)
    reference = keras_reference_base(backbone, settings)
    seed_everything(settings["seed"], deterministic=True)
    model = demo.base_architecture(backbone, settings)
    assert [type(layer).__name__ for layer in model.layers] == [type(layer).__name__ for layer in reference.layers]
    assert [layer.name for layer in model.layers][-2:] == ["feats", "emotion_preds"]
    weights, expected = model.get_weights(), reference.get_weights()
    assert len(weights) == len(expected) > 0
    assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(weights, expected))


@pytest.mark.slow(35)
@pytest.mark.numerics  # bit for bit on one kernel path, whichever it is
def test_pre_training_a_base_twice_gives_the_same_weights_bit_for_bit_here_or_in_a_child(tmp_path):
    import keras
    from rich.console import Console

    generic = tmp_path / "generic"
    write_synthetic_dataset(generic, images=40, seed=1, domain="generic")
    settings = {"input_size": 32, "seed": 4, "alpha": 0.25, "threads": 0, "base_epochs": 1}
    here, child = tmp_path / "here" / "base.keras", tmp_path / "child" / "base.keras"
    here.parent.mkdir()
    child.parent.mkdir()
    demo.pretrain_base_model("mobilenet", settings, generic, here)
    paths = demo.DemoPaths(tmp_path, tmp_path / "FePh", generic, {"mobilenet": child})
    log = io.StringIO()
    with demo.BasePretraining(["mobilenet"], {**settings, "base_epochs": {"mobilenet": 1}}, paths, Console(file=log, width=200)) as pretraining:
        assert pretraining.next_trained() == "mobilenet" and not pretraining.running
    assert "the mobilenet base model classifies" in log.getvalue()
    weights = [keras.models.load_model(path).get_weights() for path in (here, child)]
    assert len(weights[0]) == len(weights[1]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def demo_toml_settings(*overrides):
    return demo.demo_settings(read_config(EXPERIMENTS, list(overrides)))


@pytest.mark.parametrize(
    "overrides, shipped",
    [
        ((), {"mobilenet", "efficientnet"}),
        (("demo.defaults.threads=2", "demo.images=200", "demo.folds=3"), {"mobilenet", "efficientnet"}),  # the runs change, not the bases
        (("demo.base_epochs.mobilenet=11",), {"efficientnet"}),
        (("demo.defaults.options.mobilenet.alpha=0.25",), {"efficientnet"}),
        (("demo.seed=8",), set()),
        (("demo.defaults.input_size=48",), set()),
        (("demo.generic_images=3000",), set()),
    ],
)
def test_the_shipped_bases_are_used_only_at_the_settings_they_were_made_with(overrides, shipped):
    paths = demo.demo_paths(demo_toml_settings(*overrides))
    assert set(paths.shipped) == shipped
    for name, path in paths.base_models.items():
        assert path.parent == paths.root and path.name == (f"{name}_shipped_base.keras" if name in shipped else f"{name}_base.keras")
    assert paths.needs_generic_faces() == (shipped != set(demo.DEMO_BACKBONES))


def test_with_the_shipped_bases_the_demo_writes_no_generic_faces(tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.setenv("FEPH_FINETUNE_CACHE", str(tmp_path))
    settings = {**demo_toml_settings(), "images": 20}
    paths = demo.demo_paths(settings)
    assert set(paths.shipped) == set(demo.DEMO_BACKBONES)
    demo.write_demo_data(settings, paths, Console(file=io.StringIO()))
    assert paths.data.is_dir() and not paths.generic.exists()


@pytest.mark.numerics
def test_an_installed_shipped_base_holds_the_shipped_weights_bit_for_bit(tmp_path):
    """float16 widened to float32 is exact: the installed model is the same on every machine."""
    import keras

    settings = demo_toml_settings()
    record = demo_bases.shipped_base(settings, "mobilenet")
    path = tmp_path / "mobilenet_shipped_base.keras"
    demo_bases.install_shipped_base("mobilenet", settings, record, path)
    installed, shipped = keras.models.load_model(path).get_weights(), demo_bases.read_shipped_weights(record)
    assert len(installed) == len(shipped) > 0 and all(np.array_equal(a, b) for a, b in zip(installed, shipped))
    assert json.loads(path.with_suffix(".json").read_text())["held_out_accuracy"] == record["held_out_accuracy"]


def test_a_missing_or_damaged_shipped_base_is_named(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    record = demo_bases.shipped_records()["mobilenet"]
    with pytest.raises(demo_bases.ShippedBaseError, match="demo_mobilenet_base.npz is missing; reinstall"):
        demo_bases.read_shipped_weights(record, folder)
    damaged = (demo_bases.SHIPPED_DIR / record["weights"]).read_bytes()
    (folder / record["weights"]).write_bytes(damaged[:-1] + bytes([damaged[-1] ^ 1]))
    with pytest.raises(demo_bases.ShippedBaseError, match="demo_mobilenet_base.npz is damaged"):
        demo_bases.read_shipped_weights(record, folder)


def test_the_shipped_bases_are_package_data():
    """Found by a normal ``pip install .`` too: pyproject.toml lists them as package data."""
    import tomllib

    listed = tomllib.loads((EXPERIMENTS.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["feph_finetune.demo"]
    files = {path.relative_to(demo_bases.SHIPPED_DIR.parent).as_posix() for path in demo_bases.SHIPPED_DIR.iterdir()}
    assert files and all(any(Path(name).match(pattern) for pattern in listed) for name in files), (files, listed)
    assert sum(path.stat().st_size for path in demo_bases.SHIPPED_DIR.iterdir()) < 20e6


@pytest.mark.slow(70)
def test_the_bases_command_pre_trains_exports_and_the_demo_then_uses_them(tmp_path, monkeypatch):
    """``python -m feph_finetune.demo.bases`` on tiny settings: both bases pre-trained, rounded
    to float16, measured and recorded; the record matches those settings and no others."""
    from rich.console import Console

    monkeypatch.setenv("FEPH_FINETUNE_CACHE", str(tmp_path / "cache"))
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        '[dataset]\nroot = "x"\n\n[experiments.A]\nmodel = "mobilenet"\n\n[demo]\nimages = 20\ngeneric_images = 30\n'
        'base_epochs = { mobilenet = 1, efficientnet = 1 }\n\n[demo.defaults]\ninput_size = 32\nthreads = 1\n\n'
        "[demo.defaults.options.mobilenet]\nalpha = 0.25\n",
        encoding="utf-8",
    )
    folder = tmp_path / "shipped"
    records = demo_bases.make_shipped_bases(toml, [], folder, Console(file=io.StringIO()))
    assert set(records) == set(demo.DEMO_BACKBONES) == set(json.loads((folder / demo_bases.RECORD).read_text()))
    settings = demo.demo_settings(read_config(toml, []))
    for name, record in records.items():
        assert demo_bases.shipped_base(settings, name, folder) == record and record["held_out_images"] == 3
        assert 0 <= record["held_out_accuracy"] <= 1 and record["made_with"]["threads"] == 1
        assert all(weight.dtype == np.float16 for weight in np.load(folder / record["weights"]).values())
    assert demo_bases.shipped_base({**settings, "input_size": 48}, "mobilenet", folder) is None


def test_synthetic_data_is_the_same_bit_for_bit_from_the_same_seed(tmp_path):
    for attempt in ("a", "b"):
        write_synthetic_dataset(tmp_path / attempt, images=40, seed=9, domain="feph")
    files = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*") if path.is_file())
    assert files and files == sorted(path.relative_to(tmp_path / "b") for path in (tmp_path / "b").rglob("*") if path.is_file())
    assert all((tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() for name in files)


@pytest.mark.parametrize(
    "base_epochs, message",
    [({"mobilenet": 0}, "must be >= 1, not 0"), ({"resnet": 3}, "unknown key 'resnet'"), ({"efficientnet": "6"}, "expected int"), (10, "expected table")],
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


@pytest.mark.parametrize("folds, message", [(1, "must be 0 (keep [dataset] folds), or 2 and more up to 10,000, not 1"), (-1, "must be 0 (keep [dataset] folds), or 2 and more up to 10,000, not -1"), ("3", "expected int")])
def test_bad_demo_folds_are_refused_naming_the_key(tmp_path, capsys, folds, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'[dataset]\nroot = "x"\n\n[experiments.A]\nmodel = "mobilenet"\n\n[demo]\nfolds = {json.dumps(folds)}\n', encoding="utf-8")
    assert main([str(path), "--demo", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "demo.folds" in error and message in error, error


def test_the_demo_folds_replace_the_datasets_and_zero_keeps_them(tmp_path, capsys):
    path = tmp_path / "m.toml"
    body = '[dataset]\nroot = "x"\nfolds = 5\n\n[experiments.A]\nphases = ["cv"]\n\n[demo]\n'
    for demo_table, flags, folds in (("folds = 3\n", [], 3), ("folds = 0\n", [], 5), ("", [], 5), ("folds = 3\n", ["--set", "dataset.folds=4"], 4)):
        path.write_text(body + demo_table, encoding="utf-8")
        assert main([str(path), "--demo", "--dry-run", "--json", *flags]) == 0
        runs = json.loads(capsys.readouterr().out)
        assert sorted(run["fold"] for run in runs) == list(range(folds))


def test_demo_folds_the_data_cannot_give_are_named_at_demo_folds(tmp_path, capsys, monkeypatch):
    """Checked once the demo's data is written, before any pre-training."""
    monkeypatch.setenv("FEPH_FINETUNE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "m.toml"
    path.write_text('[dataset]\nroot = "x"\n\n[experiments.A]\nphases = ["cv"]\n\n[demo]\nimages = 30\ngeneric_images = 10\n', encoding="utf-8")
    assert main([str(path), "--demo", "--set", "demo.folds=9000", "--output", str(tmp_path / "runs")]) == 2
    assert not list((tmp_path / "cache").rglob("*.keras"))
    assert "--set demo.folds=9000: 9000 folds need at least 9000 groups" in capsys.readouterr().err


def test_the_demo_cache_key_follows_every_setting():
    settings = {"images": 300, "generic_images": 2000, "seed": 7, "base_epochs": {"mobilenet": 10, "efficientnet": 6}, "input_size": 48, "alpha": 0.5, "threads": 1}
    others = {"images": 301, "generic_images": 2001, "seed": 8, "base_epochs": {"mobilenet": 10, "efficientnet": 5}, "input_size": 64, "alpha": 0.25, "threads": 0}
    assert sorted(others) == sorted(settings)
    for key, value in others.items():
        assert demo.demo_paths(settings).root != demo.demo_paths({**settings, key: value}).root, key
    assert demo.demo_paths(settings).root == demo.demo_paths(dict(settings)).root


def tiny_pretraining(tmp_path, backbones):
    """A :class:`demo.BasePretraining` of ``backbones`` on 20 generic faces."""
    from rich.console import Console

    generic = tmp_path / "generic"
    if not generic.is_dir():
        write_synthetic_dataset(generic, images=20, seed=1, domain="generic")
    paths = demo.DemoPaths(tmp_path, tmp_path / "FePh", generic, {name: tmp_path / f"{name}_base.keras" for name in demo.DEMO_BACKBONES})
    settings = {"input_size": 32, "seed": 4, "alpha": 0.25, "threads": 1, "base_epochs": {name: 1 for name in demo.DEMO_BACKBONES}}
    return demo.BasePretraining(backbones, settings, paths, Console(file=io.StringIO())), paths


def test_leaving_the_pre_training_early_stops_its_children_and_writes_no_model(tmp_path):
    pretraining, paths = tiny_pretraining(tmp_path, ["mobilenet", "efficientnet"])
    children = list(pretraining.children.values())
    with pytest.raises(KeyboardInterrupt), pretraining:
        raise KeyboardInterrupt  # Ctrl-C while the bases train
    assert not any(child.is_alive() for child in children) and not pretraining.running
    assert not any(path.exists() for path in paths.base_models.values())


def test_a_pre_training_child_that_dies_is_reported_with_its_signal(tmp_path):
    import signal

    pretraining, _ = tiny_pretraining(tmp_path, ["mobilenet"])
    with pretraining:
        os.kill(pretraining.children["mobilenet"].pid, signal.SIGKILL)
        with pytest.raises(demo.PretrainingFailed, match="mobilenet base model failed: its process was killed by SIGKILL"):
            pretraining.next_trained()


class FakeRun:
    """What :func:`demo.runs_as_bases_are_ready` reads of a Run."""

    def __init__(self, name, model):
        self.name, self.id, self.config = name, name, {"model": model}


@pytest.fixture
def stand_in_pretraining(tmp_path, monkeypatch):
    """Pre-training replaced by a stand-in whose bases finish in name order (EfficientNet first);
    those named in ``record.failing`` fail. Returns ``(record, paths)``: ``record.started`` lists
    the backbones of each pre-training, ``record.stopped`` one entry per one left."""
    from types import SimpleNamespace

    record = SimpleNamespace(started=[], stopped=[], failing=set())

    class StandIn:
        def __init__(self, backbones, settings, paths, console):
            self.order = sorted(backbones)
            record.started.append(list(backbones))

        running = property(lambda self: bool(self.order))

        def next_trained(self):
            backbone = self.order.pop(0)
            if backbone in record.failing:
                raise demo.PretrainingFailed(f"demo: pre-training the {backbone} base model failed")
            return backbone

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            record.stopped.append(True)

    monkeypatch.setattr(demo, "BasePretraining", StandIn)
    return record, demo.DemoPaths(tmp_path, tmp_path / "FePh", tmp_path / "generic", {name: tmp_path / f"{name}.keras" for name in demo.DEMO_BACKBONES})


def test_runs_whose_base_exists_start_first_and_the_others_as_their_base_is_trained(stand_in_pretraining):
    record, paths = stand_in_pretraining
    runs = [FakeRun("M0", "mobilenet"), FakeRun("E0", "efficientnet"), FakeRun("X", "their_model"), FakeRun("M1", "mobilenet"), FakeRun("E1", "efficientnet")]
    groups = [[run.name for run in group] for group in demo.runs_as_bases_are_ready(runs, {}, paths, None)]
    assert record.started == [["mobilenet", "efficientnet"]] and record.stopped == [True]
    assert groups == [["X"], ["E0", "E1"], ["M0", "M1"]]

    paths.base_models["efficientnet"].write_bytes(b"trained before")  # a cached base: its runs need no wait
    record.started.clear()
    groups = [[run.name for run in group] for group in demo.runs_as_bases_are_ready(runs, {}, paths, None)]
    assert record.started == [["mobilenet"]] and groups == [["E0", "X", "E1"], ["M0", "M1"]]

    record.started.clear()  # every MobileNet run finished already: its base is not pre-trained again
    groups = [[run.name for run in group] for group in demo.runs_as_bases_are_ready(runs, {}, paths, None, is_done=lambda run_id: run_id in ("M0", "M1"))]
    assert record.started == [[]] and groups == [["M0", "E0", "X", "M1", "E1"]]


@pytest.mark.parametrize("cores, memory, jobs", [(4, 64.0, 4), (4, 5.0, 2), (4, 1.0, 1), (4, None, 2), (1, None, 1)])
def test_the_demo_runs_one_run_per_core_within_the_free_memory(monkeypatch, cores, memory, jobs):
    from feph_finetune.execution.executors import process

    monkeypatch.setattr(process, "usable_cores", lambda: cores)
    monkeypatch.setattr(process, "available_memory_gib", lambda: memory)
    assert demo.demo_jobs() == jobs


@pytest.mark.parametrize(
    "flags, table, expected",
    [((None, None), {}, "demo"), (("1", None), {}, None), ((None, "0"), {}, None), ((None, None), {"jobs": 3}, None), ((None, None), {"devices": [0]}, None)],
)
def test_the_demo_default_jobs_give_way_to_flags_and_the_toml(monkeypatch, flags, table, expected):
    import argparse

    from feph_finetune.demo.session import with_demo_jobs
    from feph_finetune.execution.executors import ExecutorChoice
    from feph_finetune.execution.executors.process import ProcessExecutor

    monkeypatch.setattr(demo, "demo_jobs", lambda: 7)
    choice = ExecutorChoice(ProcessExecutor, {"jobs": 0, "devices": []})
    raw = argparse.Namespace(data={"executor": {"process": table}} if table else {})  # what with_demo_jobs reads of a RawConfig
    assert with_demo_jobs(choice, raw, *flags).settings["jobs"] == (7 if expected == "demo" else 0)


def test_a_failed_base_holds_back_only_its_own_runs(stand_in_pretraining):
    record, paths = stand_in_pretraining
    record.failing.add("efficientnet")
    groups = demo.runs_as_bases_are_ready([FakeRun("M0", "mobilenet"), FakeRun("E0", "efficientnet")], {}, paths, None)
    assert [run.name for run in next(groups)] == ["M0"]
    with pytest.raises(demo.PretrainingFailed, match="efficientnet base model failed"):
        next(groups)


def test_shipped_bases_are_installed_before_any_run_and_their_runs_start_with_the_others(stand_in_pretraining):
    """Installing takes seconds: done first, so the runs of every shipped base form one group
    (two at a time from the first run to the last), and only the other bases pre-train beside them."""
    import dataclasses

    record, paths = stand_in_pretraining
    paths = dataclasses.replace(paths, shipped={"mobilenet": {"weights": "stand-in"}})
    runs = [FakeRun("M0", "mobilenet"), FakeRun("E0", "efficientnet"), FakeRun("M1", "mobilenet")]
    groups = [[run.name for run in group] for group in demo.runs_as_bases_are_ready(runs, {}, paths, None)]
    assert record.started == [["mobilenet"], ["efficientnet"]]
    assert groups == [["M0", "M1"], ["E0"]]
