from kagent.supervisor.status import render_plan, render_text

DOC = {
    "agent": {"pid": 42, "role": "controller", "version": "0.1.0", "uptime_s": 3725.2},
    "components": [
        {"name": "etcd", "state": "running", "pid": 100, "restarts": 0, "health": "healthy", "uptime_s": 65.0,
         "last_exit": None},
        {"name": "kube-apiserver", "state": "backoff", "pid": None, "restarts": 3, "health": "unknown",
         "uptime_s": None, "last_exit": {"code": 1, "at": "2026-01-01T00:00:00+00:00"}},
    ],
}


def test_render_text_is_a_table():
    assert render_text(DOC).splitlines() == [
        "kagent 0.1.0  role controller  pid 42  up 1h02m",
        "COMPONENT       STATE    PID  RESTARTS  UPTIME  HEALTH   LAST EXIT",
        "etcd            running  100  0         1m05s   healthy  -",
        "kube-apiserver  backoff  -    3         -       unknown  code 1",
    ]


def test_render_plan():
    assert render_plan({"restarted": ["b"], "started": [], "stopped": ["c"], "unchanged": ["a"]}) == \
        "restarted: b\nstopped: c\nunchanged: a"
    assert render_plan({"unchanged": []}) == "nothing changed"
    assert render_plan({"unchanged": ["etcd"], "backup": "stopped"}) == "backup: stopped\nunchanged: etcd"
