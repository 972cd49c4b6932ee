"""bench/benchlog.py: a benchmark's own kagent log events go to a file in its temp dir (stdout
carries the results only, as bench/join.py and bench/etcd_failover.py print them), and the
logs' tails reach stderr only when the benchmark fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import benchlog  # noqa: E402

from kagent import log  # noqa: E402


def test_events_go_to_the_bench_log_not_to_stdout_or_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "agent.log").write_text("agent line\n")
    with benchlog.logs_in(tmp_path):
        log.get().info("pki_file_written", path="/x/ca.crt")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    events = [json.loads(line) for line in (tmp_path / "bench.log").read_text().splitlines()]
    assert [e["event"] for e in events] == ["pki_file_written"]
    log.get().info("after_the_bench")  # afterwards: stderr again, not the closed file
    assert "after_the_bench" in capfd.readouterr().err


def test_a_failure_prints_the_tails_of_the_logs(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "agent-1.log").write_text("".join(f"line {i}\n" for i in range(100)))
    with pytest.raises(SystemExit):
        with benchlog.logs_in(tmp_path):
            log.get().error("controller_exited")
            raise SystemExit("controller exited 5")
    out, err = capfd.readouterr()
    assert out == ""
    assert f"--- {tmp_path / 'c1' / 'agent-1.log'} (last 30 lines)" in err
    assert "  line 99" in err and "  line 69" not in err and "controller_exited" in err
