"""Reading the files a user names: photographs upright, unusable pixel types dropped by the same
rule that refuses them, and FIFOs, devices and huge files refused without ever blocking.

Whatever could hang runs in a subprocess with a timeout, so that a regression fails instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from feph_finetune import DatasetError, decodable, read_image
from feph_finetune.data import images

REPO = Path(__file__).resolve().parents[1]
#: Seconds a command that must not block gets; it answers in under 10 s when it works.
NO_HANG_S = 120

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` (as cv2 writes it: SOI, then a JFIF APP0) with an EXIF APP1 segment after the APP0
    that holds one tag, Orientation (0x0112, a SHORT), in a big-endian TIFF structure."""
    assert jpeg[:4] == b"\xff\xd8\xff\xe0"
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    payload = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + entry + struct.pack(">I", 0)
    end = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:end] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[end:]


#: An upright 32 x 64 BGR picture: a red block top left, a blue one bottom right.
UPRIGHT = np.zeros((32, 64, 3), dtype=np.uint8)
UPRIGHT[:16, :16] = (0, 0, 255)
UPRIGHT[16:, 48:] = (255, 0, 0)


def transpose(image: np.ndarray) -> np.ndarray:
    return image.transpose(1, 0, 2)


#: EXIF orientation: (how the camera stored an upright picture, how a viewer shows it upright).
ORIENTATIONS = {
    2: (np.fliplr, np.fliplr),
    3: (lambda image: np.rot90(image, 2), lambda image: np.rot90(image, 2)),  # upside down
    4: (np.flipud, np.flipud),
    5: (transpose, transpose),
    6: (lambda image: np.rot90(image, 1), lambda image: np.rot90(image, -1)),  # a phone held upright
    7: (lambda image: np.rot90(transpose(image), 2), lambda image: np.rot90(transpose(image), 2)),
    8: (lambda image: np.rot90(image, -1), lambda image: np.rot90(image, 1)),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_a_photographs_exif_orientation_is_applied(tmp_path, orientation):
    to_store, to_show = ORIENTATIONS[orientation]
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(to_store(UPRIGHT)), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    (tmp_path / "as_stored.jpg").write_bytes(encoded.tobytes())
    (tmp_path / "tagged.jpg").write_bytes(with_orientation(encoded.tobytes(), orientation))
    as_stored, tagged = read_image(tmp_path / "as_stored.jpg"), read_image(tmp_path / "tagged.jpg")
    assert tagged.shape == (32, 64, 3)
    assert np.array_equal(tagged, to_show(as_stored))  # the same pixels, turned: exact
    # JPEG blurs colours near block edges; block centres stay within 40 of the pure colours
    assert np.abs(tagged[8, 8].astype(int) - (255, 0, 0)).max() < 40
    assert np.abs(tagged[24, 56].astype(int) - (0, 0, 255)).max() < 40


def _as_read_before(path: Path) -> np.ndarray:
    """What ``read_image`` returned before EXIF orientation was applied: every channel decoded
    (``IMREAD_UNCHANGED``), alpha dropped, 16 bits scaled to 8, as RGB."""
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)


def test_files_without_exif_decode_to_the_same_pixels_as_before(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "rgb.png": rng.integers(0, 256, (9, 11, 3), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (9, 11, 4), dtype=np.uint8),
        "grey.png": rng.integers(0, 256, (9, 11), dtype=np.uint8),
        "deep.png": rng.integers(0, 65536, (9, 11, 4), dtype=np.uint16),
        "photo.jpg": rng.integers(0, 256, (16, 24, 3), dtype=np.uint8),
        "grey.jpg": rng.integers(0, 256, (16, 24), dtype=np.uint8),
        "rgba.webp": rng.integers(0, 256, (9, 11, 4), dtype=np.uint8),
        "deep.tiff": rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16),
    }
    for name, pixels in files.items():
        assert cv2.imwrite(str(tmp_path / name), pixels)
        assert np.array_equal(read_image(tmp_path / name), _as_read_before(tmp_path / name)), name


@pytest.mark.parametrize("pixels", [np.full((6, 6, 3), 0.5, dtype=np.float32), np.full((6, 6), -3, dtype=np.int16)], ids=["float32", "int16"])
def test_an_image_of_an_unusable_pixel_type_is_not_counted_decodable(tmp_path, pixels):
    path = tmp_path / "odd.tiff"
    assert cv2.imwrite(str(path), pixels)
    with pytest.raises(DatasetError, match=f"unsupported pixel type {pixels.dtype}"):
        read_image(path)
    assert decodable([path]) == [False]


def test_an_image_over_the_size_limit_is_refused_naming_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    assert cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", path.stat().st_size - 1)
    with pytest.raises(DatasetError, match="big.png is larger"):
        read_image(path)
    assert decodable([path]) == [False]


def _run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter; a read that blocks fails the test after NO_HANG_S."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, timeout=NO_HANG_S)


@needs_fifo
def test_fifos_and_devices_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    os.mkfifo(tmp_path / "labels.csv")
    os.symlink("/dev/zero", tmp_path / "zero.png")
    result = _run_python(f"""
        from pathlib import Path
        from feph_finetune import DatasetError, decodable, read_csv_rows, read_image
        folder = Path({str(tmp_path)!r})
        print(decodable([folder / "x.png", folder / "zero.png"]))
        for read in (lambda: read_image(folder / "x.png"), lambda: read_image(folder / "zero.png"),
                     lambda: list(read_csv_rows(folder / "labels.csv", ["a"]))):
            try:
                read()
            except DatasetError as error:
                print(error)
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[False, False]"
    assert lines[1] == f"image {tmp_path / 'x.png'} is not a regular file (a FIFO); only regular files are read"
    assert lines[2] == f"image {tmp_path / 'zero.png'} is not a regular file (a character device); only regular files are read"
    assert lines[3] == f"labels CSV {tmp_path / 'labels.csv'} is not a regular file (a FIFO); only regular files are read"


@needs_fifo
def test_a_fifo_as_the_configuration_or_a_predict_input_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "experiments.toml")
    os.mkfifo(tmp_path / "clip.mp4")
    os.mkfifo(tmp_path / "frame.png")
    result = subprocess.run([sys.executable, "-m", "feph_finetune", str(tmp_path / "experiments.toml"), "--dry-run"],
                            capture_output=True, text=True, cwd=REPO, timeout=NO_HANG_S)
    assert result.returncode == 2
    assert f"{tmp_path / 'experiments.toml'}: cannot read: it is not a regular file (a FIFO)" in result.stderr
    result = _run_python(f"""
        from feph_finetune.predict.inputs import InputError, open_input
        for name in ("clip.mp4", "frame.png"):
            try:
                open_input({str(tmp_path)!r} + "/" + name)
            except InputError as error:
                print(error)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{tmp_path}/{name}: is a FIFO, neither a regular file nor a folder; predict reads image and video files and folders of frames"
        for name in ("clip.mp4", "frame.png")]


@needs_fifo
def test_a_link_to_a_fifo_in_a_folder_of_frames_is_a_frame_that_cannot_be_read(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    assert cv2.imwrite(str(frames / "f1.png"), UPRIGHT)
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "pipe", frames / "f2.png")
    result = _run_python(f"""
        from feph_finetune.predict.inputs import open_input
        for frame in open_input({str(frames)!r}).frames():
            print(frame.problem)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["None", f"image {frames / 'f2.png'} is not a regular file (a FIFO); only regular files are read"]


@needs_fifo
def test_the_data_command_drops_special_files_in_a_folders_dataset_and_never_hangs(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b"):
        for index in range(3):
            (root / name).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / name / f"{name}{index}.png"), np.full((8, 8, 3), 40 * index + (name == "a"), dtype=np.uint8))
    os.mkfifo(root / "a" / "x.png")
    os.mkfifo(root / "b" / "y.png")  # two FIFOs of one size: copies are looked for by content
    os.symlink("/dev/zero", root / "b" / "zero.png")
    result = subprocess.run([sys.executable, "-m", "feph_finetune", "data", str(root), "--format", "folders", "--folds", "2", "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=NO_HANG_S)
    assert result.returncode == 0, result.stderr
    description = json.loads(result.stdout)
    assert description["classes"] == {"a": 3, "b": 3}
    assert description["dropped"]["unreadable"] == 3


def test_crops_cached_before_orientation_was_applied_are_not_reused_and_other_files_keep_theirs(tmp_path):
    """Crop-cache keys once were sha256(sha256(bytes) + "CHAIN|SIZE"); a file with EXIF data
    (possibly cached sideways) gets a new key, every other file keeps its cached crop."""
    from feph_finetune import Dataset, FrameResult, Sample
    from feph_finetune.data.frames import CropCache, compute_frames

    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(np.rot90(UPRIGHT, 1)), [cv2.IMWRITE_JPEG_QUALITY, 100])
    (tmp_path / "phone.jpg").write_bytes(with_orientation(encoded.tobytes(), 6))
    assert cv2.imwrite(str(tmp_path / "plain.png"), UPRIGHT)
    cache, size, marked = CropCache(tmp_path / "cache"), 16, np.full((16, 16, 3), 7, dtype=np.uint8)
    for name in ("phone.jpg", "plain.png"):
        content = (tmp_path / name).read_bytes()
        cache.store(hashlib.sha256(hashlib.sha256(content).digest() + f"|{size}".encode()).hexdigest(), FrameResult(marked))
    dataset = Dataset(root=tmp_path, samples=[Sample(tmp_path / name, 0, {}) for name in ("phone.jpg", "plain.png")], classes=("a",))
    frames = compute_frames(dataset, [], size, cache)
    assert frames.computed == 1
    assert not np.array_equal(frames.images[0], marked)  # recomputed, upright
    assert np.array_equal(frames.images[1], marked)  # the cached crop, kept


@needs_fifo
def test_a_crop_cache_entry_that_is_no_regular_file_is_computed_again_with_one_warning(tmp_path):
    """A FIFO as a cached crop would block the run forever, a link to /dev/zero fill the memory:
    neither is read; the crops are computed again, stored over them, and the cache said once."""
    result = _run_python(f"""
        import os
        from pathlib import Path
        import cv2, numpy as np
        from feph_finetune import Dataset, Sample
        from feph_finetune.data.frames import CropCache, compute_frames, frame_key
        root = Path({str(tmp_path)!r})
        cache, names = CropCache(root / "cache"), ("a.png", "b.png", "c.png")
        for number, name in enumerate(names):
            assert cv2.imwrite(str(root / name), np.full((16, 16, 3), 40 * number, dtype=np.uint8))
        fifo, device = (cache.path(frame_key((root / name).read_bytes(), "", 16)) for name in names[:2])
        for path in (fifo, device):
            path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(fifo)
        device.symlink_to("/dev/zero")
        dataset = Dataset(root=root, samples=[Sample(root / name, 0, {{}}) for name in names], classes=("a",))
        frames = compute_frames(dataset, [], 16, cache)
        print(frames.computed)
        print(frames.cache_problem)
        print(fifo.is_file() and not fifo.is_symlink(), device.is_file() and not device.is_symlink())
        print(compute_frames(dataset, [], 16, cache).computed)
    """)
    assert result.returncode == 0, result.stderr
    computed, said, replaced, again = result.stdout.splitlines()
    assert computed == "3" and replaced == "True True" and again == "0"  # stored over the special files, then reused
    assert said.startswith("the crop cache entry ") and "is not a regular file (a FIFO)" in said and said.count("crop cache entry") == 1


def test_json_read_back_is_refused_when_special_large_deep_or_not_json(tmp_path):
    from feph_finetune.data.user_files import UnreadableFile, read_json_file

    files = {"deep.json": "[" * 100_000 + "]" * 100_000, "deep65.json": "[" * 65 + "]" * 65, "digits.json": "1" + "0" * 5000,
             "latin1.json": b'{"a": "\xe9"}', "garbled.json": "{", "ok.json": '{"a": [[1, 2.5]], "b": null}'}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert read_json_file(tmp_path / "ok.json") == {"a": [[1, 2.5]], "b": None}
    for name, why in (("deep.json", "is nested too deeply"), ("deep65.json", "is nested too deeply"), ("digits.json", "is not valid JSON"),
                      ("latin1.json", "is not UTF-8 text"), ("garbled.json", "is not valid JSON"), ("missing.json", "does not exist")):
        with pytest.raises(UnreadableFile, match=why):
            read_json_file(tmp_path / name)
    (tmp_path / "deep64.json").write_text("[" * 64 + "]" * 64)
    assert read_json_file(tmp_path / "deep64.json") is not None  # the deepest allowed
    with pytest.raises(UnreadableFile, match="larger"):
        read_json_file(tmp_path / "ok.json", limit=10)


@needs_fifo
def test_a_converted_models_sidecar_is_read_as_json_read_back(tmp_path):
    from feph_finetune import ConversionError, read_converted

    model = tmp_path / "enet.keras"
    model.write_bytes(b"not read")
    assert read_converted(model) is None  # no sidecar
    os.mkfifo(tmp_path / "enet.keras.json")
    with pytest.raises(ConversionError, match=r"enet.keras.json: unreadable \(it is not a regular file \(a FIFO\)"):
        read_converted(model)
    (tmp_path / "enet.keras.json").unlink()
    (tmp_path / "enet.keras.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConversionError, match="nested too deeply"):
        read_converted(model)


def test_a_configuration_saved_with_a_byte_order_mark_reads(tmp_path):
    from feph_finetune.config.reading import read_config

    text = '[dataset]\nroot = "data/FePh"\n\n[experiments.M2]\nmodel = "mobilenet"\n'
    (tmp_path / "notepad.toml").write_bytes("\ufeff".encode() + text.encode())
    (tmp_path / "plain.toml").write_text(text)
    assert read_config(tmp_path / "notepad.toml").data == read_config(tmp_path / "plain.toml").data
    assert read_config(tmp_path / "notepad.toml").locator.lines == read_config(tmp_path / "plain.toml").locator.lines  # lines as in the editor


@pytest.mark.parametrize("nested", ["zz = " + "[" * 5000 + "]" * 5000, "variant = " + "{a=" * 3000 + "1" + "}" * 3000, "zz = " + "[" * 70 + "]" * 70])
def test_a_configuration_nested_too_deeply_is_a_usage_error_naming_the_file(tmp_path, capsys, nested):
    from feph_finetune.cli import main

    (tmp_path / "deep.toml").write_text(nested + "\n")
    assert main([str(tmp_path / "deep.toml"), "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'deep.toml'}: nested too deeply" in err and "Traceback" not in err
def _special_files(folder: Path) -> list[str]:
    """A FIFO, a socket and a link to /dev/zero, all with image names, in ``folder``; their names."""
    import socket

    os.mkfifo(folder / "fifo.png")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "socket.png"))
    os.symlink("/dev/zero", folder / "zero.png")
    return ["fifo.png", "socket.png", "zero.png"]


@needs_fifo
def test_special_files_named_by_a_labels_csv_are_dropped_as_unreadable_not_missing_or_outside(tmp_path):
    from feph_finetune import resolve_inside

    images = tmp_path / "images"
    images.mkdir()
    special = _special_files(images)
    for index in range(4):
        assert cv2.imwrite(str(images / f"ok{index}.png"), np.full((8, 8, 3), 30 * index, dtype=np.uint8))
    assert [resolve_inside(images.resolve(), Path(name).stem, (".png",)) for name in special] == ["unreadable"] * 3  # feph's IDs
    assert resolve_inside(images.resolve(), "nothing.png") == "missing_file"
    rows = [f"ok{index}.png,{'ab'[index % 2]}" for index in range(4)] + [f"{name},a" for name in special]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "feph_finetune", "data", str(tmp_path), "--format", "csv", "--set", "dataset.images=images", "--folds", "2", "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=NO_HANG_S)
    assert result.returncode == 0, result.stderr
    dropped = json.loads(result.stdout)["dropped"]
    assert dropped["unreadable"] == 3 and dropped["missing_file"] == dropped["outside_root"] == 0, dropped


@needs_fifo
def test_predict_reports_a_bundle_part_or_frame_that_is_no_regular_file_as_such(tmp_path, monkeypatch):
    from feph_finetune.predict import bundle as bundles
    from feph_finetune.predict.bundle import BundleError, find_bundle, read_manifest
    from feph_finetune.predict.inputs import open_input

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    os.mkfifo(bundle / "bundle.json")
    (bundle / "model.keras").write_bytes(b"")
    with pytest.raises(BundleError, match=r"bundle\.json: is not a regular file \(a FIFO\)"):
        find_bundle(bundle)
    os.unlink(bundle / "bundle.json")
    os.unlink(bundle / "model.keras")
    os.mkfifo(bundle / "model.keras")
    monkeypatch.setattr(bundles, "_shape_problems", lambda manifest: [])  # only the model file is looked at here
    manifest = {"format": bundles.FORMAT, "format_version": bundles.FORMAT_VERSION, "model": "model.keras",
                **dict.fromkeys(("input_size", "classes", "preprocess", "run", "config"))}
    (bundle / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match=r"model\.keras: the bundle's model file is not a regular file \(a FIFO\)"):
        read_manifest(bundle)
    frames = tmp_path / "frames"
    frames.mkdir()
    assert cv2.imwrite(str(frames / "f1.png"), UPRIGHT)
    special = _special_files(frames)
    opened = open_input(str(frames))
    assert sorted(path.name for path in opened.files) == sorted(["f1.png", *special]) and opened.skipped is None


def _python_with_pixel_limit(code: str, limit: str | None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (OpenCV reads the limit once) with the limit set or unset."""
    environment = {key: value for key, value in os.environ.items() if key != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    if limit is not None:
        environment["OPENCV_IO_MAX_IMAGE_PIXELS"] = limit
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, timeout=NO_HANG_S, env=environment)


def test_the_decoded_pixel_limit_is_set_before_the_first_decode_unless_the_user_set_one():
    # Every decode goes through the image reader, which sets the limit as it is loaded (the
    # package loads its names on first use, so that ``import feph_finetune`` alone costs nothing).
    show = "import os; from feph_finetune import read_image; print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    assert _python_with_pixel_limit(show, None).stdout.split() == [str(images.MAX_IMAGE_PIXELS)]
    assert _python_with_pixel_limit(show, "5000").stdout.split() == ["5000"]
    assert images.MAX_IMAGE_PIXELS < 2**30  # below OpenCV's own default, or setting it does nothing


def test_an_image_over_the_pixel_limit_is_refused_naming_the_limit(tmp_path):
    """A small file, many pixels: 200 x 100 = 20,000 pixels against a limit of 19,999, the
    mechanism the default limit (2**27) uses for a 400 KB PNG of 20000 x 20000 pixels."""
    assert cv2.imwrite(str(tmp_path / "big.png"), np.zeros((100, 200), dtype=np.uint8))
    assert cv2.imwrite(str(tmp_path / "fits.png"), np.zeros((99, 200), dtype=np.uint8))
    result = _python_with_pixel_limit(f"""
        from pathlib import Path
        from feph_finetune import DatasetError, decodable, read_image
        folder = Path({str(tmp_path)!r})
        print(decodable([folder / "big.png", folder / "fits.png"]))
        try:
            read_image(folder / "big.png")
        except DatasetError as error:
            print(error)
    """, "19999")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[False, True]", f"image {tmp_path / 'big.png'} has more pixels than the 19999 decoded at most (OPENCV_IO_MAX_IMAGE_PIXELS)"]


def test_opencvs_own_warnings_about_a_damaged_image_stay_off_the_console(tmp_path):
    """OpenCV printed "[ WARN:0@1.2] global grfmt_png.cpp:793 ... PNG input buffer is incomplete"
    for each damaged file, between the program's own messages, which say what was dropped."""
    whole = tmp_path / "whole.png"
    assert cv2.imwrite(str(whole), np.zeros((32, 32, 3), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:100])
    result = _run_python(f"""
        from pathlib import Path
        from feph_finetune.data.images import decodable
        print(decodable([Path({str(tmp_path / "cut.png")!r}), Path({str(whole)!r})]))
    """)
    assert result.returncode == 0 and result.stdout.strip() == "[False, True]", result.stderr
    assert "WARN" not in result.stderr and "grfmt_png" not in result.stderr, result.stderr


def test_json_read_back_with_a_byte_order_mark_reads_as_toml_with_one_does(tmp_path):
    """Notepad saves a hand-edited result.json with a BOM; json.loads refused it ("Unexpected UTF-8 BOM")."""
    from feph_finetune.data.user_files import read_json_file

    (tmp_path / "edited.json").write_bytes("\ufeff".encode() + b'{"accuracy": 0.5}')
    assert read_json_file(tmp_path / "edited.json") == {"accuracy": 0.5}


def test_json_read_back_with_a_key_twice_in_one_object_is_refused_naming_the_key(tmp_path):
    """A hand-edited ``result.json`` with ``"status"`` twice: ``json`` alone keeps the last silently."""
    from feph_finetune.data.user_files import UnreadableFile, read_json_file
    from feph_finetune.results.store import RunStore

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text('{"id": "run", "status": "failed", "metrics": {"a": 1}, "status": "done"}')
    with pytest.raises(UnreadableFile, match="has the key 'status' twice in one object"):
        read_json_file(tmp_path / "run" / "result.json")
    warnings = []
    assert RunStore(tmp_path, warn=warnings.append).result("run") is None
    assert warnings == [f"{tmp_path / 'run' / 'result.json'}: skipped, unreadable (it has the key 'status' twice in one object; which to use is unclear); the run counts as not finished"]
    (tmp_path / "nested.json").write_text('[{"a": {"b": 1, "b": 1}}]')
    with pytest.raises(UnreadableFile, match="has the key 'b' twice"):
        read_json_file(tmp_path / "nested.json")


OVER_THE_LIMIT = {".png": (100, 200, 3), ".jpg": (100, 200, 3), ".bmp": (100, 200, 3), ".webp": (100, 200, 3),
                  ".tiff": (100, 200, 3), ".pgm": (100, 200), ".gif": (100, 200, 3)}


@pytest.mark.parametrize("suffix", list(OVER_THE_LIMIT))
def test_the_pixel_limit_holds_whatever_imported_opencv_first_and_nothing_is_decoded(tmp_path, monkeypatch, suffix):
    """OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS once, when cv2 is imported: in this process cv2 was
    imported long before the limit below is set, as it was before the package set its default in
    every command (``frames.py`` imported cv2 first). The header's size is checked before any
    decoding: 20,000 pixels against a limit of 19,999, the mechanism of the default 2**27."""
    big, fits = tmp_path / f"big{suffix}", tmp_path / f"fits{suffix}"
    assert cv2.imwrite(str(big), np.zeros(OVER_THE_LIMIT[suffix], dtype=np.uint8))
    assert cv2.imwrite(str(fits), np.zeros((99, *OVER_THE_LIMIT[suffix][1:]), dtype=np.uint8))
    monkeypatch.setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "19999")
    decoded = []
    real_decode = images.cv2.imdecode
    monkeypatch.setattr(images.cv2, "imdecode", lambda *args: decoded.append(args) or real_decode(*args))
    with pytest.raises(DatasetError, match=r"has more pixels than the 19999 decoded at most \(OPENCV_IO_MAX_IMAGE_PIXELS\)"):
        read_image(big)
    assert decoded == [], "the image over the limit was decoded: its memory was taken before it was refused"
    assert read_image(fits).shape == (99, 200, 3)


def test_data_and_predict_drop_an_image_over_the_pixel_limit(tmp_path, monkeypatch, capsys):
    """Both commands read images through the same check: ``data`` counts the file as unreadable,
    ``predict`` names it and the limit."""
    from feph_finetune.cli import main
    from feph_finetune.predict.inputs import open_input

    for shade, label in enumerate(("happy", "sad")):
        (tmp_path / label).mkdir()
        for index in range(3):
            assert cv2.imwrite(str(tmp_path / label / f"{index}.png"), np.full((20, 20, 3), 40 * index + 7 * shade, np.uint8))
    assert cv2.imwrite(str(tmp_path / "happy" / "big.png"), np.zeros((100, 200, 3), np.uint8))
    monkeypatch.setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "19999")
    assert main(["data", str(tmp_path), "--format", "folders", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == {"happy": 3, "sad": 3} and report["dropped"]["unreadable"] == 1
    problems = [frame.problem for frame in open_input(str(tmp_path / "happy" / "big.png")).frames()]
    assert problems == [f"image {tmp_path / 'happy' / 'big.png'} has more pixels than the 19999 decoded at most (OPENCV_IO_MAX_IMAGE_PIXELS)"]


def test_every_command_sets_the_default_limit_before_anything_imports_opencv():
    """``import feph_finetune`` (every command's first step) sets the default, so that OpenCV's
    own check holds for the formats whose headers the package does not read."""
    show = "import os, feph_finetune, cv2; print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    assert _python_with_pixel_limit(show, None).stdout.split() == [str(images.MAX_IMAGE_PIXELS)]
