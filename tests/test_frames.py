"""The crop cache: computed once per image content and settings, corrupt entries recomputed."""

from __future__ import annotations

import numpy as np

from feph_finetune import FrameResult, Preprocessing
from feph_finetune_plugins.feph import read_release as load_dataset
from feph_finetune.data.frames import CropCache, FrameStep, compute_frames


class CountingCrop:
    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        height, width = image.shape[:2]
        side = min(height, width)
        return FrameResult(image[:side, :side], fallback="no_face" if self.calls % 2 else None)


def test_second_pass_runs_no_detection_and_corrupt_entries_are_recomputed(synthetic_feph, tmp_path):
    dataset = load_dataset(synthetic_feph)
    crop = CountingCrop()
    steps = [FrameStep("counting", Preprocessing(frame=crop, cache_key="v1"))]
    cache = CropCache(tmp_path)
    first = compute_frames(dataset, steps, 32, cache)
    assert crop.calls == first.computed == len(dataset.samples)
    assert first.images.dtype == np.uint8 and first.images.shape == (len(dataset.samples), 32, 32, 3)

    second = compute_frames(dataset, steps, 32, cache)
    assert crop.calls == len(dataset.samples) and second.computed == 0
    assert np.array_equal(first.images, second.images) and first.fallbacks == second.fallbacks

    entries = sorted(cache.root.rglob("*.npz"))
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # truncated
    third = compute_frames(dataset, steps, 32, cache)
    assert third.computed == 1 and np.array_equal(third.images, first.images)

    other_settings = [FrameStep("counting", Preprocessing(frame=crop, cache_key="v2"))]
    assert compute_frames(dataset, other_settings, 32, cache).computed == len(dataset.samples)
