from pathlib import Path

from kagent.node.kernel import SYSCTLS, Outcome, apply_kernel_setup, loaded_modules


def _fake_roots(tmp_path: Path, modules: str, sysctl_values: dict[str, str]) -> tuple[Path, Path]:
    proc, sys_ = tmp_path / "proc", tmp_path / "sys"
    (proc / "sys").mkdir(parents=True)
    (sys_ / "module").mkdir(parents=True)
    (proc / "modules").write_text(modules)
    for key, val in sysctl_values.items():
        p = proc / "sys" / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(val + "\n")
    return proc, sys_


def test_loaded_modules_parses_proc_modules():
    text = "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n"
    assert loaded_modules(text) == {"overlay", "br_netfilter"}


def test_sysctls_written_already_set_left_and_missing_skipped(tmp_path):
    mods = "overlay 1 0 - Live 0\nnf_conntrack 1 0 - Live 0\nbr_netfilter 1 0 - Live 0\nip_tables 1 0 - Live 0\n"
    values = {k: "0" for k in SYSCTLS if "bridge" not in k}
    values["net/ipv4/conf/all/forwarding"] = "1"
    proc, sys_ = _fake_roots(tmp_path, mods, values)
    steps = {(s.kind, s.name): s for s in apply_kernel_setup(proc_root=proc, sys_root=sys_, modprobe="/bin/false")}
    assert all(steps[("module", m)].outcome is Outcome.ALREADY for m in ("overlay", "br_netfilter"))
    assert steps[("sysctl", "net/ipv4/conf/all/forwarding")].outcome is Outcome.ALREADY
    assert steps[("sysctl", "net/ipv4/conf/default/forwarding")].outcome is Outcome.DONE
    assert (proc / "sys/net/ipv4/conf/default/forwarding").read_text() == "1\n"
    assert steps[("sysctl", "net/bridge/bridge-nf-call-iptables")].outcome is Outcome.SKIPPED


def test_failed_modprobe_and_unwritable_sysctl_are_reported_not_raised(tmp_path):
    proc, sys_ = _fake_roots(tmp_path, "", {})
    # /proc/version is read-only even for root: stands in for a read-only /proc/sys entry
    target = proc / "sys/net/ipv4/conf/all/forwarding"
    target.parent.mkdir(parents=True)
    target.symlink_to("/proc/version")
    steps = apply_kernel_setup(proc_root=proc, sys_root=sys_, modprobe="/bin/false")
    by = {(s.kind, s.name): s for s in steps}
    assert by[("module", "overlay")].outcome is Outcome.FAILED
    failed = by[("sysctl", "net/ipv4/conf/all/forwarding")]
    assert failed.outcome is Outcome.FAILED and "value stays" in failed.detail
