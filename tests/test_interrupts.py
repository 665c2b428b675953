"""Ctrl-C, SIGTERM and SIGHUP stop a command the same way (KeyboardInterrupt, exit 130), and no
interrupt, whenever it lands, leaves an atomic writer's temporary file or folder behind."""

from __future__ import annotations

import os
import signal

import pytest

from feph_finetune.interrupts import STOP_SIGNALS, interrupts_deferred, stop_signals_as_interrupt
from feph_finetune.results import store
from feph_finetune.results.store import atomic_folder, atomic_path

SIGNALS = [signal.SIGINT, *STOP_SIGNALS]
WRITERS = {"file": atomic_path, "folder": atomic_folder}


def leftovers(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_sighup_is_a_stop_signal():
    assert signal.SIGHUP in STOP_SIGNALS and signal.SIGTERM in STOP_SIGNALS


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("stop", SIGNALS)
def test_an_interrupt_while_writing_leaves_nothing(stop, writer, tmp_path):
    target = tmp_path / "out" / "target"
    with stop_signals_as_interrupt(), pytest.raises(KeyboardInterrupt):
        with WRITERS[writer](target) as temporary:
            (temporary / "part").write_text("half") if writer == "folder" else temporary.write_text("half")
            os.kill(os.getpid(), stop)
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("stop", SIGNALS)
def test_an_interrupt_as_the_temporary_is_created_leaves_nothing(stop, writer, tmp_path, monkeypatch):
    """The signal lands after the temporary exists but before the writer knows its name."""
    create = store._create_temporary

    def create_then_interrupt(path, folder=False):
        name = create(path, folder=folder)
        os.kill(os.getpid(), stop)
        return name

    monkeypatch.setattr(store, "_create_temporary", create_then_interrupt)
    with stop_signals_as_interrupt(), pytest.raises(KeyboardInterrupt):
        with WRITERS[writer](tmp_path / "target"):
            pass
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("stop", SIGNALS)
def test_a_deferred_interrupt_arrives_when_the_block_ends(stop):
    steps = []
    with stop_signals_as_interrupt(), pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), stop)
            steps.append("finished the step")
        steps.append("after the block")
    assert steps == ["finished the step"]


def test_the_previous_handlers_are_put_back():
    before = {number: signal.getsignal(number) for number in SIGNALS}
    with stop_signals_as_interrupt():
        with interrupts_deferred():
            pass
    assert {number: signal.getsignal(number) for number in SIGNALS} == before


@pytest.mark.parametrize("stop", SIGNALS)
def test_every_command_exits_130_on_each_stop_signal(stop, tmp_path):
    """``guarded`` wraps every command: whatever it writes when the signal lands is removed."""
    from rich.console import Console

    from feph_finetune.cli import guarded

    def command(args, console):
        with atomic_folder(tmp_path / "written"):
            os.kill(os.getpid(), stop)
        return 0

    quiet = Console(quiet=True)
    assert guarded(command, None, quiet, quiet) == 130
    assert leftovers(tmp_path) == []
