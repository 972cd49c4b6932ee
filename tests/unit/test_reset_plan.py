"""The pure half of reset: mountinfo parsing (octal escapes), the deepest-first unmount order,
which processes are provably ours, and the removal plan."""

from __future__ import annotations

from kagent.reset import Mount, Proc, mounts_below, owned_processes, parse_mountinfo, plan_reset, unescape_mount_path

MOUNTINFO = """\
22 27 0:21 / /proc rw,nosuid - proc proc rw
30 27 8:1 / /var/lib/kagent rw - ext4 /dev/sdb1 rw
31 30 0:40 / /var/lib/kagent/kubelet/pods/a\\040b/vol rw shared:1 - tmpfs tmp\\011fs rw
32 30 8:2 /etc /var/lib/kagent/bind rw - ext4 /dev/sda1 rw
33 32 0:41 / /var/lib/kagent/bind rw - tmpfs none rw
34 27 0:42 / /var/lib/kagent-other/x rw - tmpfs none rw
35 27 0:43 / /run/kagent/containerd/rootfs rw - overlay overlay rw
"""


def test_parse_mountinfo_decodes_octal_escapes_and_keeps_order():
    mounts = parse_mountinfo(MOUNTINFO + "garbage line\n")
    assert [m.mount_id for m in mounts] == [22, 30, 31, 32, 33, 34, 35]
    assert mounts[2].point == "/var/lib/kagent/kubelet/pods/a b/vol" and mounts[2].source == "tmp\tfs"
    assert unescape_mount_path(r"/a\134b\012c") == "/a\\b\nc"


def test_unmount_order_is_deepest_first_last_mounted_first_never_the_roots_or_siblings():
    mounts = parse_mountinfo(MOUNTINFO)
    order = mounts_below(mounts, ["/var/lib/kagent", "/run/kagent"])
    assert order == ["/var/lib/kagent/kubelet/pods/a b/vol", "/run/kagent/containerd/rootfs",
                     "/var/lib/kagent/bind", "/var/lib/kagent/bind"]
    assert "/var/lib/kagent" not in order and "/var/lib/kagent-other/x" not in order


def _p(pid, ppid, argv, marker=None, component=None):
    return Proc(pid=pid, ppid=ppid, argv=tuple(argv), marker=marker, component=component)


def test_only_provably_owned_processes_are_targets():
    sock = "/run/kagent/containerd.sock"
    procs = [
        _p(1, 0, ["/sbin/init"]),
        _p(10, 1, ["/usr/bin/containerd"], "me", "containerd"),
        _p(11, 1, ["/usr/bin/etcd"], "other-instance", "etcd"),
        _p(12, 1, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "c1", "-address", sock]),
        _p(13, 12, ["/bin/sleep", "600"]),
        _p(14, 13, ["/bin/sh"]),
        _p(15, 1, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "c2", "-address", "/run/containerd/containerd.sock"]),
        _p(16, 15, ["/bin/sleep", "600"]),
        _p(17, 1, ["/usr/bin/not-a-shim", "-address", sock]),
        _p(99, 1, ["kagent", "reset"], "me"),
    ]
    got = {(t.pid, t.wave) for t in owned_processes(procs, instance="me", containerd_sock=sock, self_pid=99)}
    assert got == {(13, 0), (14, 0), (12, 1), (10, 2)}


def test_plan_removes_roots_but_keeps_a_mounted_data_dir():
    mounts = [Mount(30, 27, "/d", "ext4", "/dev/sdb1"), Mount(31, 30, "/d/kubelet/x", "tmpfs", "none")]
    plan = plan_reset(roots=["/d", "/r"], mounts=mounts, targets=[], entries={"/d": ["pki", "etcd"], "/r": ["kagent.lock"]})
    assert plan.remove == ("/d/etcd", "/d/pki", "/r/kagent.lock", "/r")
    assert plan.keep_mounted == ("/d",) and plan.unmount == ("/d/kubelet/x",)
    empty = plan_reset(roots=["/d", "/r"], mounts=mounts, targets=[], entries={"/d": []})
    assert empty.remove == () and empty.unmount == ("/d/kubelet/x",) and not empty.empty
    assert plan_reset(roots=["/d", "/r"], mounts=mounts[:1], targets=[], entries={"/d": []}).empty


def test_unit_data_dir_reads_systemd_and_openrc_quoting():
    from kagent.reset import unit_data_dir

    assert unit_data_dir('[Service]\nExecStart=/usr/bin/kagent controller "--data-dir=/srv/my data" --init\n') == "/srv/my data"
    assert unit_data_dir("ExecStart=/usr/bin/kagent controller --data-dir /srv/k\n") == "/srv/k"
    assert unit_data_dir("command_args=\"'controller' '--data-dir=/srv/o r' '--init'\"\n") == "/srv/o r"
    assert unit_data_dir("ExecStart=/usr/bin/kagent worker --labels a=b\n") == "/var/lib/kagent"
