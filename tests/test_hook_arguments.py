"""What a hook is given, the core uses after the hook returns: a plugin cannot change it. Arrays
are read-only (an in-place write is that plugin's failure, named), records and other containers
are copies (issue 22, review h12c findings 1 and 2)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from feph_finetune.execution.tracking import RunTracking, tracked_run
from feph_finetune.hookspecs import hookimpl
from feph_finetune.plugins import PluginCallError, get_plugins

from conftest import TinyMatrix


class SortsInPlace:
    """A plugin whose hooks sort the arrays they are given in place (a top-k metric, a class count
    written carelessly) and change the record they are given (a tracker logging the confusion
    matrix as an artifact, rounding the accuracy for display)."""

    @hookimpl
    def evaluate(self, y_true, y_prob, context):
        y_prob[:] = -np.sort(-y_prob, axis=1)
        return {"top1": 1.0}

    @hookimpl
    def weight_classes(self, labels, context):
        labels.sort()
        return None

    @hookimpl
    def track_run_end(self, run, status, record, context):
        record["metrics"].pop("confusion")
        record["metrics"]["accuracy"] = 0.5
        record["status"] = "failed"


@pytest.mark.parametrize("hook,arguments", [
    ("evaluate", {"y_true": np.array([2, 0, 1]), "y_prob": np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])}),
    ("weight_classes", {"labels": np.array([2, 0, 1])}),
], ids=["evaluate", "weight_classes"])
def test_an_in_place_write_to_a_hooks_array_is_that_plugins_failure_and_the_array_is_unchanged(hook, arguments):
    """Sorting ``y_prob`` changed paper_metrics' accuracy and predictions.npz; sorting ``labels``
    trained the model on labels no longer aligned with their images; both without a word."""
    plugins = get_plugins()
    plugins.pm.register(SortsInPlace(), name="sorter")
    before = copy.deepcopy(arguments)
    with pytest.raises(PluginCallError) as failed:
        plugins.call("sorter", hook, context=None, **arguments)
    assert (failed.value.plugin, failed.value.hook) == ("sorter", hook)
    assert "read-only" in str(failed.value), str(failed.value)
    for name, array in arguments.items():
        np.testing.assert_array_equal(array, before[name])  # exact: the same numbers, not close ones


def test_a_tracker_that_changes_its_record_does_not_change_the_recorded_result(tmp_path, synthetic_feph):
    """``track_run_end`` was given the very dict then written to result.json: a tracker's edit
    became the run's result (accuracy 50% recorded, 0% measured, metrics.json disagreeing)."""
    get_plugins().pm.register(SortsInPlace(), name="sorter")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n')
    run = tiny.runs["A"]
    tracking = RunTracking(tracked_run(run, tiny.store.run_dir(run.id), "m"), {"sorter": {}}, tiny.plugins, report=lambda event: None)
    record = {"status": "done", "metrics": {"accuracy": 0.25, "confusion": [[1, 0], [2, 1]]}, "notes": None}
    written = json.loads(json.dumps(record))
    tracking.end(record, keep=lambda pending: None)
    assert record == written


def test_an_evaluate_plugin_sorting_y_prob_fails_its_run_and_leaves_the_predictions_as_measured(tmp_path, synthetic_feph):
    """Listed before paper_metrics, it changed the accuracy measured and predictions.npz (exit 0):
    now its run fails naming it, and nothing it wrote reaches another plugin or a file."""
    get_plugins().pm.register(SortsInPlace(), name="sorter")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\nevaluate = ["sorter", "paper_metrics"]\n')
    record = tiny.run_result("A")
    assert record["status"] == "failed" and (record["error"]["plugin"], record["error"]["hook"]) == ("sorter", "evaluate"), record["error"]
    assert "read-only" in record["error"]["message"]


class SortsItsLabels:
    """An ``expand`` that sorts the labels it is given in place, then returns the images with them."""

    @hookimpl
    def augment(self, context):
        from feph_finetune.api import Augmentation

        def expand(images, labels):
            labels.sort()
            return images, labels

        return Augmentation(expand=expand)


def test_a_function_a_hook_returned_gets_the_runs_arrays_read_only_too(tmp_path, synthetic_feph):
    """``expand`` is given the run's own training labels: sorted in place, the model trained on
    labels no longer aligned with their images (the images it returned unchanged)."""
    get_plugins().pm.register(SortsItsLabels(), name="sortlabels")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\naugment = ["sortlabels"]\n')
    with pytest.raises(PluginCallError) as failed:
        tiny.prepare("A")
    assert (failed.value.plugin, failed.value.hook) == ("sortlabels", "augment") and "read-only" in str(failed.value), str(failed.value)
