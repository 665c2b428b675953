"""A renamed label written into a finished run's files: every object of theirs that holds it."""

import json
from types import SimpleNamespace

from feph_finetune.results.display_fields import rename_finished_runs
from feph_finetune.results.store import RunStore, write_json


def _finished_run(store: RunStore, run_id: str, label: str) -> None:
    names = {"label": label, "cv_label": label}
    write_json(store.run_dir(run_id) / "result.json", {"id": run_id, "experiment": "A", "phase": "exploratory", "status": "done",
                                                      "order": 0, **names})
    for name in ("config.json", "bundle.json"):
        write_json(store.run_dir(run_id) / name, {"run": {"id": run_id, **names}, "config": {"model": "mobilenet", **names}})


def test_a_renamed_label_reaches_the_run_and_config_objects_of_config_json_and_bundle_json(tmp_path):
    store = RunStore(tmp_path)
    _finished_run(store, "A-x-0123456789", "old")
    renamed = rename_finished_runs(store, [SimpleNamespace(id="A-x-0123456789", label="new", cv_label="N", order=0)])
    assert renamed == {"A-x-0123456789": ["label", "cv_label"]}
    for name in ("config.json", "bundle.json"):
        written = json.loads((store.run_dir("A-x-0123456789") / name).read_text(encoding="utf-8"))
        assert written["run"] == {"id": "A-x-0123456789", "label": "new", "cv_label": "N"}, name
        assert written["config"] == {"model": "mobilenet", "label": "new", "cv_label": "N"}, name  # order: no key of config, not added
