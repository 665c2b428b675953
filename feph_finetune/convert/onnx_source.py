"""Read an ONNX EfficientNet (B0, B2) such as HSEmotion's ``enet_b0_8_best_afew.onnx``.

Such files were exported from timm models in eval mode: each BatchNorm is folded into the
convolution before it (weights scaled, a bias added), and TensorFlow's "same" padding of the
stride-2 convolutions appears as a Pad node fed by a Shape/Ceil subgraph (SPEC section 4). Input
NCHW float32 after x / 255 and the ImageNet mean and std; output the classifier's logits (or,
if the graph ends in Softmax, probabilities). Files with separate BatchNormalization nodes are
read too. ``onnx`` reads the graph and ``onnxruntime`` runs it; both import only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from feph_finetune.convert.source import BatchNorm, ConversionError, SourceConv, SourceModel, missing_package, softmax, source_input
from feph_finetune.data.user_files import is_utf8_name


def read_onnx(path: Path) -> SourceModel:
    """The convolutions, classifier and a runner of an ONNX file; ConversionError if it is not readable."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise missing_package("onnx", "convert") from error
    try:
        model = onnx.load(str(path))
    except Exception as error:
        raise ConversionError(f"{path}: not a readable ONNX file, or a truncated one ({type(error).__name__}: {error})") from error
    graph = model.graph
    if not graph.node or not graph.output:  # protobuf reads an empty or cut-off message as one with fields missing
        raise ConversionError(f"{path}: holds no ONNX graph (an empty or truncated file, or not ONNX)")
    constants = _constants(graph, numpy_helper)
    consumers: dict[str, list[Any]] = {}
    producers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    convolutions = [_convolution(node, constants, consumers, producers, path) for node in graph.node if node.op_type == "Conv"]
    weight, bias = _classifier(graph, constants, path)
    ends_in_softmax = producers.get(graph.output[0].name) is not None and producers[graph.output[0].name].op_type == "Softmax"
    return SourceModel(
        kind="ONNX",
        convolutions=convolutions,
        classifier_weight=weight,
        classifier_bias=bias,
        probabilities=_runner(path, ends_in_softmax),
        verified_against=f"the ONNX file {path.name} run by onnxruntime",
    )


def _constants(graph: Any, numpy_helper: Any) -> dict[str, np.ndarray]:
    """Every tensor with a value fixed in the file: initializers, Constant nodes, their Identities."""
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _convolution(node: Any, constants: dict, consumers: dict, producers: dict, path: Path) -> SourceConv:
    name = node.name or node.output[0]
    if node.input[1] not in constants:
        raise ConversionError(f"{path}: convolution {name} takes its weights from the graph, not from the file; cannot convert")
    weight = constants[node.input[1]].astype(np.float32)
    bias = constants[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else None
    kernel = weight.shape[2:]
    pads = list(_attribute(node, "pads", [0, 0, 0, 0]))
    padded_before = producers.get(node.input[0]) is not None and producers[node.input[0]].op_type == "Pad"
    if padded_before and not any(pads):
        padding = "same"
    elif any(pads):
        symmetric = pads[:2] == pads[2:] and pads[:2] == [k // 2 for k in kernel]
        strides = list(_attribute(node, "strides", [1, 1]))
        padding = "same" if symmetric and strides == [1, 1] else "symmetric"
    else:
        padding = "same" if all(k == 1 for k in kernel) else "none"
    following = consumers.get(node.output[0], [])
    batchnorm = None
    if len(following) == 1 and following[0].op_type == "BatchNormalization":
        bn = following[0]
        gamma, beta, mean, variance = (constants[name_].astype(np.float32) for name_ in bn.input[1:5])
        batchnorm = BatchNorm(gamma, beta, mean, variance, float(_attribute(bn, "epsilon", 1e-5)))
    return SourceConv(
        name=name,
        weight=weight,
        bias=bias,
        batchnorm=batchnorm,
        groups=int(_attribute(node, "group", 1)),
        strides=tuple(int(s) for s in _attribute(node, "strides", [1, 1])),
        padding=padding,
    )


def _classifier(graph: Any, constants: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The last fully connected layer: a Gemm, or a MatMul followed by an Add, as (classes, features)."""
    for node in reversed(graph.node):
        if node.op_type == "Gemm":
            weight = constants[node.input[1]].astype(np.float32)
            if not _attribute(node, "transB", 0):
                weight = weight.T
            bias = constants[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros(weight.shape[0], np.float32)
            return weight, bias
        if node.op_type == "MatMul" and node.input[1] in constants:
            weight = constants[node.input[1]].astype(np.float32).T
            adds = [n for n in graph.node if n.op_type == "Add" and node.output[0] in n.input]
            added = [name for add in adds for name in add.input if name in constants]
            return weight, constants[added[0]].astype(np.float32) if added else np.zeros(weight.shape[0], np.float32)
    raise ConversionError(f"{path}: no classifier (Gemm or MatMul) found at the end of the graph")


def _runner(path: Path, ends_in_softmax: bool):
    """A function running the file with onnxruntime on RGB 0-255 images, returning the softmax of its
    first ``classes`` outputs (a graph that ends in Softmax must have exactly that many)."""
    try:
        import onnxruntime
    except ImportError as error:
        raise missing_package("onnxruntime", "convert") from error
    # onnxruntime takes a name as UTF-8 text only: the file of a name of other bytes is read here
    model = str(path) if is_utf8_name(str(path)) else path.read_bytes()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def probabilities(images: np.ndarray, classes: int) -> np.ndarray:
        outputs = np.concatenate([session.run(None, {input_name: source_input(images[i : i + 1])})[0] for i in range(len(images))])
        if not ends_in_softmax:
            return softmax(outputs[:, :classes])
        if outputs.shape[1] != classes:
            raise ConversionError(f"{path}: the graph ends in a Softmax over all {outputs.shape[1]} outputs; {classes} of them cannot be told apart as classes")
        return outputs.astype(np.float64)

    return probabilities

