"""Write the synthetic video behind docs/predict_example.png: whole frame sequences of a synthetic
FePh-format dataset, one after another, as an MJPG .avi.

    python -m feph_finetune synth /tmp/newsigners --images 80 --seed 99
    python docs/predict_example.py /tmp/newsigners /tmp/signer.avi --sequences 4 --fps 5
    python -m feph_finetune predict RUN_DIR /tmp/signer.avi --smooth 3 --plot docs/predict_example.png
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import cv2

from feph_finetune import DatasetError, read_image
from feph_finetune.predict.inputs import natural_key

FRAME_NAME = r"^(.+?)\.avi_pid\d+_fn(\d+)-\d+(\.png)?$"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a folder written by `python -m feph_finetune synth`")
    parser.add_argument("out", type=Path, help="the video to write (.avi)")
    parser.add_argument("--sequences", type=int, default=4, help="how many of the longest sequences")
    parser.add_argument("--fps", type=float, default=5)
    args = parser.parse_args()

    sequences: dict[str, list[Path]] = defaultdict(list)
    for path in (args.root).rglob("*.png"):
        match = re.match(FRAME_NAME, path.name)
        if match:
            sequences[match.group(1)].append(path)
    chosen = sorted(sequences, key=lambda name: (-len(sequences[name]), name))[: args.sequences]
    writer = None
    for name in chosen:
        for path in sorted(sequences[name], key=lambda path: natural_key(path.name)):
            try:
                frame = read_image(path)
            except DatasetError:  # the synthetic release has undecodable files on purpose
                continue
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"MJPG"), args.fps, (width, height))
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        print(f"{name}: {len(sequences[name])} frames")
    writer.release()


if __name__ == "__main__":
    main()
