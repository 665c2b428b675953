"""The ``ray`` executor against a cluster of its own (``ray start --head`` on 127.0.0.1, as a
user's cluster is started), where the local cluster of ``tests/test_ray_executor.py`` cannot show
the case: a cluster that refuses the driver's token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from conftest import REPO

#: A token the stand-in cluster accepts, and one it refuses (Ray's tokens: 32+ characters).
GOOD_TOKEN, BAD_TOKEN = "a" * 40, "b" * 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def stand_in_cluster(cpus: int = 1, env: dict | None = None) -> Iterator[str]:
    """A Ray cluster started with ``ray start --head --block`` on 127.0.0.1 in a session of its
    own, its files in a short temporary folder (Ray's sockets need short paths); yields its
    address and kills its process group after."""
    port, folder = free_port(), tempfile.mkdtemp(prefix="rs", dir="/tmp")
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(cpus), "--temp-dir", folder, "--include-dashboard", "false", "--disable-usage-stats"]
    cluster = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
    with stand_in_cluster(env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": GOOD_TOKEN}) as address:
        connect = f"from feph_finetune.execution.executors.ray_connect import connect; connect({address!r}, 8)"
        driver = subprocess.run([sys.executable, "-c", connect], cwd=REPO, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": BAD_TOKEN})
    assert f"ExecutorError: cannot connect to the Ray cluster at {address}" in driver.stderr, driver.stderr
    assert "InvalidAuthToken: Authentication token is missing or incorrect" in driver.stderr, driver.stderr
