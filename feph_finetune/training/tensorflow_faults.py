"""Known TensorFlow faults that training must not walk into: a clear run failure before the
stage trains, instead of a process killed in the middle of TensorFlow's C++.

The one known here: on its oneDNN path, TensorFlow corrupts the heap computing the filter
gradient (``Conv2DBackpropFilter``) of a 1x1 convolution with stride 2 for an odd batch. Measured
on this project's AMD EPYC (AVX-512 VNNI/BF16, so oneDNN by default) with TensorFlow 2.20.0 and
2.21.0: the process aborts ("double free or corruption", "corrupted double-linked list",
"free(): invalid size") or segfaults, every time, for batches of 1, 3, 5, 7 and 17 images
(32x32, 8 channels to 16 filters, SAME or VALID; also 16x16, 1 channel, 8 filters). Fine were
even batches (2, 4, 6, 16), kernels of 2 or 3 with stride 2, a 1x1 kernel with stride 3, 33x33
inputs and 16 channels, so the exact rule is unknown and every trainable 1x1 ``Conv2D`` with a
stride above 1 counts as exposed. The forward convolution, ``Conv2DBackpropInput`` and Eigen's
kernels (``TF_ENABLE_ONEDNN_OPTS=0``) were fine, always. Such a layer is the residual branch of a
mini-Xception (the ``fer`` package's ``emotion_model.hdf5``) and a ResNet projection shortcut:
fine-tuning one with a training set that leaves an odd last batch killed the run's process
(SIGABRT) or, with the inline executor, the whole command (exit 134).

Whether the installed TensorFlow has the fault is asked of TensorFlow itself, by running the
smallest failing case in a child process (:func:`fault_shown`), and only where a stage would
otherwise walk into it: a later TensorFlow that fixed it trains as usual.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from typing import Any

#: The smallest case that crashed: the filter gradient of a 1x1, stride-2 convolution of one
#: 32x32x8 image to 16 filters, computed five times (the corruption shows when memory is freed).
PROBE = """
import tensorflow as tf
x = tf.random.stateless_uniform((1, 32, 32, 8), seed=(1, 2))
kernel = tf.random.stateless_uniform((1, 1, 8, 16), seed=(3, 4))
y = tf.nn.conv2d(x, kernel, strides=2, padding="SAME")
for _ in range(5):
    g = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[1, 1, 8, 16], out_backprop=tf.ones_like(y), strides=[1, 2, 2, 1], padding="SAME")
print(float(tf.reduce_sum(g)))
"""

#: Seconds the probe may take: importing TensorFlow takes some; a probe that hangs shows nothing.
PROBE_TIMEOUT_S = 300


class TensorFlowFaultError(RuntimeError):
    """The stage would walk into a known TensorFlow fault; raised before it trains, so the run
    fails with this message (recorded like any run error) and the matrix goes on."""


def strided_pointwise_convolutions(model: Any) -> list:
    """The layers of ``model`` (nested models too) that the fault concerns and the stage trains:
    ``keras.layers.Conv2D`` with a 1x1 kernel and a stride above 1 whose kernel is among the
    model's trainable variables (what ``fit`` computes gradients for; a frozen layer or one in a
    frozen backbone is not)."""
    import keras

    from feph_finetune.training.compiling import all_layers

    trained = {id(variable) for variable in model.trainable_variables}
    return [
        layer for layer in all_layers(model)
        if isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1) and max(layer.strides) > 1
        and id(getattr(layer, "kernel", None)) in trained
    ]


def odd_batch(examples: int, batch_size: int) -> int | None:
    """The size of an odd batch a stage over ``examples`` training images in batches of
    ``batch_size`` will see (every batch when ``batch_size`` is odd, else the last one), or None
    when every batch is even."""
    if examples <= 0:
        return None
    if batch_size % 2 and examples >= batch_size:
        return batch_size
    last = examples % batch_size or batch_size
    return last if last % 2 else None


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in this process (as ``.ci/run`` asks it: the
    private ``IsMklEnabled``, which honours ``TF_ENABLE_ONEDNN_OPTS`` and the CPU's default)."""
    from tensorflow.python.util import _pywrap_util_port as port

    return bool(port.IsMklEnabled())


@functools.cache
def fault_shown() -> signal.Signals | None:
    """The signal that killed :data:`PROBE`, run by this interpreter in a child process with this
    process's environment (so on the same kernel path), or None when it did not crash. Asked once
    per process."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    return signal.Signals(-probe.returncode) if probe.returncode < 0 else None


def refuse_known_faults(model: Any, examples: int, batch_size: int, stage: str) -> None:
    """Raise :class:`TensorFlowFaultError` when training ``model`` in ``stage`` over ``examples``
    images in batches of ``batch_size`` would corrupt the heap (this module's docstring): it trains
    a strided 1x1 convolution, sees an odd batch, TensorFlow runs oneDNN here, and the probe
    crashed. The cheap conditions come first; the probe runs only when they all hold."""
    layers = strided_pointwise_convolutions(model)
    odd = odd_batch(examples, batch_size)
    if not layers or odd is None or not onednn_enabled():
        return
    killed = fault_shown()
    if killed is None:
        return
    raise TensorFlowFaultError(fault_message(layers, odd, examples, batch_size, stage, killed))


def fault_message(layers: list, odd: int, examples: int, batch_size: int, stage: str, killed: signal.Signals) -> str:
    """What the user reads: the layers, the odd batch, the TensorFlow version and the ways out."""
    import tensorflow as tf

    named = ", ".join(f"{layer.name!r} (1x1, stride {max(layer.strides)})" for layer in layers)
    if examples % 2:
        by_batch = f"a batch_size that leaves only even batches cannot help here: the training split has {examples} images, an odd number"
    else:
        by_batch = "or set a batch_size that leaves only even batches: any even one, since the training split has an even number of images"
    return (
        f"stage {stage!r} not trained: TensorFlow {tf.__version__} on its oneDNN path corrupts memory computing the filter gradient "
        f"of a 1x1 convolution with stride above 1 for an odd batch (a probe of that gradient was killed by {killed.name}), and this "
        f"stage trains {named} with a batch of {odd} image{'s' if odd > 1 else ''} ({examples} training images, batch_size {batch_size}). "
        f"Set TF_ENABLE_ONEDNN_OPTS=0 before the command (TensorFlow's Eigen kernels, which do not have the fault); {by_batch}"
    )
