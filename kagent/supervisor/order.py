"""Pure. The order of specs: ``start_order`` is a stable topological sort over ``after``;
``dependents`` and ``needing`` walk ``after`` the other way (who must stop first, what must go
with a component). None touches a process, the disk or a clock.

(Apart from ``reload.py``: the agent orders its specs at every start, and reloads are rarer;
the reload diff and its types are imported at the first reload, not on the way to the first
spawn.)
"""

from __future__ import annotations

from typing import Iterable, Sequence

from kagent.components.spec import ComponentSpec
from kagent.errors import ConfigError


def check_specs(specs: Sequence[ComponentSpec]) -> None:
    """Reject duplicate names and unknown dependencies (as a config error: the set is invalid)."""
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ConfigError("components", f"two components are named {s.name!r}")
        seen.add(s.name)
    for s in specs:
        for dep in s.after:
            if dep not in seen:
                raise ConfigError(f"components.{s.name}.after", f"{dep!r} is not a component of this node",
                                  hint="enable that component or drop the dependency")


def start_order(specs: Sequence[ComponentSpec]) -> tuple[ComponentSpec, ...]:
    """Dependencies first; ties keep the given order. A cycle is a config error naming it."""
    check_specs(specs)
    by_name = {s.name: s for s in specs}
    done: set[str] = set()
    out: list[ComponentSpec] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            cycle = " -> ".join((*path[path.index(name):], name))
            raise ConfigError("components", f"dependency cycle: {cycle}")
        for dep in by_name[name].after:
            visit(dep, (*path, name))
        done.add(name)
        out.append(by_name[name])

    for s in specs:
        visit(s.name, ())
    return tuple(out)


def dependents(specs: Sequence[ComponentSpec]) -> dict[str, tuple[str, ...]]:
    """name -> names of the components that list it in ``after`` (who must stop first)."""
    out: dict[str, list[str]] = {s.name: [] for s in specs}
    for s in specs:
        for dep in s.after:
            if dep in out:
                out[dep].append(s.name)
    return {k: tuple(v) for k, v in out.items()}


def needing(specs: Sequence[ComponentSpec], names: Iterable[str]) -> tuple[str, ...]:
    """``names`` and every component that needs one of them (``after``, transitively), in the
    order of ``specs``: what must stop when ``names`` go for good (etcd after a leave)."""
    below = dependents(specs)
    out: set[str] = set()
    todo = [n for n in names if n in below]
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(below[n])
    return tuple(s.name for s in specs if s.name in out)
