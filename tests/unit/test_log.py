"""kagent.log: where log lines go, and that a failing stderr never raises into the caller."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from kagent import log


@pytest.fixture
def json_logging():
    saved, was = structlog.get_config(), log._configured
    log.configure(fmt="json", verbose=False, debug=False)
    yield
    structlog.configure(**saved)
    log._configured = was


def test_log_lines_follow_sys_stderr_when_it_is_replaced(json_logging, monkeypatch):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log.get().info("one_event")
    monkeypatch.setattr(sys, "stderr", second)
    log.get().info("two_event")
    assert json.loads(first.getvalue())["event"] == "one_event"
    assert json.loads(second.getvalue())["event"] == "two_event"


def test_a_full_disk_or_a_closed_stderr_drops_lines_and_says_so_when_writing_works_again(json_logging, monkeypatch):
    full = open("/dev/full", "w")  # every write: ENOSPC, as a full disk behind a redirect
    closed = io.StringIO()
    closed.close()
    try:
        monkeypatch.setattr(sys, "stderr", full)
        log.get().warning("lost_on_a_full_disk", component="etcd")  # no exception into the caller
        monkeypatch.setattr(sys, "stderr", closed)
        log.get().info("lost_on_a_closed_file")
        back = io.StringIO()
        monkeypatch.setattr(sys, "stderr", back)
        log.get().info("after")
    finally:
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
        try:
            full.close()
        except OSError:
            pass  # its buffered bytes cannot be written either
    lines = [json.loads(ln) for ln in back.getvalue().splitlines()]
    assert lines[0] == {"event": "log_lines_dropped", "count": 2, "level": "warning"}
    assert lines[1]["event"] == "after" and len(lines) == 2
