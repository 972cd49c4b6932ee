"""The import-layer contract (docs/design.md "Layers"): cli -> agent -> edge -> pure.

A module may import modules of its own layer or of a lower one, never a higher one; a pure
module also imports none of the effectful standard modules below. Every ``import`` counts,
also the lazy ones inside functions and those under ``TYPE_CHECKING`` (a type is a
dependency too).

Adding a module: add one row to ``LAYERS`` (the most specific pattern wins: an exact module
name beats ``package.*``). A module no row matches is ``edge``, which may import edge and pure
modules; a new pure module must be listed as pure, or pure modules cannot import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PURE, EDGE, AGENT, CLI = "pure", "edge", "agent", "cli"
RANK = {PURE: 0, EDGE: 1, AGENT: 2, CLI: 3}
DEFAULT = EDGE

# pattern -> layer. "pkg.*" matches pkg and everything under it; an exact name beats a pattern,
# a longer pattern beats a shorter one.
LAYERS: dict[str, str] = {
    # the command line: parses flags, calls one function, prints
    "kagent.cli.*": CLI,
    "kagent.__main__": CLI,
    "kagent.cli.app": AGENT,  # the application context the agent and the commands share
    # composition roots: wire edges and pure code for one operation
    "kagent.agent": AGENT,
    "kagent.reset": AGENT,
    "kagent.backup": AGENT,
    "kagent.backup_schedule": AGENT,
    # the pure core: data and functions, no I/O, no clock, no processes
    "kagent": PURE,  # the package's __init__ (the version string)
    "kagent.errors": PURE,
    "kagent.modes": PURE,
    "kagent.paths": PURE,
    "kagent.urls": PURE,
    "kagent.versions": PURE,
    "kagent.kubeconfig": PURE,
    "kagent.config.*": PURE,
    "kagent.components.*": PURE,
    "kagent.node.model": PURE,  # NodeFacts and Detected: what the edge found, as data
    "kagent.pki.plan": PURE,
    "kagent.pki.issue": PURE,
    "kagent.pki.check": PURE,
    "kagent.pki.model": PURE,  # CertRequest, Usage: what a leaf says, without cryptography
    "kagent.pki.wire": PURE,  # the PKI child's JSON protocol
    "kagent.pki": PURE,
    "kagent.supervisor": PURE,
    "kagent.supervisor.policy": PURE,
    "kagent.supervisor.reload": PURE,
    "kagent.supervisor.order": PURE,
    "kagent.supervisor.machine": PURE,
    "kagent.join": PURE,  # the package __init__
    "kagent.join.token": PURE,  # token encode/parse
    "kagent.join.nodes": PURE,  # node names, kubelet CSR rules, node records
    "kagent.service": PURE,  # the package __init__
    "kagent.service.render": PURE,  # unit/init-script text from a ServiceSpec
    # the edges: files, processes, sockets, the clock (also the default for unlisted modules)
    "kagent.fsutil": EDGE,
    "kagent.log": EDGE,
    "kagent.cancel": EDGE,  # a worker thread's cancel event (threading)
    "kagent.bins": EDGE,
    "kagent.binfetch": EDGE,
    "kagent.airgap": EDGE,
    "kagent.sysinfo": EDGE,
    "kagent.node.*": EDGE,
    "kagent.pki.store": EDGE,
    "kagent.pki.child": EDGE,  # runs the PKI in a short-lived child process
    "kagent.supervisor.*": EDGE,
    "kagent.join.*": EDGE,
    "kagent.service.*": EDGE,
}

# what a pure module must not import (I/O, processes, sockets, event loops)
EFFECTFUL_STDLIB = frozenset({"subprocess", "socket", "asyncio", "fcntl", "shutil", "psutil", "threading",
                              "multiprocessing", "selectors", "http", "urllib.request", "ssl", "tempfile"})

ROOT = Path(__file__).resolve().parents[2] / "kagent"


def layer_of(module: str) -> str:
    if module in LAYERS:
        return LAYERS[module]
    best, best_len = DEFAULT, -1
    for pattern, layer in LAYERS.items():
        if pattern.endswith(".*"):
            base = pattern[:-2]
            if (module == base or module.startswith(base + ".")) and len(base) > best_len:
                best, best_len = layer, len(base)
    return best


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def imports_of(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports (absolute names; ``from a import b`` is ``a.b`` when
    that is a module of ours)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            for a in node.names:
                if f"{mod}.{a.name}" in MODULES:
                    out.add(f"{mod}.{a.name}")
    return out


def test_layer_table_names_only_known_layers() -> None:
    assert set(LAYERS.values()) <= set(RANK)
    assert layer_of("kagent.supervisor.manager") == EDGE
    assert layer_of("kagent.supervisor.reload") == PURE
    assert layer_of("kagent.cli.app") == AGENT
    assert layer_of("kagent.something_new") == DEFAULT


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_no_higher_layer(module: str) -> None:
    mine = layer_of(module)
    bad = []
    for imp in sorted(imports_of(module, MODULES[module])):
        if imp == "kagent" or imp.startswith("kagent."):
            theirs = layer_of(imp)
            if RANK[theirs] > RANK[mine]:
                bad.append(f"{imp} ({theirs})")
        elif mine == PURE and (imp in EFFECTFUL_STDLIB or imp.split(".")[0] in EFFECTFUL_STDLIB):
            bad.append(f"{imp} (effectful standard module)")
    assert not bad, (f"{module} is {mine} but imports {', '.join(bad)}; move the code to the right layer, "
                     "or classify the module in LAYERS of tests/unit/test_layers.py")


def test_detected_lives_with_the_node_code() -> None:
    from kagent.components import context
    from kagent.node import model

    assert model.Detected.__module__ == "kagent.node.model"
    assert not hasattr(context, "Detected") or context.Detected is model.Detected
