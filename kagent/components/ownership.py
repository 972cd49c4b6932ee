"""Pure. Who must own what, from the specs (privilege separation as k0s, reference/k0s.md §2):
each component with a ``run_as`` user owns its dirs (etcd's data dir, kine's db and socket dirs,
konnectivity's socket dir), and the private files it ``reads`` (keys, kubeconfigs). A private
file read by one user is owned by it (0600); read by two users it is owned by the first and
readable by the second's group (0640). The edge (``kagent/node/users.py``) applies the plan.
Components without ``run_as`` (containerd, kubelet) and ``root`` need nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kagent.components.spec import ComponentSpec
from kagent.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DirOwner:
    path: Path
    mode: int
    user: str  # recursive: everything under the dir belongs to the component


@dataclass(frozen=True, slots=True)
class FileOwner:
    path: Path
    user: str
    group_of: str | None = None  # a second reader: the file gets this user's primary group, 0640

    @property
    def mode(self) -> int:
        return 0o640 if self.group_of else 0o600


@dataclass(frozen=True, slots=True)
class OwnershipPlan:
    users: tuple[str, ...]  # every system user a spec runs as, in start order
    dirs: tuple[DirOwner, ...]
    files: tuple[FileOwner, ...]  # applied to private files only (the edge skips world-readable ones)
    # (user, component, path, "exec" | "read"): what each user must reach and run or read
    reach: tuple[tuple[str, str, Path, str], ...]
    # (binary, user): the edge gives a binary in kagent's own bin dir (0750 root) the group of
    # the one user that runs it, so it stays 0750 and that user can execute it
    binaries: tuple[tuple[Path, str], ...] = ()


def component_user(spec: ComponentSpec) -> str | None:
    return spec.run_as if spec.run_as not in (None, "root") else None


def plan_ownership(specs: Sequence[ComponentSpec]) -> OwnershipPlan:
    users: list[str] = []
    dirs: list[DirOwner] = []
    readers: dict[Path, list[str]] = {}
    reach: list[tuple[str, str, Path, str]] = []
    binaries: dict[Path, list[str]] = {}
    for spec in specs:
        user = component_user(spec)
        if user is None:
            continue
        if user not in users:
            users.append(user)
        dirs.extend(DirOwner(path=d, mode=m, user=user) for d, m in spec.dirs)
        for f in spec.reads:
            names = readers.setdefault(f, [])
            if user not in names:
                names.append(user)
        runners = binaries.setdefault(spec.binary, [])
        if user not in runners:
            runners.append(user)
        reach += [(user, spec.name, spec.binary, "exec"), *((user, spec.name, f, "read") for f in spec.reads),
                  *((user, spec.name, f.path, "read") for f in spec.files)]
    files = []
    for path, names in readers.items():
        if len(names) > 2:
            raise ConfigError("spec.install.users", f"{path} is read by {len(names)} different users ({', '.join(names)})",
                              hint="a private file can be shared by two users at most; give two of them the same user")
        files.append(FileOwner(path=path, user=names[0], group_of=names[1] if len(names) == 2 else None))
    # a binary run by two users (one file for two components) keeps its mode: the reach check decides
    execs = tuple((path, names[0]) for path, names in binaries.items() if len(names) == 1)
    return OwnershipPlan(users=tuple(users), dirs=tuple(dirs), files=tuple(files), reach=tuple(reach), binaries=execs)
