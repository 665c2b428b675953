"""Reaching a Ray cluster, in the command's own terms: a full temporary disk said before a local
cluster starts (and told from other failures when it fills meanwhile), ``address = "auto"`` with no
cluster running, and Ray's ``RAY_ADDRESS``. No cluster is started here: Ray's start is replaced
where a test would otherwise reach it; the disk is faked (:func:`test_full_disk.fake_free_space`)."""

from __future__ import annotations

import pytest

from feph_finetune.cli import main
from feph_finetune.execution.executors import ExecutorError
from feph_finetune.execution.executors.ray_connect import LOCAL_CLUSTER_BYTES, cluster_address, connect, ray_temporary_folder
from feph_finetune.results.store import NoSpaceError

from conftest import write_matrix
from test_full_disk import fake_free_space


@pytest.fixture
def ray_temporary(tmp_path, monkeypatch):
    """Ray's temporary folder in ``tmp_path`` (RAY_TMPDIR), no RAY_ADDRESS, and a ``ray.init``
    that fails the test: the checks below come before any cluster starts."""
    import ray

    folder = tmp_path / "ray-tmp"
    folder.mkdir()
    monkeypatch.setenv("RAY_TMPDIR", str(folder))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: pytest.fail("a Ray cluster was started or reached"))
    return folder


def test_a_full_temporary_disk_is_said_before_a_local_cluster_starts(synthetic_feph, tmp_path, capsys, ray_temporary, monkeypatch):
    """Before, Ray's start waited 30 s and failed as "cannot connect ... Timed out waiting for
    file .../gcs_server_port_...", leaving its folder on the full disk."""
    fake_free_space(monkeypatch, ray_temporary, lambda: 500)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--output", str(tmp_path / "runs"), "--executor", "ray"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"error: no space left on the disk of {ray_temporary} for a local Ray cluster's files (Ray's temporary folder: RAY_TMPDIR, else TMPDIR) "
            f"(500 B free, at least {LOCAL_CLUSTER_BYTES / 10**6:.1f} MB needed)") in err, err
    assert "cannot connect" not in err and "Traceback" not in err
    assert "finished runs are saved" not in err and "free some space, then continue with:" in err, "no run had finished"
    assert list(ray_temporary.iterdir()) == [], "Ray's folder is never made"


@pytest.mark.parametrize("full", [True, False], ids=["disk-full", "disk-with-room"])
def test_a_local_cluster_that_fails_to_start_says_whether_its_temporary_disk_filled(ray_temporary, monkeypatch, full):
    """The disk had room when checked and filled as the cluster started: Ray says only that it
    timed out waiting for a file, the command says the disk is full; with room left, Ray's reason."""
    import ray

    started = []

    def failing_start(*args, **kwargs):
        started.append(True)
        raise RuntimeError(f"Timed out waiting for file {ray_temporary}/ray/session_x/gcs_server_port_1.\nmore")

    fake_free_space(monkeypatch, ray_temporary, lambda: 0 if started and full else 10**9)
    monkeypatch.setattr(ray, "init", failing_start)
    with pytest.raises((NoSpaceError, ExecutorError)) as raised:
        connect("", 10)
    said = str(raised.value)
    if full:
        assert said.startswith(f"no space left on the disk of {ray_temporary} for a local Ray cluster's files"), said
    else:
        assert said == f"cannot connect to the Ray cluster at a local cluster: RuntimeError: Timed out waiting for file {ray_temporary}/ray/session_x/gcs_server_port_1."


#: For ``auto`` with no cluster running, as the address came (the setting, RAY_ADDRESS): where
#: the message names it, the advice for a local cluster, and the setting and RAY_ADDRESS that
#: following the advice gives.
NO_CLUSTER_CASES = {
    "setting": ("auto", None, "auto", "or leave the address empty (--set executor.ray.address=) for a local cluster of this command's own", ("", None)),
    "environment": ("", "auto", "auto (RAY_ADDRESS)", "or unset RAY_ADDRESS (an empty executor.ray.address takes it) or set RAY_ADDRESS=local "
                    "for a local cluster of this command's own", ("", "local")),
    "both": ("auto", "auto", "auto (RAY_ADDRESS)", "or set RAY_ADDRESS=local for a local cluster of this command's own (or unset RAY_ADDRESS "
             "and leave the address empty: --set executor.ray.address=)", ("auto", "local")),
}


@pytest.mark.parametrize("case", list(NO_CLUSTER_CASES))
def test_auto_without_a_running_cluster_says_what_to_do_with_this_command(ray_temporary, monkeypatch, case):
    """Ray's own error ("Could not find any running Ray instance"), from Ray itself: its advice
    named a ``--address`` flag this command does not have. The advice fits where the address
    came from: with ``RAY_ADDRESS=auto``, an empty setting (the advice before) takes RAY_ADDRESS
    again and fails the same way. No cluster of this machine is looked for (another test's may
    be running)."""
    import ray
    from ray._private import services

    setting, environment, where, advice, (followed_setting, followed_environment) = NO_CLUSTER_CASES[case]
    monkeypatch.undo()  # Ray's own ``init`` answers ...
    monkeypatch.setenv("RAY_TMPDIR", str(ray_temporary))  # ... with no cluster started from this temporary folder
    set_ray_address(monkeypatch, environment)

    def no_cluster_running() -> list:  # nor any running elsewhere
        return []

    no_cluster_running.cache_clear = lambda: None  # Ray clears its cache through it
    monkeypatch.setattr(services, "find_gcs_addresses", no_cluster_running)
    with pytest.raises(ExecutorError) as raised:
        connect(setting, 30)
    assert str(raised.value) == f"cannot connect to the Ray cluster at {where}: no running Ray cluster on this machine; start one with `ray start --head`, {advice}"
    assert not ray.is_initialized()
    set_ray_address(monkeypatch, followed_environment)
    assert cluster_address(followed_setting) == ("", "a local cluster"), "the advice, followed, gives a local cluster"


def set_ray_address(monkeypatch, value: str | None) -> None:
    """RAY_ADDRESS set to ``value``, or unset for None."""
    if value is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", value)


@pytest.mark.parametrize("setting, environment, expected", [
    ("", None, ("", "a local cluster")),
    ("", "127.0.0.1:6379", ("127.0.0.1:6379", "127.0.0.1:6379 (RAY_ADDRESS)")),
    ("auto", "ray://10.0.0.1:10001", ("ray://10.0.0.1:10001", "ray://10.0.0.1:10001 (RAY_ADDRESS)")),
    ("", "local", ("", "a local cluster")),
    ("10.0.0.2:6379", "127.0.0.1:6379", ("10.0.0.2:6379", "10.0.0.2:6379")),
], ids=["empty", "empty-env", "auto-env", "env-local", "setting-wins"])
def test_an_empty_address_takes_ray_address_as_ray_init_does(monkeypatch, setting, environment, expected):
    if environment is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", environment)
    assert cluster_address(setting) == expected


def test_ray_address_is_reached_where_the_address_is_empty(synthetic_feph, tmp_path, capsys, ray_temporary, monkeypatch):
    """Before, a local cluster was started whatever RAY_ADDRESS said."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--output", str(tmp_path / "runs"), "--executor", "ray"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: cannot connect to the Ray cluster at 127.0.0.1:1 (RAY_ADDRESS): connection refused" in err, err


def test_a_ray_address_of_no_known_form_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "head-node")
    with pytest.raises(ExecutorError, match="RAY_ADDRESS='head-node' is no address"):
        cluster_address("")


@pytest.mark.parametrize("environment", [{}, {"TMPDIR": "/t/a"}, {"RAY_TMPDIR": "/t/b", "TMPDIR": "/t/a"}], ids=["none", "tmpdir", "ray-tmpdir"])
def test_the_temporary_folder_is_rays_own(monkeypatch, environment):
    from ray._common.utils import get_default_system_temp_dir

    for name in ("TMPDIR", "RAY_TMPDIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert str(ray_temporary_folder()) == get_default_system_temp_dir()
