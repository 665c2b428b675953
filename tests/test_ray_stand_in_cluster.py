"""The ``ray`` executor against a cluster of its own (``ray start --head`` on 127.0.0.1, as a
user's cluster is started), where the local cluster of ``tests/test_ray_executor.py`` cannot show
the case: a cluster that refuses the driver's token, one whose CPUs another job holds."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO, write_matrix

#: A token the stand-in cluster accepts, and one it refuses (Ray's tokens: 32+ characters).
GOOD_TOKEN, BAD_TOKEN = "a" * 40, "b" * 40
#: The environment of the cluster and of the drivers it accepts: Ray turns token authentication on
#: where a token file exists (``~/.ray/auth_token``), so the test says which token counts.
ACCEPTED = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": GOOD_TOKEN}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def stand_in_cluster(cpus: int = 1) -> Iterator[str]:
    """A Ray cluster started with ``ray start --head --block`` on 127.0.0.1 in a session of its
    own, its files in a short temporary folder (Ray's sockets need short paths); yields its
    address and kills its process group after."""
    port, folder = free_port(), tempfile.mkdtemp(prefix="rs", dir="/tmp")
    stand_in_cluster.folder = folder  # the latest one's, to find its processes
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(cpus), "--temp-dir", folder, "--include-dashboard", "false", "--disable-usage-stats"]
    cluster = subprocess.Popen(command, env={**os.environ, **ACCEPTED}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(Path(folder).glob("session_*/logs/raylet.out")):
            assert time.monotonic() < deadline and cluster.poll() is None, "the stand-in Ray cluster did not start"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait()


def test_a_cluster_that_refuses_the_drivers_token_says_so():
    """Ray's error says only "Failed to connect"; the reason is in what its C++ code logs."""
    with stand_in_cluster() as address:
        connect = f"from feph_finetune.execution.executors.ray_connect import connect; connect({address!r}, 8)"
        driver = subprocess.run([sys.executable, "-c", connect], cwd=REPO, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": BAD_TOKEN})
    assert f"ExecutorError: cannot connect to the Ray cluster at {address}" in driver.stderr, driver.stderr
    assert "InvalidAuthToken: Authentication token is missing or incorrect" in driver.stderr, driver.stderr


#: A driver of another job that holds every CPU of the cluster at ``sys.argv[1]`` until its stdin closes.
HOLDER = """
import sys, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)
@ray.remote(num_cpus=1)
class Holder:
    def ping(self):
        return True
holder = Holder.remote()
ray.get(holder.ping.remote())
print("held", flush=True)
sys.stdin.read()
"""


class Lines:
    """The stdout lines of a process, read in a thread, so that a wait for one is bounded."""

    def __init__(self, process: subprocess.Popen):
        self.queue: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [*map(self.queue.put, process.stdout), self.queue.put(None)], daemon=True).start()

    def until(self, text: str, bound_s: float = 180.0) -> None:
        """Read lines until one holds ``text``; AssertionError at the end of the output or after
        ``bound_s`` (a bound on a hang, not a timing: the line comes in seconds)."""
        deadline = time.monotonic() + bound_s
        while True:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"{text!r} never came: {''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return


@pytest.mark.slow(90)
def test_runs_queued_behind_another_jobs_cpus_are_said_once_and_when_they_start(synthetic_feph, tmp_path):
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\npreprocess = []\n")
    with stand_in_cluster(cpus=1) as address:
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, address], env={**os.environ, **ACCEPTED}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        command = None
        try:
            assert holder.stdout.readline().strip() == "held"
            command = subprocess.Popen([sys.executable, "-m", "feph_finetune", str(matrix), "--output", str(tmp_path / "runs"), "--executor", "ray",
                                        "--set", f"executor.ray.address={address}"], cwd=REPO, env={**os.environ, **ACCEPTED}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lines = Lines(command)
            lines.until("1 run queued: 0 of 1 CPUs free in the cluster, num_cpus = 1 a run (other jobs hold them)")
            holder.stdin.close()  # the other job ends: its CPU is free
            queued_at = len(lines.seen)
            lines.until("the cluster has room again: the queued runs start")
            assert any("started A-" in line for line in lines.seen[queued_at:]), "".join(lines.seen)
            assert sum("queued:" in line for line in lines.seen) == 1, "".join(lines.seen)
        finally:
            for process in (command, holder):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()


def gcs_server_of(folder_hint: str) -> int:
    """The pid of the stand-in cluster's GCS whose command line names its ``--temp-dir``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if words and words[0].endswith(b"gcs_server") and any(folder_hint.encode() in word for word in words):
            return int(cmdline.parent.name)
    raise AssertionError("the stand-in cluster has no GCS")


@pytest.mark.slow(90)
def test_a_cluster_lost_midway_is_said_with_the_command_that_continues(synthetic_feph, tmp_path):
    """The GCS killed while a run trains: Ray would wait 60 s and end the process itself (exit 1,
    no word); the command notices within seconds and stops in its own terms."""
    matrix = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\npreprocess = []\n[experiments.B]\npreprocess = []\n")
    with stand_in_cluster(cpus=1) as address:
        command = subprocess.Popen([sys.executable, "-m", "feph_finetune", str(matrix), "--output", str(tmp_path / "runs"), "--executor", "ray",
                                    "--set", f"executor.ray.address={address}"], cwd=REPO, env={**os.environ, **ACCEPTED},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            lines = Lines(command)
            lines.until("started ")
            os.kill(gcs_server_of(stand_in_cluster.folder), signal.SIGKILL)
            lines.until("to continue, run: python -m feph_finetune")
            assert command.wait(timeout=120) == 2, "".join(lines.seen)
        finally:
            if command.poll() is None:
                command.kill()
                command.wait()
    said = "".join(lines.seen)
    assert f"error: lost the Ray cluster at {address}: its GCS at " in said, said
    assert "\x1b[" not in said and "rpc_client" not in said, said
