"""A metric is refused where its plugin returns it when the run's result.json could not be read
back with it: the check of a hook's result and the reader of a record share one definition of a
readable JSON file (:func:`feph_finetune.data.user_files.parse_json_bytes`). Accepted, such a metric
lost the finished run: "WorkerDied ... exited with code 0" with the cause lost, or "failed in
plugin None (None): None: None", retrained every invocation (review h12c finding 3)."""

from __future__ import annotations

import pytest

from feph_finetune.data import user_files
from feph_finetune.execution.job import _readable
from feph_finetune.hookspecs import hookimpl
from feph_finetune.plugins import get_plugins

from conftest import TinyMatrix
from test_hook_results import refused


def nested(levels: int):
    """1 inside ``levels`` arrays."""
    value = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("metrics,said", [
    ({"kappa": nested(70)}, "written there, it is nested too deeply (arrays or objects more than 64 levels deep)"),
    ({"kappa": nested(63)}, "written there, it is nested too deeply"),  # 63 inside metrics inside the record: 65 levels
    ({"kappa": {"1": 3, 1: 2}}, "written there, it has the key '1' twice in one object"),  # json writes key 1 as "1"
    ({"per_class": [{"a": {0.5: 1, "0.5": 2}}]}, "has the key '0.5' twice"),
], ids=["nested_70", "nested_63", "int_key_twice", "float_key_twice_deeper"])
def test_a_metric_that_result_json_could_not_be_read_back_with_is_the_plugins_failure(metrics, said):
    message = refused("evaluate", metrics)
    assert "must return metrics that the run's result.json can hold" in message and said in message, message


def test_metrics_over_the_size_a_record_is_read_at_are_the_plugins_failure(monkeypatch):
    """A 369 MiB array metric: the limit lowered so the test holds kilobytes, read and check alike."""
    monkeypatch.setattr(user_files, "MAX_JSON_BYTES", 4096)
    message = refused("evaluate", {"matrix": [[0.25] * 50] * 50})
    assert "written there, it is larger" in message and "read at most" in message, message


def test_a_record_the_reader_would_refuse_is_written_as_the_runs_failure_saying_why(monkeypatch):
    """Each plugin's metrics under the limit, all of them together over it: the core's record check."""
    monkeypatch.setattr(user_files, "MAX_JSON_BYTES", 4096)
    record = {"experiment": "A", "phase": "exploratory", "status": "done", "metrics": {"accuracy": 0.5, "a": [0.25] * 300, "b": [0.25] * 300},
              "error": None, "counters": {}}
    written = _readable(record)
    assert written["status"] == "failed" and written["metrics"] is None
    assert (written["error"]["plugin"], written["error"]["hook"]) == ("core", "record")
    assert "result.json could not be read back: it is larger" in written["error"]["message"], written["error"]


class DeepKappa:
    @hookimpl
    def evaluate(self, y_true, y_prob, context):
        return {"kappa": nested(70)}


def test_a_run_whose_metric_could_not_be_read_back_fails_naming_the_plugin_and_its_record_reads(tmp_path, synthetic_feph):
    get_plugins().pm.register(DeepKappa(), name="deep")
    tiny = TinyMatrix(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\nevaluate = ["paper_metrics", "deep"]\n')
    record = tiny.run_result("A")  # None when result.json could not be read back
    assert record is not None and record["status"] == "failed"
    assert (record["error"]["plugin"], record["error"]["hook"]) == ("deep", "evaluate"), record["error"]
    assert "nested too deeply" in record["error"]["message"]
