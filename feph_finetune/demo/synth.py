"""A synthetic dataset in the FePh release format, for demos and tests without the real data.

The real FePh release may not be redistributed, so this module draws a look-alike: signers'
upper bodies in front of a studio background, each with a drawn face whose expression carries the
class (brows, eye openness, mouth shape, nose wrinkle), written as RGBA PNGs with a labels CSV that
has the release's columns, file naming and its defects (rows to drop, missing and unreadable
files, IDs without ``.png``). Faces are shaded like real ones (dark eye sockets and brows over
lighter cheeks, a light nose bridge) so that OpenCV's Haar cascade finds most of them: cropping
matters as it does on the real data.

``domain="generic"`` draws face close-ups in another style (illustrated: contour lines, bright eyes,
no body) with the same kind of expression cues: a demo base model pre-trained on them transfers
partially to the ``feph`` domain, as an AffectNet model does to FePh.

Everything is drawn with numpy and OpenCV from one ``numpy.random.Generator``: a seed gives the
same bytes on every run.
"""

from __future__ import annotations

import csv
import datetime as dt
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from feph_finetune.api import CLASSES
from feph_finetune.results.store import atomic_folder, atomic_path

#: The release's label codes for the seven classes (code 7 is "none of the above").
LABEL_CODES: dict[str, int] = {
    "neutral": 0, "anger": 1, "disgust": 2, "fear": 3, "happy": 4, "sad": 5, "surprise": 6,
}
NONE_CODE = 7

#: Training-set class shares of the paper's Table 1.
TABLE1_SHARES: dict[str, float] = {
    "anger": 0.1830, "disgust": 0.0772, "fear": 0.1243, "happy": 0.0792,
    "neutral": 0.0758, "sad": 0.1436, "surprise": 0.3185,
}

CSV_COLUMNS = ("Index", "External ID", "Facial_label", "Gender")
LABELS_FILE = "FePh_labels.csv"
IMAGES_DIR = "FePh_images"

DOMAINS = ("feph", "generic")

#: Defective rows of the release, with their share of the kept images (at least one each from
#: ``MIN_IMAGES_FOR_EVERY_DEFECT`` kept images on).
BAD_ROW_SHARES: dict[str, float] = {
    "none_label": 0.08,          # label 7, "none of the above"
    "multi_label": 0.06,         # e.g. "36"
    "empty_label": 0.03,         # no label: face not visible
    "face_not_visible": 0.02,    # the text "Face_not_visible"
    "unknown_label": 0.01,       # a code outside 0-7
    "missing_file": 0.01,        # the row names a file that is not there
    "unreadable_file": 0.01,     # garbage bytes named .png
    "outside_root": 0.005,       # "../<name>.png": a path outside the images folder
}
NO_EXTENSION_SHARE = 0.03        # valid rows whose External ID lacks ".png"
MIN_IMAGES_FOR_EVERY_DEFECT = 50

FEPH_FRAME_SIZE = (210, 260)     # W x H, as RGB-PHOENIX-Weather 2014 frames
GENERIC_FRAME_SIZE = (128, 128)
SUPERSAMPLE = 2                  # draw at twice the size, then downsample: anti-aliased edges
_SHIFT = 4                       # fixed-point bits for OpenCV drawing calls
WEAK_CUE_SHARE = 0.15            # frames whose expression is faint (ambiguous)


# --------------------------------------------------------------------------------------------
# Expressions


@dataclass(frozen=True)
class Expression:
    """The face's muscle settings; 0 / 1 values are neutral. Units are relative to the face."""

    brow_raise: float = 0.0      # -1 lowered ... +1 raised
    brow_tilt: float = 0.0       # -1 inner ends down (frown) ... +1 inner ends up (worry)
    eye_open: float = 1.0        # 0.4 squint ... 1.6 wide open
    mouth_open: float = 0.0      # 0 closed ... 1 wide open
    mouth_width: float = 1.0     # 0.7 pursed ... 1.4 stretched
    mouth_curve: float = 0.0     # -1 corners down ... +1 smile
    nose_wrinkle: float = 0.0    # 0 ... 1
    lip_raise: float = 0.0       # 0 ... 1, upper lip raised (one side more)

    def as_vector(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in _EXPRESSION_FIELDS], dtype=float)

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> "Expression":
        return cls(**{name: float(v) for name, v in zip(_EXPRESSION_FIELDS, vector)})


_EXPRESSION_FIELDS = tuple(Expression.__dataclass_fields__)
_EXPRESSION_LIMITS = np.array([
    (-1.2, 1.3), (-1.2, 1.2), (0.3, 1.8), (0.0, 1.1), (0.65, 1.5), (-1.1, 1.1), (0.0, 1.0), (0.0, 1.0),
])

#: The full-strength expression of each class (Ekman's action units, much simplified).
CLASS_EXPRESSIONS: dict[str, Expression] = {
    "neutral": Expression(),
    "anger": Expression(brow_raise=-0.9, brow_tilt=-1.0, eye_open=0.6, mouth_open=0.05,
                        mouth_width=0.85, mouth_curve=-0.35, nose_wrinkle=0.3),
    "disgust": Expression(brow_raise=-0.45, brow_tilt=-0.35, eye_open=0.7, mouth_open=0.2,
                          mouth_width=0.95, mouth_curve=-0.5, nose_wrinkle=1.0, lip_raise=1.0),
    "fear": Expression(brow_raise=0.75, brow_tilt=0.85, eye_open=1.5, mouth_open=0.45,
                       mouth_width=1.3, mouth_curve=-0.45),
    "happy": Expression(brow_raise=0.1, eye_open=0.7, mouth_open=0.35, mouth_width=1.35,
                        mouth_curve=1.0),
    "sad": Expression(brow_raise=0.05, brow_tilt=0.95, eye_open=0.75, mouth_width=0.9,
                      mouth_curve=-0.95),
    "surprise": Expression(brow_raise=1.1, brow_tilt=0.2, eye_open=1.6, mouth_open=1.0,
                           mouth_width=0.8),
}


def blend_expression(label: str, strength: float, bias: np.ndarray, rng: np.random.Generator,
                     mouthing: bool) -> Expression:
    """The expression of one frame: the class's cue at ``strength``, the signer's resting face
    (``bias``), small noise, and sign-language mouthing that opens the mouth whatever the class."""
    neutral = CLASS_EXPRESSIONS["neutral"].as_vector()
    vector = neutral + strength * (CLASS_EXPRESSIONS[label].as_vector() - neutral) + bias
    vector += rng.normal(0.0, 0.07, vector.shape)
    if mouthing:
        index = _EXPRESSION_FIELDS.index
        vector[index("mouth_open")] += rng.uniform(0.15, 0.5)
        vector[index("mouth_width")] += rng.uniform(-0.2, 0.1)
    return Expression.from_vector(np.clip(vector, _EXPRESSION_LIMITS[:, 0], _EXPRESSION_LIMITS[:, 1]))


# --------------------------------------------------------------------------------------------
# Signers, sequences and frames


@dataclass(frozen=True)
class Signer:
    """Everything that stays the same across a signer's frames: looks, framing and resting face."""

    gender: str
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_style: str                     # "short", "long" or "cropped"
    iris: tuple[float, float, float]
    clothes: tuple[float, float, float]
    background: tuple[tuple[float, float, float], tuple[float, float, float]]  # top, bottom
    head_x: float                       # fraction of the frame width
    head_y: float                       # fraction of the frame height
    face_half_width: float              # fraction of the frame width
    resting_face: np.ndarray            # added to every expression vector
    recordings: tuple[str, ...]         # "07January_2010_Thursday_tagesschau" ...


@dataclass(frozen=True)
class Frame:
    """One image to draw and one CSV row: what it shows and how its row is labelled."""

    signer: int
    recording: str
    sequence: int
    number: int
    label: str | None          # the class drawn; None draws a hidden face
    strength: float
    pose: tuple[float, float, float, float]   # dx, dy (face widths), roll (degrees), yaw (-1..1)
    kind: str = "valid"        # "valid" or a key of BAD_ROW_SHARES
    label_text: str = ""

    @property
    def file_name(self) -> str:
        return f"{self.recording}_default-{self.sequence}.avi_pid0_fn{self.number:06d}-0.png"


_SKIN_TONES = [(238, 204, 178), (226, 184, 152), (205, 160, 124), (178, 128, 94), (140, 96, 68),
               (104, 72, 52)]
_HAIR_COLOURS = [(30, 24, 20), (62, 42, 28), (110, 76, 44), (170, 130, 80), (205, 175, 120),
                 (120, 120, 118)]
_IRIS_COLOURS = [(60, 40, 25), (90, 60, 30), (60, 90, 120), (70, 100, 70)]
_CLOTHES = [(25, 30, 45), (20, 20, 22), (55, 55, 60), (80, 25, 35), (25, 55, 40), (40, 45, 90)]
_STUDIO_BACKGROUNDS = [((150, 160, 175), (95, 105, 125)), ((185, 185, 180), (120, 120, 118)),
                       ((120, 140, 170), (60, 80, 115)), ((200, 190, 170), (140, 130, 115))]
_SHOWS = ("tagesschau", "heute")


def _jitter_colour(colour, rng: np.random.Generator, spread: float) -> tuple[float, float, float]:
    factor = rng.uniform(1 - spread, 1 + spread) * rng.uniform(1 - spread / 3, 1 + spread / 3, 3)
    return tuple(float(c) for c in np.clip(np.array(colour) * factor, 0, 255))


def _recording_names(count: int, rng: np.random.Generator, taken: set[str]) -> tuple[str, ...]:
    """Invented broadcast dates and shows; one date+show belongs to exactly one signer."""
    names: list[str] = []
    while len(names) < count:
        day = dt.date(2009, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3 * 365)))
        name = f"{day.day:02d}{day.strftime('%B')}_{day.year}_{day.strftime('%A')}_{_SHOWS[rng.integers(0, 2)]}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    return tuple(names)


def make_signers(count: int, domain: str, rng: np.random.Generator) -> list[Signer]:
    """Draw ``count`` distinct signers (people, for the generic domain)."""
    taken: set[str] = set()
    signers = []
    for index in range(count):
        generic = domain == "generic"
        background = _STUDIO_BACKGROUNDS[rng.integers(0, len(_STUDIO_BACKGROUNDS))]
        if generic:   # flat pastel backdrops
            pastel = tuple(float(v) for v in rng.uniform(170, 245, 3))
            background = (pastel, pastel)
        signers.append(Signer(
            gender="Female" if index % 2 == 0 else "Male",
            skin=_jitter_colour(_SKIN_TONES[rng.integers(0, len(_SKIN_TONES))], rng, 0.06),
            hair=_jitter_colour(_HAIR_COLOURS[rng.integers(0, len(_HAIR_COLOURS))], rng, 0.1),
            hair_style=("long", "short", "cropped")[rng.choice(3, p=(0.4, 0.45, 0.15))],
            iris=_IRIS_COLOURS[rng.integers(0, len(_IRIS_COLOURS))],
            clothes=_jitter_colour(_CLOTHES[rng.integers(0, len(_CLOTHES))], rng, 0.15),
            background=(_jitter_colour(background[0], rng, 0.08), _jitter_colour(background[1], rng, 0.08)),
            head_x=rng.uniform(0.44, 0.56) if not generic else rng.uniform(0.46, 0.54),
            head_y=rng.uniform(0.27, 0.34) if not generic else rng.uniform(0.5, 0.56),
            face_half_width=rng.uniform(0.12, 0.15) if not generic else rng.uniform(0.3, 0.38),
            resting_face=rng.normal(0.0, 0.08, len(_EXPRESSION_FIELDS)),
            recordings=_recording_names(int(rng.integers(1, 3)), rng, taken),
        ))
    return signers


def signer_count(images: int, domain: str) -> int:
    """PHOENIX has nine signers; a generic face set has many more people."""
    if domain == "generic":
        return int(np.clip(images // 10, 3, 60))
    return int(np.clip(images // 25, 3, 9))


def class_counts(images: int, domain: str) -> dict[str, int]:
    """How many kept images of each class: Table 1's shares (feph) or balanced (generic),
    rounded by largest remainder so that they sum to ``images``."""
    shares = TABLE1_SHARES if domain == "feph" else {name: 1 / len(CLASSES) for name in CLASSES}
    exact = {name: images * shares[name] for name in CLASSES}
    counts = {name: int(np.floor(value)) for name, value in exact.items()}
    by_remainder = sorted(CLASSES, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[: images - sum(counts.values())]:
        counts[name] += 1
    return counts


def bad_row_counts(images: int) -> dict[str, int]:
    """How many defective rows of each kind go with ``images`` kept images."""
    least = 1 if images >= MIN_IMAGES_FOR_EVERY_DEFECT else 0
    return {kind: max(least, int(round(images * share))) for kind, share in BAD_ROW_SHARES.items()}


def _sequence_pose(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.normal(0, 0.12), rng.normal(0, 0.08), rng.normal(0, 5.0), rng.normal(0, 0.25)])


def _frame_pose(base: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float, float]:
    pose = base + np.array([rng.normal(0, 0.04), rng.normal(0, 0.03), rng.normal(0, 1.5), rng.normal(0, 0.06)])
    pose[2] = np.clip(pose[2], -14, 14)
    pose[3] = np.clip(pose[3], -0.6, 0.6)
    return tuple(float(v) for v in pose)


def _frame_strength(onset: float, peak: float, rng: np.random.Generator) -> float:
    """Cue strength of one frame: the sequence's peak reached after its onset, or a weak frame."""
    if rng.random() < WEAK_CUE_SHARE:
        return float(rng.uniform(0.1, 0.35))
    return float(np.clip(peak * onset + rng.normal(0, 0.05), 0.1, 1.0))


def plan_frames(counts: dict[str, int], signers: list[Signer], rng: np.random.Generator) -> list[Frame]:
    """Group the kept images into sequences of consecutive frames of one signer.

    A sequence mostly shows one class; some end in a second class, as a signer's face changes
    within a sentence. The onset of each sequence is weaker than its peak.
    """
    remaining = dict(counts)
    next_sequence = {recording: 1 for signer in signers for recording in signer.recordings}
    frames: list[Frame] = []
    while sum(remaining.values()) > 0:
        signer_index = int(rng.integers(0, len(signers)))
        recording = signers[signer_index].recordings[rng.integers(0, len(signers[signer_index].recordings))]
        sequence = next_sequence[recording]
        next_sequence[recording] += 1
        labels = _sequence_labels(remaining, rng)
        first, peak, base_pose = int(rng.integers(10, 160)), rng.uniform(0.6, 1.0), _sequence_pose(rng)
        for offset, label in enumerate(labels):
            onset = min(1.0, 0.55 + 0.25 * offset)
            frames.append(Frame(signer_index, recording, sequence, first + offset, label,
                                _frame_strength(onset, peak, rng), _frame_pose(base_pose, rng)))
    return frames


def _sequence_labels(remaining: dict[str, int], rng: np.random.Generator) -> list[str]:
    """Take the labels of one sequence from the remaining counts (and decrement them)."""
    def take(n_wanted: int, exclude: str | None = None) -> list[str]:
        names = [name for name in CLASSES if remaining[name] > 0 and name != exclude]
        if not names:
            return []
        weights = np.array([remaining[name] for name in names], dtype=float)
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        n = min(n_wanted, remaining[name])
        remaining[name] -= n
        return [name] * n

    labels = take(int(rng.integers(3, 9)))
    if len(labels) >= 4 and rng.random() < 0.2:
        labels += take(int(rng.integers(1, 3)), exclude=labels[0])
    return labels


def plan_bad_frames(frames: list[Frame], bad_counts: dict[str, int], rng: np.random.Generator) -> list[Frame]:
    """Defective rows, added as extra frames at the end of existing sequences.

    Label defects (7, multi, empty, unknown) get a drawn image; file defects get a valid label.
    """
    last_frame: dict[tuple[str, int], Frame] = {}
    for frame in frames:
        key = (frame.recording, frame.sequence)
        if key not in last_frame or frame.number > last_frame[key].number:
            last_frame[key] = frame
    keys = sorted(last_frame)
    bad: list[Frame] = []
    for kind, n in bad_counts.items():
        for _ in range(n):
            key = keys[rng.integers(0, len(keys))]
            template = last_frame[key]
            label, text = _bad_row_label(kind, rng)
            frame = replace(template, number=template.number + 1, label=label, kind=kind, label_text=text,
                            strength=float(rng.uniform(0.3, 0.9)))
            last_frame[key] = frame
            bad.append(frame)
    return bad


def _bad_row_label(kind: str, rng: np.random.Generator) -> tuple[str | None, str]:
    """The class drawn for a defective row and the text of its ``Facial_label`` cell."""
    drawn = CLASSES[rng.integers(0, len(CLASSES))]
    if kind == "none_label":
        return drawn, str(NONE_CODE)
    if kind == "multi_label":
        first, second = sorted(rng.choice(len(CLASSES), size=2, replace=False))
        return CLASSES[first], f"{LABEL_CODES[CLASSES[first]]}{LABEL_CODES[CLASSES[second]]}"
    if kind == "empty_label":
        return None, ""
    if kind == "face_not_visible":
        return None, "Face_not_visible"
    if kind == "unknown_label":
        return drawn, str(int(rng.integers(8, 10)))
    return drawn, str(LABEL_CODES[drawn])   # file defects keep a valid label


# --------------------------------------------------------------------------------------------
# Drawing


class _Pen:
    """Draws on a canvas in a face's own coordinates: x right, y down, in units of the face's
    half-width, centred on the face and turned with the head (roll, and a shift for yaw)."""

    def __init__(self, canvas: np.ndarray, centre: tuple[float, float], half_width: float,
                 roll: float = 0.0, yaw: float = 0.0):
        self.canvas = canvas
        self.cx, self.cy = centre
        self.unit = half_width
        self.roll = roll
        self.yaw = yaw
        self._cos, self._sin = np.cos(np.radians(roll)), np.sin(np.radians(roll))

    def point(self, x: float, y: float, depth: float = 1.0) -> tuple[float, float]:
        """Canvas position of a face point; ``depth`` scales the yaw shift (features move, the
        outline less)."""
        x = x + 0.22 * self.yaw * depth
        return (self.cx + self.unit * (x * self._cos - y * self._sin),
                self.cy + self.unit * (x * self._sin + y * self._cos))

    def _fixed(self, value: float) -> int:
        return int(round(value * (1 << _SHIFT)))

    def ellipse(self, x, y, rx, ry, colour, thickness: float = -1, angle: float = 0.0,
                arc: tuple[float, float] = (0, 360), depth: float = 1.0) -> None:
        px, py = self.point(x, y, depth)
        cv2.ellipse(self.canvas, (self._fixed(px), self._fixed(py)),
                    (self._fixed(max(rx * self.unit, 0.5)), self._fixed(max(ry * self.unit, 0.5))),
                    angle + self.roll, arc[0], arc[1], _colour(colour), self._thickness(thickness),
                    cv2.LINE_AA, _SHIFT)

    def polyline(self, points, colour, thickness: float, closed: bool = False, depth: float = 1.0) -> None:
        cv2.polylines(self.canvas, [self._points(points, depth)], closed, _colour(colour),
                      self._thickness(thickness), cv2.LINE_AA, _SHIFT)

    def polygon(self, points, colour, depth: float = 1.0) -> None:
        cv2.fillPoly(self.canvas, [self._points(points, depth)], _colour(colour), cv2.LINE_AA, _SHIFT)

    def _points(self, points, depth: float) -> np.ndarray:
        return np.array([[self._fixed(c) for c in self.point(x, y, depth)] for x, y in points], dtype=np.int32)

    def _thickness(self, thickness: float) -> int:
        return -1 if thickness < 0 else max(1, int(round(thickness * self.unit)))

    def box(self, margin: float) -> tuple[int, int, int, int]:
        """Canvas box (x0, y0, x1, y1) around the face ellipse plus ``margin`` face units."""
        h, w = self.canvas.shape[:2]
        reach = (1.3 + margin) * self.unit
        return (max(0, int(self.cx - reach)), max(0, int(self.cy - reach)),
                min(w, int(self.cx + reach)), min(h, int(self.cy + reach)))


def _colour(colour) -> tuple[float, float, float]:
    """A colour for OpenCV's drawing calls, clipped to 0-255 (canvases here are RGB: OpenCV draws
    whatever three numbers it is given)."""
    return tuple(float(np.clip(c, 0, 255)) for c in colour)


def _shade(colour, factor: float) -> tuple[float, float, float]:
    return tuple(float(np.clip(c * factor, 0, 255)) for c in colour)


def _mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple(float((1 - t) * x + t * y) for x, y in zip(a, b))


def _bezier(p0, p1, p2, steps: int = 12) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, steps)[:, None]
    points = (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(p1) + t ** 2 * np.array(p2)
    return [tuple(p) for p in points]


def _vertical_gradient(size: tuple[int, int], top, bottom) -> np.ndarray:
    w, h = size
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return ((1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)) * np.ones((1, w, 1), np.float32)


@dataclass(frozen=True)
class Style:
    """How a domain renders the same face: the feph domain like a photograph, the generic one
    like an illustration (contour lines, brighter eyes) over the same shading."""

    outline: tuple[float, float, float] | None = None   # contour of the face and the lower eyelids
    sclera: tuple[float, float, float] | None = None    # None: a grey mixed from the skin
    brow: tuple[float, float, float] | None = None      # None: darker than the hair


PHOTO = Style()
ILLUSTRATION = Style(outline=(45, 32, 30), sclera=(228, 226, 220), brow=(45, 32, 28))


def draw_face_base(pen: _Pen, skin, hair, hair_style: str) -> None:
    """Head, ears and hair behind the face, then the skin with its shading: the eye sockets are
    darker and the nose bridge and cheeks lighter, the contrasts Haar features look for."""
    if hair_style == "long":
        pen.polygon([(-1.2, -0.6), (1.2, -0.6), (1.35, 1.7), (-1.35, 1.7)], _shade(hair, 0.9), depth=0)
    pen.ellipse(0, -0.35, 1.14, 1.12, hair, depth=0)
    for side in (-1, 1):
        pen.ellipse(side * 1.0, -0.05, 0.16, 0.26, _shade(skin, 0.85), depth=0.3)
    pen.ellipse(0, 0, 1.0, 1.3, _shade(skin, 0.8), depth=0.2)
    pen.ellipse(0, -0.05, 0.86, 1.12, skin, depth=0.5)
    for side in (-1, 1):
        pen.ellipse(side * 0.38, -0.2, 0.3, 0.2, _shade(skin, 0.68))          # eye socket
        pen.ellipse(side * 0.45, 0.3, 0.25, 0.2, _shade(skin, 1.06))          # cheek
    pen.polygon([(-0.09, -0.3), (0.09, -0.3), (0.13, 0.3), (-0.13, 0.3)], _shade(skin, 1.1))  # nose bridge
    pen.ellipse(0, -0.62, 0.5, 0.22, _shade(skin, 1.05))                      # forehead


def draw_hair_front(pen: _Pen, hair, hair_style: str) -> None:
    """The hair over the top of the forehead."""
    depth = 0.3
    if hair_style == "cropped":
        pen.ellipse(0, -0.98, 0.96, 0.4, hair, arc=(180, 360), depth=depth)
    else:
        pen.ellipse(0, -0.88, 1.04, 0.56, hair, arc=(180, 360), depth=depth)


def draw_brows(pen: _Pen, expression: Expression, colour, thickness: float) -> None:
    """Arched brows: raised for surprise and fear, lowered with inner ends down for anger,
    inner ends up for sadness and fear."""
    base = -0.45 - 0.14 * expression.brow_raise
    for side in (-1, 1):
        inner = (side * 0.12, base - 0.1 * expression.brow_tilt + 0.04)
        outer = (side * 0.64, base + 0.05 + 0.03 * expression.brow_tilt)
        middle = (side * 0.38, base - 0.07 - 0.02 * max(expression.brow_raise, 0))
        pen.polyline(_bezier(inner, middle, outer, 8), colour, thickness)


def draw_eyes(pen: _Pen, expression: Expression, skin, iris, style: Style) -> None:
    """Eyes whose opening follows ``eye_open``: slits for anger and smiles, wide for fear and
    surprise. The sclera is kept grey so the eye region stays darker than the cheeks."""
    half_height = 0.085 * expression.eye_open
    sclera = style.sclera or _mix(skin, (200, 195, 190), 0.55)
    for side in (-1, 1):
        x, y = side * 0.38, -0.17
        pen.ellipse(x, y, 0.19, half_height, sclera)
        iris_radius = min(0.085, half_height + 0.01)
        pen.ellipse(x, y, 0.085, iris_radius, iris)
        pen.ellipse(x, y, 0.04, min(0.04, iris_radius), (15, 12, 12))
        pen.ellipse(x, y, 0.2, half_height + 0.005, (40, 30, 28), thickness=0.045, arc=(180, 360))
        lower_lid = style.outline or _shade(skin, 0.7)
        pen.ellipse(x, y, 0.2, half_height + 0.01, lower_lid, thickness=0.025, arc=(0, 180))


def draw_nose(pen: _Pen, expression: Expression, skin) -> None:
    """Nostrils and the wrinkles of disgust (and some of anger) beside the nose bridge."""
    for side in (-1, 1):
        pen.ellipse(side * 0.085, 0.36, 0.06, 0.035, _shade(skin, 0.45))
        pen.polyline(_bezier((side * 0.14, 0.12), (side * 0.21, 0.3), (side * 0.12, 0.4), 6),
                     _shade(skin, 0.78), 0.03)
    wrinkle = expression.nose_wrinkle
    if wrinkle > 0.15:
        colour = _shade(skin, 1.0 - 0.4 * wrinkle)
        for side in (-1, 1):
            for row in range(3):
                y = -0.12 + 0.07 * row
                pen.polyline([(side * 0.05, y), (side * 0.17, y + 0.03)], colour, 0.02 + 0.02 * wrinkle)


def draw_folds(pen: _Pen, expression: Expression, skin) -> None:
    """Nasolabial folds, deeper with a smile or a raised upper lip; forehead lines with raised brows."""
    depth = max(expression.mouth_curve, 0) + 0.8 * expression.lip_raise
    if depth > 0.2:
        colour = _shade(skin, 1.0 - 0.25 * min(depth, 1.3))
        for side in (-1, 1):
            corner_x = side * (0.32 * expression.mouth_width + 0.05)
            pen.polyline(_bezier((side * 0.2, 0.3), (side * 0.42, 0.45), (corner_x, 0.72), 8), colour, 0.03)
    if expression.brow_raise > 0.45:
        colour = _shade(skin, 1.0 - 0.2 * expression.brow_raise)
        for row in range(2):
            y = -0.8 + 0.09 * row
            pen.polyline(_bezier((-0.4, y + 0.02), (0, y - 0.03), (0.4, y + 0.02), 8), colour, 0.025)


def draw_mouth(pen: _Pen, expression: Expression, skin) -> None:
    """Lips and, when open, the dark mouth with teeth; the corners rise with ``mouth_curve``."""
    half_width = 0.27 * expression.mouth_width
    y = 0.7
    corner_y = y - 0.12 * expression.mouth_curve
    opening = 0.3 * expression.mouth_open
    raise_left, raise_right = 0.1 * expression.lip_raise, 0.04 * expression.lip_raise
    upper_mid = y - 0.02 - 0.5 * (raise_left + raise_right) - 0.25 * opening
    smile_drop = 0.1 * max(expression.mouth_curve, 0) if opening > 0.03 else 0.0   # open smiles sag below
    lower_mid = y + 0.03 + 0.75 * opening + smile_drop
    left, right = (-half_width, corner_y - raise_left * 0.5), (half_width, corner_y - raise_right * 0.5)
    upper = _bezier(left, (0, 2 * upper_mid - corner_y), right)
    lower = _bezier(right, (0, 2 * lower_mid - corner_y), left)
    lip = _mix(skin, (150, 55, 60), 0.45)
    if opening > 0.02:
        pen.polygon(upper + lower, (55, 20, 25))
        if expression.mouth_curve > 0.3 or expression.lip_raise > 0.5:
            teeth_bottom = _bezier((half_width * 0.8, corner_y + 0.02), (0, upper_mid + 0.1),
                                   (-half_width * 0.8, corner_y + 0.02))
            pen.polygon(upper + teeth_bottom, (225, 220, 205))
        pen.polyline(upper + lower, lip, 0.05, closed=True)
    else:
        pen.polyline(upper, _shade(lip, 0.55), 0.055)
        lower_lip = _bezier((-half_width * 0.8, corner_y + 0.04), (0, y + 0.16), (half_width * 0.8, corner_y + 0.04))
        pen.polyline(lower_lip, lip, 0.04)


def draw_hand(pen: _Pen, x: float, y: float, skin, angle: float, size: float = 1.0) -> None:
    """A hand: palm and four fingers, in the face's units so that it scales with the signer."""
    pen.ellipse(x, y, 0.42 * size, 0.5 * size, _shade(skin, 0.95), angle=angle, depth=0)
    rotation = np.radians(angle)
    for finger in range(4):
        dx = (-0.27 + 0.18 * finger) * size
        tip = (x + dx * np.cos(rotation) + 0.85 * size * np.sin(rotation),
               y + dx * np.sin(rotation) - 0.85 * size * np.cos(rotation))
        base = (x + dx * np.cos(rotation), y + dx * np.sin(rotation))
        pen.polyline([base, tip], _shade(skin, 0.9), 0.15 * size, depth=0)


def _soften_skin(pen: _Pen) -> None:
    """Blur the shading inside the face into smooth gradients while its outline stays sharp."""
    x0, y0, x1, y1 = pen.box(0.1)
    roi = pen.canvas[y0:y1, x0:x1]
    mask = np.zeros(roi.shape[:2], np.float32)
    inner = _Pen(mask, (pen.cx - x0, pen.cy - y0), pen.unit, pen.roll, pen.yaw)
    inner.ellipse(0, 0, 0.97, 1.27, (1.0, 1.0, 1.0), depth=0.2)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.03 * pen.unit)[:, :, None]
    blurred = cv2.GaussianBlur(roi, (0, 0), 0.14 * pen.unit).astype(np.float32)
    roi[:] = np.clip(mask * blurred + (1 - mask) * roi, 0, 255).astype(np.uint8)


def draw_face(pen: _Pen, signer: Signer, expression: Expression | None, style: Style) -> None:
    """The whole head. ``expression`` None draws the face hidden behind both hands."""
    draw_face_base(pen, signer.skin, signer.hair, signer.hair_style)
    _soften_skin(pen)
    if style.outline is not None:
        pen.ellipse(0, 0, 1.0, 1.3, style.outline, thickness=0.03, depth=0.2)
    draw_hair_front(pen, signer.hair, signer.hair_style)
    if expression is None:
        for side in (-1, 1):
            draw_hand(pen, side * 0.35, 0.15, signer.skin, angle=-side * 15, size=1.15)
        return
    draw_brows(pen, expression, style.brow or _shade(signer.hair, 0.6), 0.08)
    draw_eyes(pen, expression, signer.skin, signer.iris, style)
    draw_folds(pen, expression, signer.skin)
    draw_nose(pen, expression, signer.skin)
    draw_mouth(pen, expression, signer.skin)


def draw_body(canvas: np.ndarray, pen: _Pen, signer: Signer, rng: np.random.Generator) -> None:
    """Neck, shoulders and torso under the head, in the signer's clothes."""
    pen.polygon([(-0.42, 0.8), (0.42, 0.8), (0.48, 2.1), (-0.48, 2.1)], _shade(signer.skin, 0.82), depth=0)
    width = rng.uniform(2.6, 3.0)
    pen.ellipse(0, 3.3, width, 1.5, signer.clothes, depth=0)
    pen.polygon([(-width, 3.3), (width, 3.3), (width + 0.3, 9), (-width - 0.3, 9)], signer.clothes, depth=0)
    pen.polygon([(-0.5, 1.85), (0.5, 1.85), (0, 2.5)], _shade(signer.skin, 0.8), depth=0)   # neckline


def render_frame(frame: Frame, signer: Signer, domain: str, rng: np.random.Generator) -> np.ndarray:
    """Draw one frame as uint8 RGB, at the domain's size."""
    generic = domain == "generic"
    width, height = GENERIC_FRAME_SIZE if generic else FEPH_FRAME_SIZE
    ss_w, ss_h = width * SUPERSAMPLE, height * SUPERSAMPLE
    canvas = _vertical_gradient((ss_w, ss_h), *signer.background)
    if not generic:
        mottle = rng.normal(0, 5, (ss_h // 16 + 1, ss_w // 16 + 1)).astype(np.float32)
        canvas += cv2.resize(mottle, (ss_w, ss_h), interpolation=cv2.INTER_CUBIC)[:, :, None]
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    dx, dy, roll, yaw = frame.pose
    unit = signer.face_half_width * ss_w * (1 + 0.04 * rng.normal())
    centre = (signer.head_x * ss_w + dx * unit, signer.head_y * ss_h + dy * unit)
    pen = _Pen(canvas, centre, unit, roll=roll if not generic else roll * 0.5, yaw=yaw if not generic else yaw * 0.5)
    if not generic:
        draw_body(canvas, _Pen(canvas, centre, unit), signer, rng)
    expression = None
    if frame.label is not None:
        expression = blend_expression(frame.label, frame.strength, signer.resting_face, rng,
                                      mouthing=not generic and rng.random() < 0.35)
    draw_face(pen, signer, expression, ILLUSTRATION if generic else PHOTO)
    if not generic:
        _draw_signing_hands(canvas, centre, unit, signer, rng)
    image = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return _exposure(image, rng) if generic else _camera(image, rng)


def _draw_signing_hands(canvas: np.ndarray, centre, unit: float, signer: Signer, rng: np.random.Generator) -> None:
    """Zero to two hands in front of the torso; now and then one rises to the chin."""
    pen = _Pen(canvas, centre, unit)
    for _ in range(int(rng.choice(3, p=(0.3, 0.4, 0.3)))):
        if rng.random() < 0.06:
            x, y = rng.uniform(-1.1, 1.1), rng.uniform(1.35, 1.7)
        else:
            x, y = rng.uniform(-2.2, 2.2), rng.uniform(2.3, 4.5)
        draw_hand(pen, x, y, signer.skin, angle=rng.uniform(-40, 40), size=rng.uniform(0.8, 1.0))


def _exposure(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and sharpness of a web image: some are soft or grainy."""
    result = image.astype(np.float32) * rng.uniform(0.85, 1.1) + rng.uniform(-15, 15)
    sigma = rng.uniform(0.0, 1.6)
    if sigma > 0.3:
        result = cv2.GaussianBlur(result, (0, 0), sigma)
    result += rng.normal(0, rng.uniform(0, 4), result.shape).astype(np.float32)
    return np.clip(result, 0, 255).astype(np.uint8)


def _camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Studio lighting from one side, exposure, a little blur and sensor noise."""
    h, w = image.shape[:2]
    side = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-0.18, 0.18)
    exposure = rng.uniform(0.8, 1.15)
    result = image.astype(np.float32) * (exposure + side)
    result = cv2.GaussianBlur(result, (0, 0), rng.uniform(0.5, 0.9))
    result += rng.normal(0, 2.5, result.shape).astype(np.float32)
    return np.clip(result, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Writing


def write_synthetic_dataset(out, images: int = 300, seed: int = 0, domain: str = "feph") -> dict[str, Any]:
    """Write a FePh-format dataset to ``out``: ``FePh_labels.csv`` and ``FePh_images/*.png``.

    ``images`` is the number of kept (valid, single-class) images; the feph domain adds the
    release's defective rows on top. Refuses an ``out`` that already holds a dataset, so that
    stale images never mix with new ones. Returns a summary: ``path``, ``domain``, ``seed``,
    ``kept``, ``rows``, ``per_class``, ``bad_rows``, ``no_extension``, ``signers``, ``sequences``.
    The images are drawn into a hidden folder beside ``FePh_images`` that is renamed into place
    when complete (:func:`~feph_finetune.results.store.atomic_folder`), then the labels file is
    written. Any failure or interrupt (an :exc:`OSError` of a full or read-only disk, Ctrl-C,
    SIGTERM turned into :exc:`KeyboardInterrupt`) removes what this call wrote, so that no half
    dataset is left to be read as a whole one or to block a rerun, and propagates.
    """
    if domain not in DOMAINS:
        raise ValueError(f"write_synthetic_dataset: domain must be one of {DOMAINS}, not {domain!r}")
    if images < 1:
        raise ValueError(f"write_synthetic_dataset: images must be at least 1, not {images}")
    root = Path(out)
    images_dir = root / IMAGES_DIR
    _refuse_existing(root, images_dir)
    created = [folder for folder in (*reversed(images_dir.parents), images_dir) if not folder.exists()]
    try:
        return _write_dataset(root, images_dir, images, seed, domain)
    except BaseException:  # an interrupt too: nothing half-written may stay
        _remove_partial(images_dir, created)
        raise


def _remove_partial(images_dir: Path, created: list[Path]) -> None:
    """Remove the images of a dataset whose writing failed (the folder held none before), and
    the folders created for it; what cannot be removed (a read-only disk) stays."""
    with suppress(OSError):
        for file in images_dir.iterdir() if images_dir.is_dir() else ():
            file.unlink()
    for folder in reversed(created):
        with suppress(OSError):
            folder.rmdir()


def _write_dataset(root: Path, images_dir: Path, images: int, seed: int, domain: str) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    signers = make_signers(signer_count(images, domain), domain, rng)
    frames = plan_frames(class_counts(images, domain), signers, rng)
    bad_counts = bad_row_counts(images) if domain == "feph" else {}
    frames += plan_bad_frames(frames, bad_counts, rng)
    frames.sort(key=lambda frame: frame.file_name)

    no_extension = _pick_no_extension(frames, rng) if domain == "feph" else set()
    with atomic_folder(images_dir) as staging:
        rows = [_write_frame(frame, signers, domain, staging, rng, frame.file_name in no_extension)
                for frame in frames]
    _write_labels(root / LABELS_FILE, rows)
    return {
        "path": str(root),
        "domain": domain,
        "seed": seed,
        "kept": sum(1 for frame in frames if frame.kind == "valid"),
        "rows": len(rows),
        "per_class": class_counts(images, domain),
        "bad_rows": bad_counts,
        "no_extension": len(no_extension),
        "signers": len(signers),
        "sequences": len({(frame.recording, frame.sequence) for frame in frames}),
    }


def _refuse_existing(root: Path, images_dir: Path) -> None:
    if (root / LABELS_FILE).exists() or (images_dir.is_dir() and any(images_dir.iterdir())):
        raise FileExistsError(f"write_synthetic_dataset: {root} already holds a dataset "
                              f"({LABELS_FILE} or a non-empty {IMAGES_DIR}/); choose an empty folder")


def _pick_no_extension(frames: list[Frame], rng: np.random.Generator) -> set[str]:
    valid = [frame.file_name for frame in frames if frame.kind == "valid"]
    n = max(1 if len(valid) >= MIN_IMAGES_FOR_EVERY_DEFECT else 0, int(round(len(valid) * NO_EXTENSION_SHARE)))
    return {valid[i] for i in rng.choice(len(valid), size=min(n, len(valid)), replace=False)}


def _write_frame(frame: Frame, signers: list[Signer], domain: str, images_dir: Path,
                 rng: np.random.Generator, strip_extension: bool) -> tuple[str, str, str]:
    """Write one frame's file (or its defect) and return its row: External ID, label, gender."""
    name = frame.file_name
    label_text = frame.label_text if frame.kind != "valid" else str(LABEL_CODES[frame.label])
    gender = signers[frame.signer].gender
    if frame.kind == "outside_root":
        return f"../{name}", label_text, gender
    if frame.kind == "unreadable_file":
        (images_dir / name).write_bytes(b"not a png\n" + rng.bytes(256))
        return name, label_text, gender
    image = render_frame(frame, signers[frame.signer], domain, rng)
    if frame.kind != "missing_file":
        _write_rgba_png(images_dir / name, image)
    return (name[: -len(".png")] if strip_extension else name), label_text, gender


def _write_rgba_png(path: Path, rgb: np.ndarray) -> None:
    """The release's PNGs carry an opaque alpha channel. Encoded here and written by Python, so
    that a full disk raises ENOSPC naming the file (``cv2.imwrite`` only returns False)."""
    encoded, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
    if not encoded:
        raise ValueError(f"write_synthetic_dataset: could not encode {path.name} as PNG")
    path.write_bytes(data.tobytes())


def _write_labels(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """Written last and atomically: a labels file means a complete dataset."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for index, (external_id, label, gender) in enumerate(rows):
            writer.writerow((index, external_id, label, gender))
