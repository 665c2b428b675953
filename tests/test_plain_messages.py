"""Messages that say what a user's file is: an empty or cut-off model file, a configuration that
is not UTF-8 (by line and column), the same ``predict`` input named twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from feph_finetune.cli import main


@pytest.mark.parametrize("name", ["model.onnx", "model.pt", "model.pth"])
def test_convert_names_an_empty_model_file_as_empty(tmp_path, capsys, name):
    (tmp_path / name).write_bytes(b"")
    assert main(["convert", str(tmp_path / name), str(tmp_path / "out.keras")]) == 2
    assert f"{tmp_path / name}: is empty (0 bytes), not a model file" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("content, said", [
    (b"\x08\x08", "holds no ONNX graph (an empty or truncated file, or not ONNX)"),  # ir_version alone: a file cut after its first field
    (b"\x08\x08\x3a\x40\x0a", "not a readable ONNX file, or a truncated one"),  # cut inside the graph
])
def test_convert_names_a_truncated_onnx_file_as_such_not_by_a_missing_classifier(tmp_path, capsys, content, said):
    (tmp_path / "cut.onnx").write_bytes(content)
    assert main(["convert", str(tmp_path / "cut.onnx"), str(tmp_path / "out.keras")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'cut.onnx'}: {said}" in err and "classifier" not in err


@pytest.mark.parametrize("text, line, column", [(b'seed = 1\n[x]\na = "\xff"\n', 3, 6), (b'a = "\xc3\xa9\xff"\n', 1, 7)])
def test_a_configuration_with_a_byte_that_is_not_utf8_is_placed_by_line_and_column(tmp_path, capsys, text, line, column):
    """Columns count characters, as TOML's syntax errors do: ``é`` (2 bytes) is one."""
    (tmp_path / "m.toml").write_bytes(text)
    assert main([str(tmp_path / "m.toml"), "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'm.toml'}: not UTF-8 text: byte 0xff at line {line}, column {column}" in err and "position" not in err


def test_predict_refuses_the_same_input_named_twice_however_spelled(tmp_path, capsys, monkeypatch):
    import cv2
    import numpy as np

    monkeypatch.chdir(tmp_path)
    cv2.imwrite("a.png", np.zeros((8, 8, 3), np.uint8))
    Path("b.png").symlink_to("a.png")
    assert main(["predict", "no-model", "a.png", "./a.png", "b.png", "a.png"]) == 2
    err = capsys.readouterr().err
    for line in ("INPUT ./a.png: the same file or folder as INPUT a.png; name each input once",
                 "INPUT b.png: the same file or folder as INPUT a.png; name each input once",
                 "INPUT a.png: given twice; name each input once"):
        assert line in err
