from hypothesis import given
from hypothesis import strategies as st

from kagent.supervisor.policy import ExitStatus, RestartPolicy, backoff_schedule, decide_restart

P = RestartPolicy(min_uptime=10, backoff_initial=1, backoff_max=30, factor=2)


def test_a_healthy_run_restarts_at_once_and_resets_the_backoff():
    d = decide_restart(P, started_at=100.0, now=110.0, failures=5)
    assert d.delay == 0 and d.failures == 0


def test_a_crash_loop_doubles_from_1s_to_a_30s_cap():
    assert backoff_schedule(P, 8) == (1, 2, 4, 8, 16, 30, 30, 30)


def test_a_short_run_after_failures_continues_the_sequence():
    d = decide_restart(P, started_at=100.0, now=109.9, failures=2)
    assert d.delay == 4 and d.failures == 3


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.integers(0, 200))
def test_delay_is_always_within_zero_and_the_cap(start, up, failures):
    now = start + up
    d = decide_restart(P, started_at=start, now=now, failures=failures)
    assert 0 <= d.delay <= P.backoff_max
    assert (d.delay == 0) == (now - start >= P.min_uptime)


def test_exit_status_from_returncode():
    assert ExitStatus.from_returncode(-9) == ExitStatus(signal=9)
    assert ExitStatus.from_returncode(3).describe() == "exited with code 3"
    assert ExitStatus(signal=15).describe() == "killed by signal 15"
