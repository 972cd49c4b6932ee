"""Pure. Component modules, each returning a ComponentSpec; the registries per role.

Adding a component: one module with ``NAME``, ``ROLES``, ``enabled(ctx)`` and ``spec(ctx)``,
one line in a registry below, one golden argv file.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from types import ModuleType
from typing import TYPE_CHECKING, Iterable

from kagent.components.spec import ComponentSpec
from kagent.errors import UsageError

if TYPE_CHECKING:
    from kagent.components.context import Context, Role

# The registries name the modules (component name -> module under kagent.components); a module
# is imported when a spec is built or asked for, so importing ``kagent.components.spec`` (the
# supervisor does) costs no component module and no config loader.
# Registry order is the tie-break of start_order (k0s's Add order: storage, konnectivity,
# apiserver, scheduler, controller-manager; then the worker part).
CONTROLLER_REGISTRY: tuple[tuple[str, str], ...] = (
    ("etcd", "etcd"), ("kine", "kine"), ("control-api", "control_api"), ("konnectivity-server", "konnectivity"),
    ("kube-apiserver", "apiserver"), ("kube-scheduler", "scheduler"), ("kube-controller-manager", "controller_manager"),
)
WORKER_REGISTRY: tuple[tuple[str, str], ...] = (("containerd", "containerd"), ("kubelet", "kubelet"))
_MODULE_OF: dict[str, str] = dict(CONTROLLER_REGISTRY + WORKER_REGISTRY)
NAMES: tuple[str, ...] = tuple(_MODULE_OF)  # every component, in registry order


def module_of(name: str) -> ModuleType | None:
    """The module of component ``name`` (imported now), or None when there is no such component."""
    mod = _MODULE_OF.get(name)
    return importlib.import_module(f"kagent.components.{mod}") if mod is not None else None


def _modules(registry: Iterable[tuple[str, str]]) -> tuple[ModuleType, ...]:
    return tuple(importlib.import_module(f"kagent.components.{mod}") for _, mod in registry)


def all_modules() -> tuple[ModuleType, ...]:
    """Every component module, in registry order (each imported now)."""
    return _modules(CONTROLLER_REGISTRY + WORKER_REGISTRY)


# names --disable-components accepts (DESIGN §3)
CONTROLLER_COMPONENTS: tuple[str, ...] = (
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "konnectivity-server", "control-api",
)
WORKER_COMPONENTS: tuple[str, ...] = ("containerd", "kubelet")


def valid_disable_names(role: Role, enable_worker: bool = False) -> tuple[str, ...]:
    from kagent.components.context import Role

    if role == Role.WORKER:
        return ("kubelet",)
    return CONTROLLER_COMPONENTS + (WORKER_COMPONENTS if enable_worker else ())


def parse_disabled(text: str | Iterable[str] | None, role: Role, *, enable_worker: bool = False) -> frozenset[str]:
    """``--disable-components a,b`` -> the set of names; an unknown name is a UsageError listing
    the valid ones for this role."""
    if text is None:
        return frozenset()
    items = [text] if isinstance(text, str) else list(text)
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    from kagent.components.context import Role

    valid = valid_disable_names(role, enable_worker)
    for n in names:
        if n not in valid:
            extra = " (containerd and kubelet with --enable-worker)" if role == Role.CONTROLLER and not enable_worker and n in WORKER_COMPONENTS else ""
            raise UsageError("--disable-components", f"{n!r} is not a {role} component{extra}",
                             hint=f"valid names: {', '.join(valid)}")
    return frozenset(names)


def modules_for(ctx: Context) -> tuple[ModuleType, ...]:
    from kagent.components.context import Role

    mods = all_modules() if ctx.role == Role.CONTROLLER else _modules(WORKER_REGISTRY)
    return tuple(m for m in mods if ctx.role in m.ROLES and m.enabled(ctx))


def specs_for(ctx: Context) -> tuple[ComponentSpec, ...]:
    """Every enabled component's spec for this node, in start order."""
    return start_order(tuple(m.spec(ctx) for m in modules_for(ctx)))


def start_order(specs: Iterable[ComponentSpec]) -> tuple[ComponentSpec, ...]:
    """Stable topological sort on ``after``: among the ready ones the earliest in the input goes
    first. An ``after`` naming a component that is not in the set is dropped from the returned
    spec (an etcd-only controller has no apiserver to wait for), so the supervisor never waits
    for a component that will not come. A cycle is a bug in the registry: ValueError."""
    items = list(specs)
    names = [s.name for s in items]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate component names: {names}")
    present = set(names)
    deps = {s.name: {d for d in s.after if d in present and d != s.name} for s in items}
    done: list[ComponentSpec] = []
    placed: set[str] = set()
    remaining = list(items)
    while remaining:
        for s in remaining:
            if deps[s.name] <= placed:
                pruned = tuple(d for d in s.after if d in deps[s.name])
                done.append(s if pruned == s.after else replace(s, after=pruned))
                placed.add(s.name)
                remaining.remove(s)
                break
        else:
            cycle = ", ".join(f"{s.name} after {sorted(deps[s.name] - placed)}" for s in remaining)
            raise ValueError(f"dependency cycle among components: {cycle}")
    return tuple(done)


