"""``predict`` pads a short batch only to the next power of two (at least 32), not to
``--batch-size``: its memory follows the frames there are (3 images with ``--batch-size 4096``, a
batch of 32), and the compiled prediction function still sees only a few shapes (the powers of two
from 32 up to the batch size)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from feph_finetune.predict.apply import Predictor, Settings, padded_size

CLASSES = ("a", "b", "c")


class RecordingModel:
    """A stand-in model: uniform probabilities; remembers each batch's length."""

    def __init__(self):
        self.batches: list[int] = []

    def predict_on_batch(self, x):
        self.batches.append(len(x))
        return np.full((len(x), len(CLASSES)), 1 / len(CLASSES), dtype=np.float32)


@pytest.mark.parametrize("count, batch_size, padded", [(1, 32, 32), (3, 32, 32), (17, 32, 32), (32, 32, 32), (3, 3, 3), (5, 6, 6),
                                                      (3, 4096, 32), (33, 4096, 64), (100, 4096, 128), (100, 64, 64)])
def test_a_short_batch_is_padded_to_the_next_power_of_two_from_32_at_most_the_batch_size(count, batch_size, padded):
    assert padded_size(count, batch_size) == padded


def test_three_frames_with_a_large_batch_size_make_a_batch_of_32():
    model = RecordingModel()
    predictor = Predictor(SimpleNamespace(model=model, classes=CLASSES, frame_steps=[], batch_steps=[], input_size=32, folder="bundle"),
                          Settings(batch_size=4096))
    probabilities = predictor.probabilities(np.zeros((3, 32, 32, 3), dtype=np.uint8))
    assert model.batches == [32] and probabilities.shape == (3, len(CLASSES))


def test_the_shapes_stay_few_whatever_the_input_lengths():
    shapes = {padded_size(count, 4096) for count in range(1, 4097)}
    assert shapes == {32, 64, 128, 256, 512, 1024, 2048, 4096}
