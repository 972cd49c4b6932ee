"""Pure. What kagent renders into containerd's config.toml that ``spec.containerd.extraConfig``
must leave alone, and the check that an extraConfig is valid TOML that does not redefine it.

The rendered file is ``version``/``imports``, then extraConfig, then kagent's tables (so a
top-level key of extraConfig stays top-level). A table kagent renders cannot be declared a
second time in TOML: containerd would refuse the whole file and crash-loop, so it is refused
when the config is loaded. Settings for those tables go into a drop-in in ``containerd.d/``
(containerd merges imports over the main file)."""

from __future__ import annotations

from kagent.errors import ConfigError

# top-level keys kagent writes
RENDERED_KEYS = ("version", "imports")
CRI_V2 = 'plugins."io.containerd.grpc.v1.cri"'
# config version -> the tables kagent declares, in the order it renders them
RENDERED_TABLES: dict[int, tuple[str, ...]] = {
    2: (CRI_V2, f"{CRI_V2}.registry"),
    3: ('plugins."io.containerd.cri.v1.images".pinned_images', 'plugins."io.containerd.cri.v1.images".registry'),
}
OPT_PLUGIN = "io.containerd.internal.v1.opt"  # rendered only when extraConfig does not mention it

_HINT = ("put settings for that table in a drop-in file in containerd.d/ (see spec.containerd.importsDir; "
         "imports are merged over kagent's config), or use spec.containerd.sandboxImage / registryMirrors")


def _keys(header: str) -> tuple[str, ...]:
    """``plugins."a.b".c`` -> ``("plugins", "a.b", "c")``, as TOML reads the header."""
    import tomllib  # only a config with spec.containerd.extraConfig needs it

    path: list[str] = []
    node: object = tomllib.loads(f"[{header}]\n")
    while isinstance(node, dict) and node:
        (key, node), = node.items()
        path.append(key)
    return tuple(path)


def check_extra_config(text: str, where: str) -> None:
    import tomllib

    """ConfigError at ``where`` when ``text`` is not TOML, sets a key kagent renders, or
    declares (or fills with dotted keys) a table kagent renders, for either config version."""
    if not text.strip():
        return
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(where, f"is not valid TOML: {err}", hint="check it with a TOML parser; strings need quotes") from None
    for key in RENDERED_KEYS:
        if key in doc:
            raise ConfigError(where, f"sets {key!r}, which kagent renders", hint=f"remove {key} from extraConfig")
    for version, tables in RENDERED_TABLES.items():
        for header in tables:
            node: object = doc
            for part in _keys(header):
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and any(not isinstance(v, dict) for v in node.values()):
                raise ConfigError(where, f"sets keys in [{header}], a table kagent renders (config version {version})",
                                  hint=_HINT)
            try:
                tomllib.loads(f"{text}\n[{header}]\n__kagent = 1\n")
            except tomllib.TOMLDecodeError:
                raise ConfigError(where, f"declares [{header}], a table kagent renders (config version {version})",
                                  hint=_HINT) from None
