from datetime import timedelta

from kagent.agent import renew_interval_for


def test_renew_interval_is_a_quarter_of_the_window_within_bounds():
    assert renew_interval_for(timedelta(days=30)) == 3600.0
    assert renew_interval_for(timedelta(seconds=30)) == 7.5
    assert renew_interval_for(timedelta(seconds=2)) == 1.0
