"""kagent/service/render.py against the real templates of systemd/ and openrc/: the unit
directives the issue names, quoting that survives hostile arguments (checked by a real POSIX
shell for OpenRC), env validation, marker handling."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kagent.errors import UsageError
from kagent.service.install import load_template
from kagent.service.render import (Init, ServiceSpec, parse_env, render_service, systemd_env, systemd_word,
                                   unit_relpath)

HOSTILE = ["--labels=a=b", "--kubelet-extra-args=--x='q' $HOME `id` \"d\" 50%", "with space", ""]


def spec(init: Init, role: str = "controller", **kw: object) -> ServiceSpec:
    base: dict[str, object] = {"role": role, "init": init, "executable": Path("/usr/local/bin/kagent")}
    base.update(kw)
    return ServiceSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["controller", "worker"])
def test_systemd_unit_has_the_directives(role: str) -> None:
    text = render_service(spec(Init.SYSTEMD, role, args=("--data-dir=/srv/k",)), load_template(Init.SYSTEMD, role))
    lines = set(text.splitlines())
    for d in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=process", "Delegate=yes",
              "Restart=always", "RestartSec=5", "LimitNOFILE=999999", "TasksMax=infinity", "NotifyAccess=main",
              "ConditionFileIsExecutable=/usr/local/bin/kagent", "WantedBy=multi-user.target"):
        assert d in lines, d
    assert f"ExecStart=/usr/local/bin/kagent {role} --data-dir=/srv/k" in lines
    assert not [ln for ln in lines if ln.startswith("Environment=")]
    assert "@" not in text.replace("multi-user", "")  # no marker left


def test_systemd_words_escape_what_systemd_would_expand() -> None:
    assert systemd_word("--data-dir=/srv/k") == "--data-dir=/srv/k"
    assert systemd_word("a b") == '"a b"'
    assert systemd_word("") == '""'
    assert systemd_word('say "hi"') == '"say \\"hi\\""'
    assert systemd_word("$HOME") == '"$$HOME"'  # ExecStart expands $VAR: doubled
    assert systemd_word("50%") == '"50%%"'  # specifiers: doubled
    assert systemd_word("back\\slash") == '"back\\\\slash"'
    assert systemd_env("A", 'x "y" 5% $Z') == 'Environment="A=x \\"y\\" 5%% $Z"'  # $ is literal here


def test_openrc_script_reproduces_every_argument_in_a_real_shell(tmp_path: Path) -> None:
    env = (("HTTPS_PROXY", "http://p:3128"), ("ODD", "it's $HOME `id`"))
    text = render_service(spec(Init.OPENRC, args=tuple(HOSTILE), env=env), load_template(Init.OPENRC, "controller"))
    script = tmp_path / "kagentcontroller"
    script.write_text(text)
    assert text.startswith("#!/sbin/openrc-run\n")
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    # openrc-run sources the script and evals command_args: do the same and compare
    probe = ('. "$1"; eval "set -- $command_args"; printf "%s\\0" "$command" "$supervisor" "$rc_ulimit" '
             '"$HTTPS_PROXY" "$ODD" "$@"')
    out = subprocess.run(["sh", "-c", probe, "sh", str(script)], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split("\0")[:-1]
    assert out[:5] == ["/usr/local/bin/kagent", "supervise-daemon", "-n 999999 -u unlimited", "http://p:3128",
                       "it's $HOME `id`"]
    assert out[5:] == ["controller", *HOSTILE]


def test_paths_and_modes() -> None:
    assert str(unit_relpath(Init.SYSTEMD, "worker")) == "etc/systemd/system/kagentworker.service"
    assert str(unit_relpath(Init.OPENRC, "controller")) == "etc/init.d/kagentcontroller"


def test_env_validation_names_the_bad_item() -> None:
    assert parse_env(("A=1", "B_2=x=y", "EMPTY=")) == (("A", "1"), ("B_2", "x=y"), ("EMPTY", ""))
    for bad in ("NOEQUALS", "1A=x", "A-B=x", "=x"):
        with pytest.raises(UsageError, match="-e") as e:
            parse_env((bad,))
        assert repr(bad) in e.value.what
    with pytest.raises(UsageError, match="newline"):
        parse_env(("A=x\ny",))


def test_bad_specs_are_refused() -> None:
    tpl = load_template(Init.SYSTEMD, "controller")
    with pytest.raises(UsageError, match="newline"):
        render_service(spec(Init.SYSTEMD, args=("--labels=a\nExecStartPre=/bin/evil",)), tpl)
    with pytest.raises(UsageError, match="absolute"):
        render_service(spec(Init.SYSTEMD, executable=Path("kagent")), tpl)
    with pytest.raises(UsageError, match="role"):
        render_service(spec(Init.SYSTEMD, role="etcd"), tpl)
    with pytest.raises(UsageError, match="whitespace"):
        render_service(spec(Init.OPENRC, executable=Path("/opt/my kagent")), load_template(Init.OPENRC, "worker"))
    with pytest.raises(ValueError, match="@BOGUS@"):
        render_service(spec(Init.SYSTEMD), tpl + "X=@BOGUS@\n")


def test_a_value_that_looks_like_a_marker_is_not_substituted() -> None:
    text = render_service(spec(Init.SYSTEMD, args=("--labels=x=@ENVIRONMENT@",), env=(("A", "1"),)),
                          load_template(Init.SYSTEMD, "controller"))
    assert "ExecStart=/usr/local/bin/kagent controller --labels=x=@ENVIRONMENT@" in text.splitlines()
    assert text.count('Environment="A=1"') == 1
