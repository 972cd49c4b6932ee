"""Golden argv and rendered files per component, role and config (refresh: UPDATE_GOLDEN=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kagent.components import specs_for
from kagent.components.spec import ComponentSpec
from tests.unit.components.cases import golden_cases

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CASES = golden_cases()


def spec_of(case) -> ComponentSpec:
    found = [s for s in specs_for(case.context) if s.name == case.component]
    assert found, f"{case.component} not enabled for {case.stem}"
    return found[0]


def render_files(spec: ComponentSpec) -> str:
    parts = []
    for f in spec.files:
        parts.append(f"==> {f.path} (mode {f.mode:04o}) <==\n{f.data.decode()}")
    return "\n".join(parts)


def check(path: Path, actual: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review the diff"
    assert actual == path.read_text(), f"{path.name} differs from the golden file (UPDATE_GOLDEN=1 to refresh, then review)"


# the v3 cases only change containerd's config file; their argv is the v2 one
ARG_CASES = [c for c in CASES if not c.variant.startswith("v3")]


@pytest.mark.parametrize("case", ARG_CASES, ids=[c.stem for c in ARG_CASES])
def test_argv_matches_golden(case):
    spec = spec_of(case)
    check(GOLDEN / "args" / f"{case.stem}.args", "\n".join(spec.argv) + "\n")


FILE_CASES = [c for c in CASES if c.component in ("containerd", "kubelet", "kube-apiserver")]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.stem for c in FILE_CASES])
def test_rendered_files_match_golden(case):
    spec = spec_of(case)
    check(GOLDEN / "files" / f"{case.stem}.files", render_files(spec))


def test_golden_dir_has_no_orphans():
    """A renamed case must not leave a stale golden file behind."""
    expected = {f"{c.stem}.args" for c in ARG_CASES}
    assert {p.name for p in (GOLDEN / "args").glob("*.args")} == expected
    expected_files = {f"{c.stem}.files" for c in FILE_CASES}
    assert {p.name for p in (GOLDEN / "files").glob("*.files")} == expected_files
