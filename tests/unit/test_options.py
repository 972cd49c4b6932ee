import pytest

from kagent.errors import ExitCode, UsageError
from kagent.options import parse_component_list, parse_extra_args, parse_labels, parse_taints


def test_labels_sorted_and_deduplicated_last_wins():
    assert parse_labels("b=2, a=1,b=3") == (("a", "1"), ("b", "3"))


@pytest.mark.parametrize("bad", ["novalue", "=x", "a=b c", "UPPER/key=x"])
def test_bad_label_is_usage_error_naming_flag_and_value(bad):
    with pytest.raises(UsageError) as e:
        parse_labels(bad)
    assert e.value.where == "--labels" and repr(bad) in e.value.what
    assert e.value.exit_code == ExitCode.USAGE


def test_taints():
    assert parse_taints("dedicated=db:NoSchedule,gpu:NoExecute") == ("dedicated=db:NoSchedule", "gpu:NoExecute")
    with pytest.raises(UsageError, match="not a taint"):
        parse_taints("dedicated=db:Never")


def test_extra_args_forms_and_values_with_double_dash_kept():
    got = parse_extra_args('--v=2 --node-ip 10.0.0.5 --fail-swap-on --eviction-hard="memory.available<5%" --x=a--b')
    assert got == (("v", "2"), ("node-ip", "10.0.0.5"), ("fail-swap-on", "true"),
                   ("eviction-hard", "memory.available<5%"), ("x", "a--b"))


def test_extra_args_rejects_positional():
    with pytest.raises(UsageError, match="not a --flag"):
        parse_extra_args("v=2")


def test_component_list_validates_names():
    assert parse_component_list("kubelet", ("containerd", "kubelet")) == frozenset({"kubelet"})
    with pytest.raises(UsageError) as e:
        parse_component_list("kubelt", ("containerd", "kubelet"))
    assert "valid names: containerd, kubelet" in (e.value.hint or "")
