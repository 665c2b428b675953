"""The built-in data plugins as users rely on them: ``class_weights``, ``flip`` and ``normalize``.

Each behaviour is checked where a run meets it: the run's data as :func:`prepare` hands it to
training (splits, weights, batch functions), on a tiny matrix over synthetic FePh data. Nothing
trains except where a refusal must be seen in a run's ``result.json``, and that run stops
before its first epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feph_finetune import Augmentation, PluginError, hookimpl
from feph_finetune.cli import main
from feph_finetune.config.reading import ConfigError
from feph_finetune.plugins import PluginCallError, get_plugins
from feph_finetune.data.preparation import RunData

from conftest import TinyMatrix, line_of, write_matrix

#: Savchenko's MobileNet input: subtracted from R, G, B (SPEC section 1, IP).
CAFFE_MEANS = (103.939, 116.779, 123.68)


def paper_weights(labels: np.ndarray) -> dict[int, float]:
    """CW as the paper defines it: largest class size / class size, 0 for an absent class."""
    counts = np.bincount(labels, minlength=7)
    return {index: counts.max() / count if count else 0.0 for index, count in enumerate(counts)}


def only_step(data: RunData, plugin: str):
    (name, step), = data.batch_steps
    assert name == plugin
    return step


# --- class_weights ---------------------------------------------------------------------------


def test_class_weights_follow_the_papers_formula(synthetic_feph, tmp_path):
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\nclass_weights = "class_weights"\n')
    labels = np.array([0, 0, 0, 0, 1, 1, 3])
    weights = tiny.plugins.call("class_weights", "weight_classes", labels=labels, context=tiny.context("A", "class_weights"))
    assert weights == {0: 1.0, 1: 2.0, 2: 0.0, 3: 4.0, 4: 0.0, 5: 0.0, 6: 0.0}


def test_class_weights_come_from_the_training_split_only(synthetic_feph, tmp_path):
    experiments = '[experiments.A]\nclass_weights = "class_weights"\nvalidation_split = 0.25\n'
    data = TinyMatrix(tmp_path, synthetic_feph, experiments).prepare("A")
    train_and_val = np.concatenate([data.train.labels, data.val.labels])
    every_label = np.concatenate([train_and_val, data.test.labels])
    assert data.class_weight == pytest.approx(paper_weights(data.train.labels))
    assert data.class_weight[int(np.bincount(data.train.labels).argmax())] == 1.0
    assert data.class_weight != pytest.approx(paper_weights(train_and_val))
    assert data.class_weight != pytest.approx(paper_weights(every_label))


def test_class_weights_of_an_empty_split_are_refused(synthetic_feph, tmp_path):
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\nclass_weights = "class_weights"\n')
    with pytest.raises(PluginCallError) as raised:
        tiny.plugins.call("class_weights", "weight_classes", labels=np.array([], dtype=int), context=tiny.context("A", "class_weights"))
    assert isinstance(raised.value.error, PluginError)
    assert (raised.value.plugin, raised.value.hook) == ("class_weights", "weight_classes")
    assert "empty" in str(raised.value.error)


# --- flip ------------------------------------------------------------------------------------


FLIP_EXPERIMENTS = """
[experiments.plain]

[experiments.double]
augment = ["flip"]

[experiments.random]
augment = ["flip"]
options.flip.mode = "random"
"""


def test_flip_double_appends_the_mirror_image_of_every_training_image(synthetic_feph, tmp_path):
    tiny = TinyMatrix(tmp_path, synthetic_feph, FLIP_EXPERIMENTS)
    plain = tiny.prepare("plain")
    originals, labels = plain.train.pixels(), plain.train.labels.copy()
    mirrors = originals[:, :, ::-1]
    assert not np.array_equal(originals, mirrors)

    doubled = tiny.prepare("double")
    assert len(doubled.train) == 2 * len(originals)
    np.testing.assert_array_equal(doubled.train.pixels()[: len(originals)], originals)
    np.testing.assert_array_equal(doubled.train.pixels()[len(originals):], mirrors)
    np.testing.assert_array_equal(doubled.train.labels, np.concatenate([labels, labels]))
    assert doubled.augmentations == []


@pytest.mark.parametrize("mode", ["double", "random"])
def test_flip_never_touches_the_test_split(synthetic_feph, tmp_path, mode):
    tiny = TinyMatrix(tmp_path, synthetic_feph, FLIP_EXPERIMENTS)
    plain = tiny.prepare("plain")
    test_pixels, test_labels = plain.test.pixels(), plain.test.labels.copy()

    flipped = tiny.prepare(mode)
    np.testing.assert_array_equal(flipped.test.pixels(), test_pixels)
    np.testing.assert_array_equal(flipped.test.labels, test_labels)
    np.testing.assert_array_equal(plain.test.pixels(), test_pixels)


def test_flip_random_keeps_the_training_set_and_adds_a_batch_function(synthetic_feph, tmp_path):
    tiny = TinyMatrix(tmp_path, synthetic_feph, FLIP_EXPERIMENTS)
    plain, random = tiny.prepare("plain"), tiny.prepare("random")
    np.testing.assert_array_equal(random.train.pixels(), plain.train.pixels())
    (name, augmentation), = random.augmentations
    assert name == "flip" and augmentation.batch is not None and augmentation.expand is None


@pytest.fixture(scope="module")
def random_flip(synthetic_feph, tmp_path_factory):
    """The batch function of ``flip`` in ``random`` mode, applied to a float32 batch with a seed."""
    import tensorflow as tf

    tiny = TinyMatrix(tmp_path_factory.mktemp("random_flip"), synthetic_feph, FLIP_EXPERIMENTS)
    (_, augmentation), = tiny.prepare("random").augmentations

    def apply(batch: np.ndarray, seed: int) -> np.ndarray:
        return np.asarray(augmentation.batch(tf.constant(batch), tf.constant([seed, 0], dtype=tf.int64)))

    return apply


@pytest.fixture(scope="module")
def noise_batch() -> np.ndarray:
    """400 float32 images no two of which, nor any with its mirror, are alike."""
    return np.random.default_rng(0).integers(0, 256, size=(400, 6, 6, 3)).astype(np.float32)


def mirrored_rows(batch: np.ndarray, result: np.ndarray) -> np.ndarray:
    return np.all(result == batch[:, :, ::-1], axis=(1, 2, 3))


def test_flip_random_yields_each_image_or_its_mirror(random_flip, noise_batch):
    result = random_flip(noise_batch, seed=1)
    unchanged = np.all(result == noise_batch, axis=(1, 2, 3))
    assert np.all(unchanged ^ mirrored_rows(noise_batch, result))


def test_flip_random_mirrors_about_half_of_a_batch(random_flip, noise_batch):
    for seed in (1, 2, 3):
        assert 150 <= mirrored_rows(noise_batch, random_flip(noise_batch, seed)).sum() <= 250


def test_flip_random_is_reproducible_from_its_seed(random_flip, noise_batch):
    np.testing.assert_array_equal(random_flip(noise_batch, seed=7), random_flip(noise_batch, seed=7))


def test_flip_random_differs_between_seeds(random_flip, noise_batch):
    first = mirrored_rows(noise_batch, random_flip(noise_batch, seed=7))
    second = mirrored_rows(noise_batch, random_flip(noise_batch, seed=8))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("mode, hint", [("sideways", ""), ("dubble", "did you mean 'double'")])
def test_flip_with_an_unknown_mode_is_refused_before_any_work_naming_the_allowed_modes(synthetic_feph, tmp_path, mode, hint):
    with pytest.raises(ConfigError) as raised:
        TinyMatrix(tmp_path, synthetic_feph, f'[experiments.A]\naugment = ["flip"]\noptions.flip.mode = "{mode}"\n')
    message = str(raised.value)
    line = line_of(tmp_path / "m.toml", "options.flip.mode")
    assert f"m.toml:{line} experiments.A.options.flip.mode: '{mode}' is not one of 'double', 'random'" in message
    assert hint in message


# --- normalize -------------------------------------------------------------------------------


def normalize_step(tmp_path: Path, root: Path, mode: str | None = None):
    options = f'options.normalize.mode = "{mode}"\n' if mode else ""
    tiny = TinyMatrix(tmp_path, root, f'[experiments.A]\npreprocess = ["face_crop", "normalize"]\n{options}')
    return only_step(tiny.prepare("A"), "normalize")


def test_normalize_default_subtracts_savchenkos_means_from_r_g_b_in_place(synthetic_feph, tmp_path):
    import tensorflow as tf

    step = normalize_step(tmp_path, synthetic_feph)
    means = np.array([[[CAFFE_MEANS]]], dtype=np.float32)
    assert step.normalizes and step.fit is None
    np.testing.assert_array_equal(np.asarray(step.batch(means)), np.zeros((1, 1, 1, 3)))
    np.testing.assert_array_equal(np.asarray(step.batch(tf.constant(means))), np.zeros((1, 1, 1, 3)))


def test_normalize_default_keeps_a_pure_red_image_red(synthetic_feph, tmp_path):
    step = normalize_step(tmp_path, synthetic_feph, "rgb_means")
    red = np.zeros((1, 4, 4, 3), dtype=np.float32)
    red[..., 0] = 255.0
    change = np.asarray(step.batch(red)) - np.asarray(step.batch(np.zeros_like(red)))
    np.testing.assert_allclose(change[..., 0], 255.0, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(change[..., 1:], 0.0)


def test_normalize_caffe_bgr_is_keras_caffe_mode(synthetic_feph, tmp_path):
    import keras
    import tensorflow as tf

    step = normalize_step(tmp_path, synthetic_feph, "caffe_bgr")
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    keras_caffe = keras.applications.imagenet_utils.preprocess_input(rgb.copy(), mode="caffe")
    bgr_centred = np.array([[[[30.0, 20.0, 10.0]]]]) - np.array(CAFFE_MEANS)
    np.testing.assert_allclose(np.asarray(step.batch(rgb)), keras_caffe, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(step.batch(tf.constant(rgb))), keras_caffe, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(step.batch(np.array([[[[10.0, 20.0, 30.0]]]], np.float32))), bgr_centred, rtol=0, atol=1e-4)


def test_normalize_refuses_the_former_mode_imagenet_naming_the_two_new_ones(synthetic_feph, tmp_path):
    with pytest.raises(ConfigError) as raised:
        TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\npreprocess = ["normalize"]\noptions.normalize.mode = "imagenet"\n')
    message = str(raised.value)
    assert "experiments.A.options.normalize.mode: 'imagenet' is no longer accepted" in message
    assert "'rgb_means'" in message and "'caffe_bgr'" in message


def dataset_mean_run(tmp_path: Path, root: Path, per: str) -> RunData:
    experiments = f'[experiments.A]\npreprocess = ["face_crop", "normalize"]\noptions.normalize = {{ mode = "dataset_mean", per = "{per}" }}\n'
    return TinyMatrix(tmp_path, root, experiments).prepare("A")


AXES = {"pixel": (0,), "channel": (0, 1, 2)}


@pytest.mark.parametrize("per", ["pixel", "channel"])
def test_normalize_dataset_mean_is_the_mean_of_the_training_split(synthetic_feph, tmp_path, per):
    data = dataset_mean_run(tmp_path, synthetic_feph, per)
    step = only_step(data, "normalize")
    learned = -np.asarray(step.batch(np.zeros((1, 32, 32, 3), dtype=np.float32)))[0]
    train_mean = np.broadcast_to(data.train.pixels().mean(axis=AXES[per]), (32, 32, 3))
    with_test = np.concatenate([data.train.pixels(), data.test.pixels()]).mean(axis=AXES[per])
    np.testing.assert_allclose(learned, train_mean, rtol=0, atol=1e-3)
    assert not np.allclose(learned, np.broadcast_to(with_test, (32, 32, 3)), rtol=0, atol=1e-3)
    assert step.normalizes


@pytest.mark.parametrize("per", ["pixel", "channel"])
def test_normalize_dataset_mean_centres_test_batches_on_the_training_mean(synthetic_feph, tmp_path, per):
    data = dataset_mean_run(tmp_path, synthetic_feph, per)
    test_batch = data.test.pixels().astype(np.float32)
    train_mean = data.train.pixels().mean(axis=AXES[per])
    centred = np.asarray(only_step(data, "normalize").batch(test_batch))
    np.testing.assert_allclose(centred, test_batch - train_mean, rtol=0, atol=1e-3)
    assert not np.allclose(centred, test_batch - test_batch.mean(axis=AXES[per]), rtol=0, atol=1e-3)


def test_normalize_with_a_self_normalising_model_is_refused_before_any_work(synthetic_feph, tmp_path, capsys):
    experiments = """
    [experiments.E]
    model = "efficientnet"
    preprocess = ["face_crop", "normalize"]
    options.efficientnet.weights = "none"
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    assert main([str(path), "--dry-run", "--output", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert f"{path}:{line_of(path, 'preprocess = [')} experiments.E.preprocess:" in error
    assert "'efficientnet' normalises its input itself" in error and "remove 'normalize'" in error
    assert not (tmp_path / "runs").exists()


# --- a malformed augment plugin --------------------------------------------------------------


class MalformedExpand:
    def __init__(self, expand):
        self.expand = expand

    @hookimpl
    def augment(self, context):
        return Augmentation(expand=self.expand)


MALFORMED = {
    "images only": lambda images, labels: images,
    "labels one short": lambda images, labels: (images, labels[:-1]),
    "three parts": lambda images, labels: (images, labels, labels),
    "a list for images": lambda images, labels: (list(images), labels),
    "nothing": lambda images, labels: None,
    "float images": lambda images, labels: (images.astype(np.float32), labels),
    "smaller images": lambda images, labels: (images[:, :16], labels),
    "labels as text": lambda images, labels: (images, labels.astype(str)),
}


@pytest.mark.parametrize("expand", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_expand_fails_its_run_in_that_plugins_augment_hook(synthetic_feph, tmp_path, expand):
    get_plugins().pm.register(MalformedExpand(expand), name="bad_expand")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\naugment = ["bad_expand"]\n')
    record = tiny.run_result("A")
    assert record["status"] == "failed"
    assert (record["error"]["plugin"], record["error"]["hook"]) == ("bad_expand", "augment")
    assert "expand must return" in record["error"]["message"]
