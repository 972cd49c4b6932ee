from pathlib import Path

from kagent.components.spec import ComponentSpec, FileSpec, OnChange, TcpCheck
from kagent.supervisor.reload import diff


def spec(name: str, *args: str, **kw) -> ComponentSpec:
    return ComponentSpec(name=name, binary=Path("/bin/sleep"), args=args, **kw)


def test_diff_sorts_every_component_into_one_action():
    old = [spec("same"), spec("args", "1"), spec("gone"), spec("health"),
           spec("sig", on_change=OnChange.SIGNAL, files=(FileSpec(path=Path("/x"), data=b"1"),)),
           spec("sigargs", "1", on_change=OnChange.SIGNAL)]
    new = [spec("same"), spec("args", "2"), spec("health", health=TcpCheck(host="h", port=1)),
           spec("sig", on_change=OnChange.SIGNAL, files=(FileSpec(path=Path("/x"), data=b"2"),)),
           spec("sigargs", "2", on_change=OnChange.SIGNAL), spec("new")]
    plan = diff(old, new)
    assert plan.unchanged == ("same",)
    assert plan.restart == ("args", "sigargs")  # an argv change cannot be applied by a signal
    assert plan.signal == ("sig",)
    assert plan.update == ("health",)
    assert plan.added == ("new",) and plan.removed == ("gone",)
    assert not plan.is_noop
    assert diff(new, new).is_noop


def test_a_file_change_restarts_a_restart_component():
    old = [spec("a", files=(FileSpec(path=Path("/x"), data=b"1"),))]
    new = [spec("a", files=(FileSpec(path=Path("/x"), data=b"2"),))]
    assert diff(old, new).restart == ("a",)
