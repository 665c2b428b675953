"""A converted model and its sidecar ``.json`` always belong together: the model is written
first, the sidecar last with the model's hash, and the reader refuses a sidecar written for
another file; and every problem with ``convert``'s arguments is reported at once."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import feph_finetune.convert as converting
from feph_finetune.cli import main
from feph_finetune.convert import ConversionError, ConvertedModel, read_converted, sidecar_path


class FakeKerasModel:
    """Stands for a Keras model: ``save`` writes bytes that name its classes."""

    def __init__(self, classes: tuple[str, ...]):
        self.classes = classes

    def save(self, path) -> None:
        Path(path).write_text(",".join(self.classes), encoding="utf-8")


def description(classes: tuple[str, ...]) -> ConvertedModel:
    return ConvertedModel(architecture="EfficientNet-B0", classes=classes, input_size=224, source="m.onnx", source_kind="onnx",
                          source_sha256="0" * 64, max_abs_difference=0.0, check_images=4)


def write(classes: tuple[str, ...], out: Path) -> None:
    converting._write(FakeKerasModel(classes), description(classes), out)


def test_a_sidecar_describes_the_model_beside_it(tmp_path):
    out = tmp_path / "m.keras"
    write(("a", "b"), out)
    assert read_converted(out).classes == ("a", "b") and len(read_converted(out).model_sha256) == 64


def test_an_interrupt_between_the_two_files_never_pairs_a_sidecar_with_another_model(tmp_path, monkeypatch):
    out = tmp_path / "m.keras"
    write(("old", "pair"), out)
    real, finished = converting.atomic_path, []

    @contextmanager
    def interrupted_after_the_first_file(path, **options):
        with real(path, **options) as temporary:
            yield temporary
        finished.append(path)
        if len(finished) == 1:
            raise KeyboardInterrupt  # as Ctrl-C between the two renames

    monkeypatch.setattr(converting, "atomic_path", interrupted_after_the_first_file)
    with pytest.raises(KeyboardInterrupt):
        write(("new", "pair"), out)
    model_classes = tuple(out.read_text(encoding="utf-8").split(","))
    try:
        described = read_converted(out).classes
    except ConversionError as error:
        assert "convert the source again" in str(error)
    else:
        assert described == model_classes, f"the sidecar says {described}, the model beside it holds {model_classes}"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.keras", "m.keras.json"], "no temporary left"


def test_a_sidecar_from_before_the_hash_still_reads(tmp_path):
    out = tmp_path / "m.keras"
    write(("a", "b"), out)
    data = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    del data["model_sha256"]
    sidecar_path(out).write_text(json.dumps(data), encoding="utf-8")
    out.write_text("another model", encoding="utf-8")
    assert read_converted(out).classes == ("a", "b")


def test_every_argument_problem_is_reported_at_once(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.onnx"), str(tmp_path / "out.txt"), "--classes", "a,A,,b"]) == 2
    error = capsys.readouterr().err
    for problem in ("the output must end in .keras", "missing.onnx: no such file", "--classes repeats 'a'='A' (case aside)",
                    "--classes has an empty name (at position 3)"):
        assert problem in error, error
    assert "4 problems" in error and "Traceback" not in error


def test_a_source_that_is_no_regular_file_is_named_so(tmp_path, capsys):
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    for source, problem in ((fifo, "is not a regular file (a FIFO); only regular files are read"), (folder, "is a folder, not a file")):
        assert main(["convert", str(source), str(tmp_path / "o.keras")]) == 2
        assert f"{source}: {problem}" in capsys.readouterr().err


def test_a_dry_run_refuses_weights_whose_sidecar_was_written_for_another_file(tmp_path, synthetic_feph, capsys):
    from conftest import line_of, write_matrix

    out = tmp_path / "m.keras"
    write(("a", "b"), out)
    out.write_text("a model converted later", encoding="utf-8")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f'[experiments.A]\nmodel = "efficientnet"\noptions.efficientnet.weights = "{out}"\n')
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    key = "experiments.A.options.efficientnet.weights"
    assert f"{path}:{line_of(path, 'weights = ')} {key}: {out}.json: describes another file than {out}" in error, error


@pytest.mark.parametrize("edit, problem", [
    ({"classes": "abc"}, 'classes: must be a list of non-empty class names, not "abc"'),
    ({"classes": ["a", ""]}, "classes: must be a list of non-empty class names"),
    ({"classes": ["a", "a"]}, "classes: repeats a class name"),
    ({"model_sha256": ""}, 'model_sha256: must be 64 hexadecimal digits, not ""'),
    ({"model_sha256": "z" * 64}, "model_sha256: must be 64 hexadecimal digits"),
    ({"input_size": "224"}, 'input_size: must be a positive integer, not "224"'),
], ids=["classes-text", "classes-empty-name", "classes-repeated", "sha-empty", "sha-not-hex", "size-text"])
def test_a_sidecar_with_a_field_of_the_wrong_shape_is_refused_naming_it(tmp_path, edit, problem):
    out = tmp_path / "m.keras"
    write(("a", "b"), out)
    data = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    sidecar_path(out).write_text(json.dumps({**data, **edit}), encoding="utf-8")
    with pytest.raises(ConversionError) as refused:
        read_converted(out)
    assert f"{sidecar_path(out)} {problem}" in str(refused.value), str(refused.value)


def test_a_dry_run_refuses_weights_whose_sidecar_holds_classes_as_a_text(tmp_path, synthetic_feph, capsys):  # issue 22: accepted, classes ("a", "b", "c")
    from conftest import write_matrix

    out = tmp_path / "m.keras"
    write(("a", "b"), out)
    data = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    sidecar_path(out).write_text(json.dumps({**data, "classes": "abc", "model_sha256": ""}), encoding="utf-8")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f'[experiments.A]\nmodel = "mobilenet"\noptions.mobilenet.weights = "{out}"\n')
    assert main([str(path), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert f"{out}.json classes: must be a list" in error and f"{out}.json model_sha256: must be" in error and "Traceback" not in error, error
def test_an_onnx_source_whose_name_is_not_utf8_is_run(tmp_path):
    """onnxruntime takes a file's name as UTF-8 text and refused one of other bytes (Linux allows
    any); the check run of ``convert`` reads such a file itself. \\xff never occurs in UTF-8."""
    import onnx  # the convert extra, which CI installs: never skipped
    import onnxruntime  # noqa: F401
    from onnx import TensorProto, helper

    from feph_finetune.convert.onnx_source import _runner

    pooled = helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)  # NCHW -> (N, 3): one logit per channel
    graph = helper.make_graph([pooled], "mean", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    plain, odd = tmp_path / "plain.onnx", tmp_path / os.fsdecode(b"odd\xff.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), plain)
    odd.write_bytes(plain.read_bytes())
    images = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_runner(odd, ends_in_softmax=False)(images, 3), _runner(plain, ends_in_softmax=False)(images, 3))
