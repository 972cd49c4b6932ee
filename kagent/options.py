"""Pure. Parsing and validation of the run flags shared by ``controller``, ``worker`` and
``install`` (labels, taints, --kubelet-extra-args, --disable-components)."""

from __future__ import annotations

import re
import shlex

from kagent.errors import UsageError

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _split_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_labels(text: str, flag: str = "--labels") -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for item in _split_list(text):
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise UsageError(flag, f"{item!r} is not a label", hint="write key=value pairs separated by commas, e.g. --labels region=eu,tier=db")
        out[key] = value
    return tuple(sorted(out.items()))


def parse_taints(text: str, flag: str = "--taints") -> tuple[str, ...]:
    taints: list[str] = []
    for item in _split_list(text):
        kv, sep, effect = item.rpartition(":")
        key = kv.partition("=")[0]
        value = kv.partition("=")[2]
        if not sep or effect not in TAINT_EFFECTS or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise UsageError(flag, f"{item!r} is not a taint", hint=f"write key[=value]:Effect with Effect one of {', '.join(TAINT_EFFECTS)}")
        taints.append(item)
    return tuple(taints)


def parse_extra_args(text: str, flag: str = "--kubelet-extra-args") -> tuple[tuple[str, str], ...]:
    """``"--v=2 --node-ip 10.0.0.5 --fail-swap-on"`` -> (("v","2"),("node-ip","10.0.0.5"),("fail-swap-on","true")).
    Values keep any ``--`` they contain (k0s strips them: reference §10.7)."""
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise UsageError(flag, f"cannot split {text!r}: {err}") from None
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        w = words[i]
        if not w.startswith("--") or len(w) <= 2:
            raise UsageError(flag, f"{w!r} is not a --flag", hint="write flags as --name=value")
        name, sep, value = w[2:].partition("=")
        if not sep:
            if i + 1 < len(words) and not words[i + 1].startswith("--"):
                value = words[i + 1]
                i += 1
            else:
                value = "true"
        out.append((name, value))
        i += 1
    return tuple(out)


def parse_component_list(text: str, valid: tuple[str, ...], flag: str = "--disable-components") -> frozenset[str]:
    names = _split_list(text)
    for n in names:
        if n not in valid:
            raise UsageError(flag, f"{n!r} is not a component", hint=f"valid names: {', '.join(valid)}")
    return frozenset(names)
