"""Checkpoint signals in one process: which signals ``HPCFRAME_CHECKPOINT_SIGNALS`` names, the
handler only records the request (the engine stops at a block boundary), the request file, and
a serial computation stopped by a real SIGUSR1 raises JobCheckpointed (exit code 75)."""

import os
import signal

import pandas as pd
import pytest

import hpcframe as hf
from hpcframe import comm as C
from hpcframe.errors import CHECKPOINT_EXIT, HpcframeError, JobCheckpointed, exit_code


@pytest.fixture(autouse=True)
def _clean():
    C.uninstall_checkpoint_handlers()
    yield
    C.uninstall_checkpoint_handlers()


def test_signal_names_are_read_from_the_environment():
    env = {C.CHECKPOINT_ENV: "USR1, SIGTERM,usr2,USR1"}
    assert C.checkpoint_signals(env) == [signal.SIGUSR1, signal.SIGTERM, signal.SIGUSR2]
    assert C.checkpoint_signals({}) == []


@pytest.mark.parametrize(
    "value,words", [("USR9", "'USR9' is not a signal"), ("INT", "cannot be a checkpoint")]
)
def test_bad_signal_names_are_refused_naming_them(value, words):
    with pytest.raises(HpcframeError, match=words):
        C.checkpoint_signals({C.CHECKPOINT_ENV: value})


def test_the_handler_records_the_signal_and_restores_the_old_one():
    before = signal.getsignal(signal.SIGUSR1)
    assert C.install_checkpoint_handlers([signal.SIGUSR1]) == [signal.SIGUSR1]
    assert C.checkpoint_requested() is None
    os.kill(os.getpid(), signal.SIGUSR1)
    assert C.checkpoint_requested() == "SIGUSR1"
    C.uninstall_checkpoint_handlers()
    assert signal.getsignal(signal.SIGUSR1) == before and C.checkpoint_requested() is None


def test_a_request_file_asks_like_a_signal(tmp_path, monkeypatch):
    flag = tmp_path / "checkpoint.request"
    monkeypatch.setenv(C.CHECKPOINT_FILE_ENV, str(flag))
    C.install_checkpoint_handlers([signal.SIGUSR1])
    C._checkpoint_polled[0] = 0.0
    assert C.checkpoint_requested() is None
    flag.write_text("")
    C._checkpoint_polled[0] = 0.0
    assert "checkpoint request" in C.checkpoint_requested()


def test_a_serial_computation_stops_at_a_block_boundary(monkeypatch):
    monkeypatch.setenv(C.CHECKPOINT_ENV, "USR1")
    seen = []

    def work(part):
        seen.append(len(part))
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGUSR1)  # during the 2nd block: it is finished
        return len(part)

    frame = hf.from_pandas(pd.DataFrame({"x": range(40)}), npartitions=4)
    with pytest.raises(JobCheckpointed) as err:
        frame.map_partitions(work, combine=sum).compute()
    assert len(seen) == 2  # the 3rd and 4th blocks were not started
    assert "SIGUSR1 arrived; this rank stopped at a block boundary" in str(err.value)
    assert exit_code(err.value) == CHECKPOINT_EXIT == 75
    assert C.checkpoint_agreed()
