"""Plugin ``tensorboard``: every run's curves, final metrics and confusion matrix in TensorBoard.

Each run writes its event file into its own folder of the results store, so ``tensorboard
--logdir OUTDIR`` lists every run under its run id (``E1-cv0-ce82c1f710``: experiment, ``x`` for
the exploratory split or ``cvK`` for fold K, and the hash of its configuration). Per epoch, counted
across stages as in ``history.json``: Keras' logs (``loss``, ``accuracy``, ``val_*``) and
``stage``, the stage's number (1, 2...), whose steps show where each stage starts; the stage's
name as text at its first epoch. At the run's end: ``final/<metric>`` and the confusion matrix as
an image. A run that starts again (resumed or ``--force``) replaces its earlier event files.

TensorFlow 2.21 no longer installs TensorBoard, whose package implements ``tf.summary.scalar``
and its kin; this plugin writes the same summaries with TensorFlow's own ``tf.summary.write`` and
the metadata TensorBoard's scalars, text and images plugins read, so that writing needs no extra
package. Viewing needs TensorBoard itself: ``pip install tensorboard``.
"""

from __future__ import annotations

import os
from pathlib import Path

from feph_finetune import Option, hookimpl
from feph_finetune_plugins.tracking_common import confusion_image, final_scalars, png_bytes

EVENT_FILES = "events.out.tfevents.*"

#: Per run id: the summary writer, the stages seen and the last epoch logged.
_open: dict[str, dict] = {}


@hookimpl
def plugin_options():
    return {"confusion_image": Option(True, help="log the confusion matrix as an image at the run's end")}


@hookimpl
def track_run_start(run):
    for stale in Path(run.run_dir).glob(EVENT_FILES):  # an earlier attempt's curves
        stale.unlink()
    _open[run.id] = {"writer": None, "stages": [], "epoch": 0}


@hookimpl
def track_epoch(run, stage, epoch, logs):
    state = _state(run)
    if stage not in state["stages"]:
        state["stages"].append(stage)
        with state["writer"].as_default(step=epoch):
            _text("stages", f"stage {len(state['stages'])}: {stage} (from epoch {epoch})")
    with state["writer"].as_default(step=epoch):
        _scalar("stage", len(state["stages"]))
        for name, value in logs.items():
            _scalar(name, value)
    state["epoch"] = epoch


@hookimpl
def track_run_end(run, record, context):
    state = _state(run)
    try:
        metrics = record.get("metrics") or {}
        with state["writer"].as_default(step=state["epoch"]):
            for name, value in final_scalars(metrics).items():
                _scalar(f"final/{name}", value)
            if context.options.get("confusion_image", True) and metrics.get("confusion"):
                _image("confusion", confusion_image(metrics["confusion"], record.get("classes") or []))
        state["writer"].flush()
    finally:
        state["writer"].close()
        _open.pop(run.id, None)


def _state(run) -> dict:
    """The run's writer, opened at first use: TensorFlow is imported by then (training)."""
    import tensorflow as tf

    state = _open.setdefault(run.id, {"writer": None, "stages": [], "epoch": 0})
    if state["writer"] is None:
        state["writer"] = tf.summary.create_file_writer(os.fsencode(run.run_dir))  # bytes: TensorFlow takes text as UTF-8 only
    return state


def _write(tag: str, value, plugin: str) -> None:
    """One summary at the default writer's step, marked for TensorBoard's ``plugin``."""
    import tensorflow as tf
    from tensorflow.core.framework.summary_pb2 import SummaryMetadata

    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=plugin))
    tf.summary.write(tag, value, metadata=metadata)


def _scalar(tag: str, value: float) -> None:
    """What ``tf.summary.scalar`` writes: a float32 scalar for the scalars plugin."""
    import tensorflow as tf

    _write(tag, tf.constant(value, dtype=tf.float32), "scalars")


def _text(tag: str, text: str) -> None:
    """What ``tf.summary.text`` writes: a string scalar for the text plugin."""
    import tensorflow as tf

    _write(tag, tf.constant(text), "text")


def _image(tag: str, image) -> None:
    """What ``tf.summary.image`` writes for one image: width, height and PNG bytes as strings."""
    import tensorflow as tf

    height, width = image.shape[:2]
    _write(tag, tf.constant([str(width).encode(), str(height).encode(), png_bytes(image)]), "images")
