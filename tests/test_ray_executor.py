"""The ``ray`` executor on a local Ray cluster (127.0.0.1, 2 CPUs) that this module starts once and
stops: the same results as ``inline``, lost workers retried then recorded, and workers that never
read the dataset's folder."""

from __future__ import annotations

import logging
import os
import shutil
import sys

import pytest

from feph_finetune.config import read_config
from feph_finetune.execution import RunJob, context_factory
from feph_finetune.executors.inline import InlineExecutor
from feph_finetune.executors.ray_tasks import RayExecutor, run_in_folder, write_run_files
from feph_finetune.matrix import build_matrix
from feph_finetune.plugins import get_plugins
from feph_finetune.preparation import DataSource
from feph_finetune.results import RunStore

from conftest import write_killer_distribution, write_matrix
from test_executors import TWO_SEEDS, assert_same_results, quiet_runner, results, run_matrix


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local cluster for this module; its workers (and this process) see the killer plugin."""
    import ray

    site = tmp_path_factory.mktemp("site")
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = write_killer_distribution(site)["PYTHONPATH"]  # inherited by Ray's workers
    sys.path.insert(0, str(site))
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level=logging.ERROR)
    yield site
    ray.shutdown()
    sys.path.remove(str(site))
    sys.modules.pop("feph_killer", None)
    if previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = previous


def test_ray_gives_the_same_results_as_inline(ray_cluster, synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, TWO_SEEDS)
    inline = results(run_matrix(path, tmp_path / "inline", InlineExecutor({})))
    on_ray = results(run_matrix(path, tmp_path / "ray", RayExecutor({})))
    assert len(on_ray) == 2
    assert_same_results(inline, on_ray)


def test_a_run_whose_worker_dies_is_retried_then_recorded_failed(ray_cluster, synthetic_feph, tmp_path):
    marker = tmp_path / "always"
    marker.touch()
    experiments = f'[experiments.killed]\naugment = ["killer"]\noptions.killer.marker = "{marker}"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    runner = quiet_runner(path, tmp_path / "runs", RayExecutor({"max_retries": 1}))
    outcome = runner.run_all(runner.matrix.runs)
    (run_id,) = outcome.failed
    error = runner.store.result(run_id)["error"]
    assert (error["plugin"], error["hook"]) == ("core", "ray")
    assert "after 1 retries" in error["message"] and "Worker" in error["type"] + error["message"]


def test_a_worker_needs_only_the_shipped_inputs_not_the_dataset_folder(synthetic_feph, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_feph, data)
    path = write_matrix(tmp_path / "m.toml", data, "[experiments.A]\n")
    plugins = get_plugins()
    matrix = build_matrix(read_config(path), plugins)
    (run,) = matrix.runs
    inputs = DataSource().inputs(run, plugins, context_factory(run, {}))
    data.rename(tmp_path / "moved away")
    events: list[dict] = []
    job = RunJob(run, matrix.seed, str(tmp_path / "driver"))
    files = run_in_folder(job, inputs, tmp_path / "worker", events.append)
    write_run_files(job, files)
    assert RunStore(tmp_path / "driver").is_done(run.id)
    assert {"config.json", "history.json", "metrics.json", "predictions.npz", "environment.json", "result.json"} <= set(files)
    assert events[0]["event"] == "started" and any(event["event"] == "progress" for event in events)
