"""The face_crop plugin: Haar-cascade crops, the upper-centre fallback, options and cache keys."""

from __future__ import annotations

import cv2
import numpy as np
import pluggy
import pytest

from feph_finetune import FrameResult, PluginError, Preprocessing, RunContext, hookspecs
from feph_finetune.config.options import option_problems
from feph_finetune.demo.synth import Frame, make_signers, render_frame
from feph_finetune_plugins import face_crop

CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def context(**options) -> RunContext:
    return RunContext(run_id="r", experiment="e", phase="exploratory", fold=None, seed=0, input_size=48,
                      config={}, options={**{key: option.default for key, option in face_crop.plugin_options().items()}, **options})


def frame_step(**options):
    preprocessing = face_crop.preprocess(context(**options))
    assert isinstance(preprocessing, Preprocessing)
    return preprocessing.frame


@pytest.fixture(scope="module")
def signer_frame() -> np.ndarray:
    """A synthetic PHOENIX-like frame (RGB, 260 x 210) with a frontal face."""
    signer = make_signers(3, "feph", np.random.default_rng(1))[0]
    frame = Frame(0, signer.recordings[0], 1, 10, "happy", strength=0.8, pose=(0.0, 0.0, 0.0, 0.0))
    return render_frame(frame, signer, "feph", np.random.default_rng(2))


def largest_face(rgb: np.ndarray, min_side: int) -> tuple[int, int, int, int]:
    faces = CASCADE.detectMultiScale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(min_side, min_side))
    assert len(faces), "the cascade finds no face"
    return tuple(int(v) for v in max(faces, key=lambda box: box[2] * box[3]))


def where_in(image: np.ndarray, crop: np.ndarray) -> tuple[int, int]:
    """The (x, y) at which ``crop`` is an exact window of ``image``."""
    scores = cv2.matchTemplate(image, crop, cv2.TM_SQDIFF)
    _, _, (x, y), _ = cv2.minMaxLoc(scores)
    assert np.array_equal(image[y:y + crop.shape[0], x:x + crop.shape[1]], crop)
    return x, y


def test_crop_is_a_square_around_the_face_with_the_margin(signer_frame):
    result = frame_step()(signer_frame)
    assert isinstance(result, FrameResult) and result.fallback is None
    side = result.image.shape[0]
    assert result.image.shape == (side, side, 3) and result.image.dtype == np.uint8
    fx, fy, fw, fh = largest_face(signer_frame, 26)
    assert side == pytest.approx(1.4 * max(fw, fh), abs=2)
    x, y = where_in(signer_frame, result.image)
    assert x <= fx and y <= fy and fx + fw <= x + side and fy + fh <= y + side
    largest_face(result.image, side // 3)   # the face is still there to see


def test_wider_margin_gives_a_larger_crop(signer_frame):
    tight = frame_step(margin=0.0)(signer_frame).image
    wide = frame_step(margin=0.4)(signer_frame).image
    assert wide.shape[0] > tight.shape[0]


def test_rgba_input_is_cropped_like_rgb(signer_frame):
    rgba = np.dstack([signer_frame, np.full(signer_frame.shape[:2], 255, np.uint8)])
    assert np.array_equal(frame_step()(rgba).image, frame_step()(signer_frame).image)


def test_no_face_falls_back_to_the_flagged_upper_centre_square():
    blank = np.full((260, 210, 3), 128, np.uint8)
    blank[:100] = 40   # so that the upper square is recognisable
    result = frame_step()(blank)
    assert result.fallback == "no_face"
    assert np.array_equal(result.image, blank[:210, :210])


def test_fallback_on_a_landscape_image_is_clipped_and_centred():
    image = np.random.default_rng(0).integers(0, 256, (90, 300, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 8)   # no structure a cascade could take for a face
    result = frame_step()(image)
    assert result.fallback == "no_face"
    assert np.array_equal(result.image, image[:, 105:195])


def test_centre_fallback_option():
    image = np.zeros((300, 100, 3), np.uint8)
    image[100:200] = 200
    result = frame_step(fallback="centre")(image)
    assert result.fallback == "no_face"
    assert np.array_equal(result.image, image[100:200])


@pytest.mark.parametrize(("box", "expected"), [
    ((0, 10, 40, 40), (0, 2, 56)),          # at the left edge: shifted right, not padded
    ((170, 230, 40, 30), (154, 204, 56)),   # at the bottom-right corner: shifted up and left
    ((-5, 0, 300, 300), (0, 45, 210)),      # larger than the image: shrunk to its shorter side
])
def test_square_stays_inside_the_image(box, expected):
    assert face_crop.square_around(*box, margin=0.2, width=210, height=260) == expected


def test_cache_key_follows_every_option():
    base = face_crop.preprocess(context()).cache_key
    assert face_crop.preprocess(context()).cache_key == base
    for option, value in (("margin", 0.3), ("scale_factor", 1.2), ("min_neighbors", 3), ("min_face", 0.2),
                          ("fallback", "centre")):
        assert face_crop.preprocess(context(**{option: value})).cache_key != base, option
    assert f"opencv{cv2.__version__.split('.')[0]}" in base


@pytest.mark.parametrize(("option", "value", "says"), [
    ("margin", -0.1, ">= 0"), ("margin", -5.0, ">= 0"), ("scale_factor", 1.0, "> 1"), ("scale_factor", float("inf"), "finite"),
    ("min_neighbors", -1, ">= 0"), ("min_neighbors", 2.5, "expected integer"), ("min_face", 0.0, "> 0"),
    ("min_face", float("nan"), "finite"), ("fallback", "pad", "'upper_centre', 'centre'"), ("margin", "wide", "expected float"),
])
def test_bad_options_are_refused_by_their_declarations(option, value, says):
    (problem,) = option_problems(value, face_crop.plugin_options()[option])
    assert says in problem


def test_default_options_pass_their_declarations():
    assert all(option_problems(option.default, option) == [] for option in face_crop.plugin_options().values())


def test_non_image_input_is_refused():
    step = frame_step()
    with pytest.raises(PluginError, match="uint8"):
        step(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(PluginError, match="shape"):
        step(np.zeros((20, 20), np.uint8))


def test_missing_cascade_file_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path) + "/")
    with pytest.raises(PluginError, match="opencv-python-headless<5"):
        face_crop.preprocess(context())


def test_opencv_without_cascade_classifier_says_what_to_install(monkeypatch):
    monkeypatch.delattr(cv2, "CascadeClassifier")
    with pytest.raises(PluginError, match="opencv-python-headless<5"):
        face_crop.preprocess(context())


def test_registers_as_a_pluggy_plugin():
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(face_crop, name="face_crop")
    assert manager.hook.plugin_options()["fallback"].default == "upper_centre"
    assert isinstance(manager.hook.preprocess(context=context()), Preprocessing)
