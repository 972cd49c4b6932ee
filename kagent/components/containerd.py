"""Pure. containerd and its config.toml (reference/k0s.md §2.8).

The config is a file of the spec: version 2 for containerd 1.x, version 3 for 2.x (the edge
detects the version from the binary). Registry mirrors are rendered as ``hosts.toml`` files
in a hosts dir named after their content, so a removed or changed mirror can never linger in
a stale file: the config points at the new dir, and the config's bytes change with it, which
restarts containerd (containerd 1.6 does not reload its config on SIGHUP)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from kagent import versions
from kagent.config.containerd_toml import OPT_PLUGIN, RENDERED_TABLES
from kagent.components.common import STOP_TIMEOUT, assemble
from kagent.components.context import Context, Role
from kagent.components.spec import ComponentSpec, FileSpec, OnChange, UnixSocketCheck
from kagent.config.model import ClusterConfig
from kagent.modes import MODE_CONFIG
from kagent.paths import Paths

NAME = "containerd"
ROLES = (Role.WORKER, Role.CONTROLLER)
MANAGED_MARKER = "# kagent_managed=true"
# where a registry's upstream lives when it is not https://<registry>
_UPSTREAM = {"docker.io": "https://registry-1.docker.io"}


def enabled(ctx: Context) -> bool:
    return ctx.runs_worker and not ctx.is_disabled(NAME)


def config_version(version: tuple[int, int]) -> int:
    """containerd 1.x reads config version 2; 2.x reads version 3."""
    return 3 if version[0] >= 2 else 2


def toml_str(s: str) -> str:
    """A TOML basic string (JSON's escapes are a subset TOML accepts)."""
    return json.dumps(s, ensure_ascii=False)


def imports_dir_of(config: ClusterConfig, paths: Paths) -> Path:
    """Where operator drop-ins live: spec.containerd.importsDir, else <config dir>/containerd.d."""
    d = config.containerd.imports_dir
    return Path(d) if d else paths.containerd_imports_dir


def imports_dir(ctx: Context) -> Path:
    return imports_dir_of(ctx.config, ctx.paths)


def hosts_toml(registry: str, endpoints: tuple[str, ...]) -> bytes:
    lines = [MANAGED_MARKER, f"server = {toml_str(_UPSTREAM.get(registry, f'https://{registry}'))}", ""]
    for ep in endpoints:
        lines += [f"[host.{toml_str(ep)}]", '  capabilities = ["pull", "resolve"]', ""]
    return "\n".join(lines).encode()


def hosts_files(ctx: Context) -> tuple[Path, tuple[FileSpec, ...]]:
    """The hosts dir for this mirror set and its ``<registry>/hosts.toml`` files."""
    mirrors = ctx.config.containerd.registry_mirrors
    rendered = {reg: hosts_toml(reg, eps) for reg, eps in sorted(mirrors.items())}
    digest = hashlib.sha256(b"".join(reg.encode() + b"\0" + data for reg, data in rendered.items())).hexdigest()[:12]
    base = ctx.paths.run_dir / "containerd-hosts" / digest
    return base, tuple(FileSpec(path=base / reg / "hosts.toml", data=data, mode=MODE_CONFIG) for reg, data in rendered.items())


def config_toml(ctx: Context, hosts_dir: Path) -> bytes:
    """``version`` and ``imports``, then spec.containerd.extraConfig (so its top-level keys
    stay top-level), then kagent's tables (config/containerd_toml.py: the loader refuses an
    extraConfig that declares one of them)."""
    cfg = ctx.config.containerd
    version = config_version(ctx.options.containerd_version)
    sandbox = cfg.sandbox_image or versions.PAUSE_IMAGE
    imports = toml_str(str(imports_dir(ctx) / "*.toml"))
    lines = [
        MANAGED_MARKER,
        "# Rendered by kagent from spec.containerd; changes here are overwritten.",
        f"# Add drop-in files to {imports_dir(ctx)} instead.",
        "",
        f"version = {version}",
        f"imports = [{imports}]",
        "",
    ]
    if cfg.extra_config.strip():
        lines += ["# spec.containerd.extraConfig", cfg.extra_config.rstrip("\n"), "# end of spec.containerd.extraConfig", ""]
    sandbox_table, registry_table = RENDERED_TABLES[version]
    sandbox_key = "sandbox_image" if version == 2 else "sandbox"  # v3: the cri images plugin's pinned_images
    lines += [f"[{sandbox_table}]", f"  {sandbox_key} = {toml_str(sandbox)}", "",
              f"[{registry_table}]", f"  config_path = {toml_str(str(hosts_dir))}", ""]
    if OPT_PLUGIN not in cfg.extra_config:
        # containerd's "opt" plugin defaults to /opt/containerd: keep it in the data dir, so
        # nothing of the node lives outside the data and run dirs (and reset removes it)
        lines += [f"[plugins.{toml_str(OPT_PLUGIN)}]", f"  path = {toml_str(str(ctx.paths.containerd_root / 'opt'))}", ""]
    return "\n".join(lines).encode()


def spec(ctx: Context) -> ComponentSpec:
    p = ctx.paths
    hosts_dir, hosts = hosts_files(ctx)
    args, notes = assemble({
        "address": str(p.containerd_sock),
        "config": str(p.containerd_config),
        "log-level": "info",
        "root": str(p.containerd_root),
        "state": str(p.containerd_state),
    })
    return ComponentSpec(
        name=NAME,
        binary=ctx.binary(NAME),
        args=args,
        files=(FileSpec(path=p.containerd_config, data=config_toml(ctx, hosts_dir), mode=MODE_CONFIG), *hosts),
        dirs=((p.containerd_root, 0o711), (p.containerd_state, 0o711), (hosts_dir, 0o755),
              *((f.path.parent, 0o755) for f in hosts)),
        health=UnixSocketCheck(path=p.containerd_sock),
        stop_timeout=STOP_TIMEOUT,
        on_change=OnChange.RESTART,
        # containerd reads its drop-ins only at start: a changed one restarts it (k0s watches them)
        inputs=ctx.options.containerd_dropins,
        prune_siblings_of=(hosts_dir,),
        notes=notes,
    )
