"""Frames per second of ``predict``: MobileNet-v1 (alpha 1.0) at 224 px on a synthetic video.

Writes, in a temporary folder, a synthetic FePh-format dataset, an MJPG video of its frames (the
PHOENIX frame size, 210 x 260, at 25 frames/s) and a model bundle (MobileNet with random weights:
speed does not depend on the weights; face crop + the normalize plugin at its default mode). Then it times,
each on the whole video and best of ``--repeats``:

1. decoding the video alone;
2. decoding + the frame steps (Haar face detection and crop, resize);
3. the whole ``predict`` pipeline (decoding, frame steps, normalisation, model), as the command
   runs it, without writing rows; and the same without preparing the next batch in a thread;
4. the model alone on ready batches (the model's share of 3);
5. memory: the process's peak resident size after predicting the video, then after predicting a
   video four times as long (flat memory: the second adds next to nothing).

    python bench/predict.py                    # 300 frames, batch 32, alpha 1.0, 224 px
    python bench/predict.py --quick            # 40 frames, alpha 0.25, 64 px: a smoke test
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np


def synthetic_video(folder: Path, frames: int, fps: float) -> Path:
    from feph_finetune import read_image
    from feph_finetune.demo.synth import write_synthetic_dataset

    write_synthetic_dataset(folder / "FePh", images=min(frames, 120), seed=0)
    images = []
    for path in sorted((folder / "FePh").rglob("*.png")):
        try:
            images.append(read_image(path))
        except Exception:  # the synthetic release has a few undecodable files on purpose
            continue
    size = images[0].shape[:2]
    images = [image for image in images if image.shape[:2] == size]
    video = folder / "signer.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    for index in range(frames):
        writer.write(cv2.cvtColor(images[index % len(images)], cv2.COLOR_RGB2BGR))
    writer.release()
    return video


def mobilenet_bundle(folder: Path, size: int, alpha: float) -> Path:
    import keras

    from feph_finetune.api import CLASSES, RunContext
    from feph_finetune.predict.bundle import write_bundle
    from feph_finetune.plugins import get_plugins

    base = keras.applications.MobileNet(input_shape=(size, size, 3), alpha=alpha, weights=None, include_top=False, pooling="avg")
    model = keras.Model(base.input, keras.layers.Dense(len(CLASSES), activation="softmax")(base.output))
    plugins = get_plugins()
    options = {name: plugins.option_defaults(name) for name in ("face_crop", "normalize")}
    config = {"input_size": size, "options": options}
    run = SimpleNamespace(id="bench-predict", experiment="bench", label="bench", phase="exploratory", fold=None, seed=0, config=config)
    steps = []
    for name in ("face_crop", "normalize"):
        context = RunContext(run_id=run.id, experiment="bench", phase="exploratory", fold=None, seed=0, input_size=size, config=config, options=options[name])
        steps.append((name, plugins.call(name, "preprocess", context=context)))
    return write_bundle(folder / "bundle", run, steps, model, {"benchmark": True})


def best_of(repeats: int, function) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.size, args.alpha, args.repeats = 40, 64, 0.25, 1

    import keras
    import tensorflow as tf

    from feph_finetune.predict.bundle import load_model, open_bundle
    from feph_finetune.data.frames import apply_steps
    from feph_finetune.plugins import get_plugins
    from feph_finetune.predict.apply import Predictor, Settings
    from feph_finetune.predict.inputs import open_input

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        video = synthetic_video(folder, args.frames, fps=25)
        bundle = open_bundle(mobilenet_bundle(folder, args.size, args.alpha), get_plugins())
        load_model(bundle)
        video_input = open_input(str(video))
        predictor = Predictor(bundle, Settings(batch_size=args.batch_size))
        predictor.run(open_input(str(video), 1), None)  # warm-up: traces the prediction function

        decode = best_of(args.repeats, lambda: sum(1 for _ in video_input.frames()))
        steps = best_of(args.repeats, lambda: [apply_steps(frame.image, bundle.frame_steps, bundle.input_size) for frame in video_input.frames()])
        whole = best_of(args.repeats, lambda: predictor.run(video_input, None))
        serial = Predictor(bundle, Settings(batch_size=args.batch_size, prefetch=False))
        whole_serial = best_of(args.repeats, lambda: serial.run(video_input, None))
        ready = np.random.default_rng(0).integers(0, 256, (args.batch_size, args.size, args.size, 3), dtype=np.uint8)
        batches = -(-args.frames // args.batch_size)
        model = best_of(args.repeats, lambda: [predictor.probabilities(ready) for _ in range(batches)])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        longer = open_input(str(synthetic_video(folder / "long", 4 * args.frames, fps=25)))
        predictor.run(longer, None)
        peak_long = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    frames = args.frames
    print(f"predict: MobileNet alpha {args.alpha} at {args.size} px, batch {args.batch_size}, {frames} frames of 210x260 MJPG video")
    print(f"machine: {platform.processor() or platform.machine()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, OpenCV {cv2.__version__}")
    for label, seconds in (("decode", decode), ("decode + face crop + resize", steps), ("whole predict pipeline", whole), ("the same without prefetching", whole_serial), ("model alone (ready batches)", model)):
        print(f"  {label:30s} {frames / seconds:8.1f} frames/s  ({seconds:.2f} s)")
    print(f"  peak memory: {peak:.0f} MB after {frames} frames, {peak_long:.0f} MB after {4 * frames} more")


if __name__ == "__main__":
    main()
