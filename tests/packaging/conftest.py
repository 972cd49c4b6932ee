"""The single file, the wheel and the sdist, built once per test session by the one command
operators use (packaging/build.sh; its tool venv is build/venv, kept between runs)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO


@dataclass(frozen=True)
class Built:
    exe: Path
    wheel: Path
    sdist: Path
    cache: Path  # KAGENT_BUNDLE_DIR of the tests: where the file unpacks itself (never /var/cache)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([str(REPO / "packaging" / "build.sh"), str(out)], capture_output=True, text=True, timeout=900,
                       cwd=REPO, env={k: v for k, v in os.environ.items() if not k.startswith("KAGENT_")})
    assert r.returncode == 0, f"packaging/build.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    wheels, sdists = list(out.glob("kagent-*.whl")), list(out.glob("kagent-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    cache = tmp_path_factory.mktemp("bundle")
    cache.chmod(0o700)
    return Built(exe=out / "kagent", wheel=wheels[0], sdist=sdists[0], cache=cache)


def clean_env(built: Built, **extra: str) -> dict[str, str]:
    """What a bare Debian host gives a root shell: no Python variables, no venv on PATH (and
    the test session's bundle cache)."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
            "KAGENT_BUNDLE_DIR": str(built.cache), **extra}
