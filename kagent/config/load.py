"""Pure. YAML text -> ClusterConfig, strictly.

Every problem is a ConfigError naming the dotted path and the value seen:
``spec.api.port: 70000 is not a TCP port (1-65535)``. The host's default address is a
parameter (gathered by the edge), so this module never looks at the machine.
A k0s ``k0s.k0sproject.io/v1beta1`` ClusterConfig is accepted: its k0s-only sections are
ignored with a warning (returned as data in ``ClusterConfig.warnings``).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any, Callable, Mapping, TypeVar

from kagent.errors import ConfigError
from kagent.config.containerd_toml import check_extra_config
from kagent.config.model import (
    API_VERSION,
    K0S_API_VERSION,
    KIND,
    ApiSpec,
    BackupSpec,
    ClusterConfig,
    ComponentOverrides,
    ContainerdSpec,
    EtcdSpec,
    InstallUsers,
    KeyAlgorithm,
    KineSpec,
    KonnectivitySpec,
    NetworkSpec,
    PkiSpec,
    StorageSpec,
    StorageType,
    WorkerProfile,
)

T = TypeVar("T")

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_MICROSECONDS = {"ns": Decimal("0.001"), "us": Decimal(1), "µs": Decimal(1), "ms": Decimal(1000), "s": Decimal(10**6),
                      "m": Decimal(60 * 10**6), "h": Decimal(3600 * 10**6), "d": Decimal(86400 * 10**6)}
# a workerProfiles value is any YAML; bound what one may expand to (aliases can multiply it)
_MAX_NODES = 100_000
_MAX_DEPTH = 64
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ARG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PROFILE_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")

# k0s ClusterConfig sections kagent does not use: accepted from a k0s file, ignored with a warning
_K0S_IGNORED = {
    "spec": {"extensions", "telemetry", "images", "featureGates", "metricsServer", "controlPlaneLoadBalancing"},
    "spec.api": {"ca", "onlyBindToAddress"},
    "spec.network": {"kubeProxy", "kuberouter", "calico", "provider", "dualStack", "nodeLocalLoadBalancing",
                     "coreDNS", "primaryAddressFamily", "controlPlaneLoadBalancing", "clusterDomain_"},
    "spec.storage.etcd": {"ca"},
    "spec.konnectivity": {"externalAddress"},
    "metadata": {"namespace", "creationTimestamp", "labels", "annotations"},
}


def parse_duration(text: str, where: str = "duration") -> timedelta:
    """Go-style durations (``8760h``, ``87600h0m0s``, ``1h30m``, ``500ms``) plus ``d`` for days.
    Computed in exact decimal microseconds, so ``format_duration`` round-trips."""
    bad = ConfigError(where, f"{text!r} is not a duration", hint='use a Go duration such as "8760h", "720h" or "30d"')
    if not isinstance(text, str) or not text.strip():
        raise bad
    s = text.strip()
    pos = 0
    total = Decimal(0)
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += Decimal(m.group(1)) * _UNIT_MICROSECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise bad
    try:
        return timedelta(microseconds=int(total.to_integral_value(rounding=ROUND_HALF_EVEN)))
    except OverflowError:
        raise ConfigError(where, f"{text!r} is too long (at most {timedelta.max.days} days)",
                          hint='use a shorter duration such as "87600h" (10 years)') from None


def format_duration(d: timedelta) -> str:
    """Render like Go's time.Duration.String(): ``87600h0m0s``, ``0h0m1.5s``."""
    us = d // timedelta(microseconds=1)
    secs, frac = divmod(us, 1_000_000)
    h, rest = divmod(secs, 3600)
    m, sec = divmod(rest, 60)
    if frac:
        return f"{h}h{m}m{sec}.{frac:06d}".rstrip("0") + "s"
    return f"{h}h{m}m{sec}s"


def _typename(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(v), type(v).__name__
    )


class _Section:
    """A YAML mapping being read at a dotted path; unknown keys are an error on ``done()``."""

    def __init__(self, raw: Any, path: str, *, k0s: bool) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(path or "(document)", f"expected a mapping, got {_typename(raw)}",
                              hint=f"write {path or 'the document'} as key: value lines (see kagent config create)")
        for k in raw:
            if not isinstance(k, str):
                raise ConfigError(path or "(document)", f"key {k!r} is not a string",
                                  hint="field names are words such as port; quote a key that YAML reads as a number or boolean")
        self.raw: dict[str, Any] = raw
        self.path = path
        self.k0s = k0s
        self.seen: set[str] = set()
        self.warnings: list[str] = []

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.raw and self.raw[key] is not None

    def get(self, key: str, parse: Callable[[Any, str], T], default: T) -> T:
        self.seen.add(key)
        if key not in self.raw or self.raw[key] is None:
            return default
        return parse(self.raw[key], self.sub(key))

    def section(self, key: str) -> _Section:
        self.seen.add(key)
        return _Section(self.raw.get(key), self.sub(key), k0s=self.k0s)

    def done(self, *children: _Section) -> list[str]:
        warnings = list(self.warnings)
        for c in children:
            warnings.extend(c.warnings)
        ignorable = _K0S_IGNORED.get(self.path, set()) if self.k0s else set()
        for k in self.raw:
            if k in self.seen:
                continue
            if k in ignorable:
                warnings.append(f"{self.sub(k)}: k0s setting not used by kagent, ignored")
                continue
            known = sorted(self.seen)
            raise ConfigError(
                self.sub(k),
                "unknown field",
                hint=f"fields allowed in {self.path or 'the document'}: {', '.join(known)}" if known else
                f"{self.path or 'the document'} takes no fields here: remove {k}",
            )
        return warnings


# ---- scalar parsers: (value, dotted path) -> parsed ----------------------------------


def p_str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise ConfigError(where, f"{v!r} is {_typename(v)}, expected a string", hint=f'quote it: "{v}"')
    return v


def p_nonempty(v: Any, where: str) -> str:
    s = p_str(v, where)
    if not s.strip():
        raise ConfigError(where, "must not be empty", hint="give it a value, or remove the field for its default")
    return s


PORT_HINT = "use a whole number from 1 to 65535, unquoted"


def p_port(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(where, f"{v!r} is {_typename(v)}, expected a TCP port number (1-65535)", hint=PORT_HINT)
    if not 1 <= v <= 65535:
        raise ConfigError(where, f"{v} is not a TCP port (1-65535)", hint=PORT_HINT)
    return v


def p_address(v: Any, where: str) -> str:
    """An IP address or a DNS name (no scheme, no port)."""
    s = p_nonempty(v, where).strip()
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        pass
    host = s.rstrip(".").lower()
    if len(host) <= 253 and all(_DNS_LABEL.match(label) for label in host.split(".")) and not host.replace(".", "").isdigit():
        return s
    raise ConfigError(where, f"{s!r} is not an IP address or DNS name", hint="write a bare address such as 10.0.0.5 or api.example.com (no scheme, no port)")


def p_ip(hint: str) -> Callable[[Any, str], str]:
    """An IP address only: the field ends up in argv where a name is invalid."""

    def parse(v: Any, where: str) -> str:
        s = p_nonempty(v, where).strip()
        try:
            return str(ipaddress.ip_address(s))
        except ValueError:
            raise ConfigError(where, f"{s!r} is not an IP address", hint=hint) from None

    return parse


_API_ADDRESS = p_ip("write this node's IP, e.g. 10.0.0.5 (it becomes kube-apiserver's --advertise-address); "
                    "a DNS name belongs in spec.api.externalAddress or spec.api.sans")
_PEER_ADDRESS = p_ip("write this node's IP, e.g. 10.0.0.5 (etcd listens on it and cannot listen on a name)")


def p_cidr(v: Any, where: str) -> str:
    s = p_nonempty(v, where).strip()
    try:
        net = ipaddress.ip_network(s, strict=True)
    except ValueError as err:
        raise ConfigError(where, f"{s!r} is not a CIDR ({err})", hint="write a network such as 10.244.0.0/16 (host bits zero)") from None
    return str(net)


def p_domain(v: Any, where: str) -> str:
    s = p_nonempty(v, where)
    if not all(_DNS_LABEL.match(label) for label in s.split(".")):
        raise ConfigError(where, f"{s!r} is not a DNS domain", hint="use lowercase labels such as cluster.local")
    return s


def p_duration(v: Any, where: str) -> timedelta:
    if isinstance(v, bool) or not isinstance(v, str):
        raise ConfigError(where, f"{v!r} is {_typename(v)}, expected a duration string", hint='quote it, e.g. "8760h"')
    d = parse_duration(v, where)
    if d.total_seconds() <= 0:
        raise ConfigError(where, f"{v!r} must be longer than zero", hint='use a positive duration such as "720h"')
    return d


def p_extra_args(v: Any, where: str) -> Mapping[str, str]:
    if not isinstance(v, dict):
        raise ConfigError(where, f"expected a mapping of flag name to value, got {_typename(v)}",
                          hint='write one flag per line without dashes, e.g. v: "2"')
    out: dict[str, str] = {}
    for k, val in v.items():
        if not isinstance(k, str) or not _ARG_NAME.match(k):
            raise ConfigError(f"{where}.{k}", f"{k!r} is not a flag name", hint="write the flag without leading dashes, e.g. v: \"2\"")
        if not isinstance(val, str):
            raise ConfigError(f"{where}.{k}", f"{val!r} is {_typename(val)}, expected a string", hint=f'quote the value: {k}: "{val}"')
        out[k] = val
    return MappingProxyType(out)


def p_str_list(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ConfigError(where, f"expected a list of strings, got {_typename(v)}", hint='write a YAML list, e.g. ["a", "b"]')
    return tuple(p_str(item, f"{where}[{i}]") for i, item in enumerate(v))


def p_address_list(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ConfigError(where, f"expected a list of addresses, got {_typename(v)}",
                          hint="write a YAML list, e.g. [10.0.0.5, api.example.com]")
    return tuple(p_address(item, f"{where}[{i}]") for i, item in enumerate(v))


def p_containerd_toml(v: Any, where: str) -> str:
    text = p_str(v, where)
    check_extra_config(text, where)
    return text


_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}[$]?$")
_USER_FIELDS = (("etcdUser", "etcd_user"), ("kineUser", "kine_user"), ("konnectivityUser", "konnectivity_user"),
                ("kubeAPIserverUser", "kube_apiserver_user"), ("kubeSchedulerUser", "kube_scheduler_user"))


def p_user_name(v: Any, where: str) -> str:
    s = p_nonempty(v, where)
    if not _USER_NAME.match(s):
        raise ConfigError(where, f"{s!r} is not a system user name",
                          hint="lowercase letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters")
    return s


def _install_users(sec: _Section) -> InstallUsers:
    users = sec.section("users")
    defaults = InstallUsers()
    got = {attr: users.get(key, p_user_name, getattr(defaults, attr)) for key, attr in _USER_FIELDS}
    sec.warnings.extend(users.done())
    return InstallUsers(**got)


def _enum(enum_cls: type[T]) -> Callable[[Any, str], T]:
    def parse(v: Any, where: str) -> T:
        s = p_str(v, where)
        try:
            return enum_cls(s)  # type: ignore[call-arg]
        except ValueError:
            allowed = ", ".join(e.value for e in enum_cls)  # type: ignore[attr-defined]
            raise ConfigError(where, f"{s!r} is not one of: {allowed}", hint=f"use one of: {allowed}") from None

    return parse


def p_mirrors(v: Any, where: str) -> Mapping[str, tuple[str, ...]]:
    if not isinstance(v, dict):
        raise ConfigError(where, f"expected a mapping of registry to endpoint list, got {_typename(v)}",
                          hint='write e.g. docker.io: ["https://mirror.example.com"]')
    out: dict[str, tuple[str, ...]] = {}
    for reg, eps in v.items():
        reg_where = f"{where}.{reg}"
        if not isinstance(reg, str) or not reg or any(c in reg for c in " /\"'[]"):
            raise ConfigError(reg_where, f"{reg!r} is not a registry host", hint="use a host[:port] such as docker.io")
        if isinstance(eps, str):
            eps = [eps]
        endpoints = p_str_list(eps, reg_where)
        for i, ep in enumerate(endpoints):
            if not re.match(r"^https?://[^\s\"']+$", ep):
                raise ConfigError(f"{reg_where}[{i}]", f"{ep!r} is not an http(s) URL", hint="write e.g. https://mirror.example.com")
        out[reg] = endpoints
    return MappingProxyType(out)


def _freeze(v: Any, where: str, budget: list[int] | None = None, depth: int = 0, stack: frozenset[int] = frozenset()) -> Any:
    """Deep-copy YAML data into read-only mappings and tuples. A self-referencing alias, a
    too-deep nesting or an alias bomb is a ConfigError, not a crash."""
    budget = budget if budget is not None else [_MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(where, f"expands to more than {_MAX_NODES} values", hint="YAML aliases may multiply a value; write it out")
    if depth > _MAX_DEPTH:
        raise ConfigError(where, f"is nested deeper than {_MAX_DEPTH} levels", hint="a kubelet configuration is a few levels deep: flatten it")
    if isinstance(v, (dict, list)):
        if id(v) in stack:
            raise ConfigError(where, "contains itself (a YAML alias refers to its own anchor)",
                              hint="write the value out instead of the alias")
        inner = stack | {id(v)}
        if isinstance(v, dict):
            return MappingProxyType({k: _freeze(x, f"{where}.{k}", budget, depth + 1, inner) for k, x in v.items()})
        return tuple(_freeze(x, f"{where}[{i}]", budget, depth + 1, inner) for i, x in enumerate(v))
    return v


def p_profiles(v: Any, where: str) -> tuple[WorkerProfile, ...]:
    if not isinstance(v, list):
        raise ConfigError(where, f"expected a list of {{name, values}}, got {_typename(v)}",
                          hint="write e.g. [{name: custom, values: {maxPods: 50}}]")
    seen: set[str] = set()
    out = []
    for i, item in enumerate(v):
        sec = _Section(item, f"{where}[{i}]", k0s=False)
        name = sec.get("name", p_nonempty, "")
        if not name:
            raise ConfigError(sec.sub("name"), "is required", hint="name the profile, e.g. name: custom")
        if not _PROFILE_NAME.match(name):
            raise ConfigError(sec.sub("name"), f"{name!r} is not a valid profile name (lowercase letters, digits, '-', '.')",
                              hint="use lowercase letters, digits, '-' and '.', e.g. custom-1")
        if name in seen:
            raise ConfigError(sec.sub("name"), f"{name!r} is defined twice", hint="give each profile its own name")
        seen.add(name)
        empty: dict[str, Any] = {}
        values: dict[str, Any] = sec.get("values", _p_values, empty)
        sec.done()
        out.append(WorkerProfile(name=name, values=_freeze(values, sec.sub("values"))))
    return tuple(out)


def _p_values(x: Any, w: str) -> dict[str, Any]:
    return x if isinstance(x, dict) else _bad_values(x, w)


def _bad_values(x: Any, w: str) -> dict[str, Any]:
    raise ConfigError(w, f"expected a KubeletConfiguration mapping, got {_typename(x)}", hint="write e.g. values: {maxPods: 50}")


# ---- document -------------------------------------------------------------------------


_loader: Any = None
# YAML 1.2 core-schema numbers, minus octal: decimal without a leading zero, 0x hex; floats
# need a dot or an exponent (so 0123 is not a float either)
_INT_RE = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(r"^(?:[-+]?(?:\.[0-9]+|(?:0|[1-9][0-9]*)(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


def _strict_loader() -> Any:
    """A SafeLoader that rejects duplicate keys and keeps dates as strings (a KubeletConfiguration
    fragment wants the text, and ``2001-13-45`` must not crash the date constructor)."""
    global _loader
    if _loader is not None:
        return _loader
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=deep)
                    try:
                        dup = key in seen
                    except TypeError:  # unhashable: SafeConstructor reports it
                        continue
                    if dup:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    # YAML 1.1's number traps are strings here: a leading-zero integer (02370 would be octal
    # 1272), sexagesimal (1:30:00 would be 5400), binary and underscored digits. A field that
    # wants a number then refuses the string by its dotted path; a string field keeps the text.
    replaced = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
    StrictLoader.yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in resolvers if tag not in replaced]
        for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RE, list("-+0123456789"))
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+.0123456789"))
    StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)  # type: ignore[type-var]  # stub is narrower than PyYAML
    _loader = StrictLoader
    return _loader


def parse_yaml(text: str) -> Any:
    import yaml

    try:
        docs = list(yaml.load_all(text, Loader=_strict_loader()))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(document)"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(where, f"not valid YAML: {problem}", hint=YAML_HINT) from None
    except RecursionError:
        raise ConfigError("(document)", "nested too deeply to be a config", hint=YAML_HINT) from None
    except Exception as err:  # noqa: BLE001 - a tagged scalar a PyYAML constructor chokes on (!!bool x, !!int y)
        raise ConfigError("(document)", f"not valid YAML: {err or type(err).__name__}", hint=YAML_HINT) from None
    docs = [d for d in docs if d is not None]
    if not docs:
        raise ConfigError("(document)", "holds no config (it is empty or only comments)",
                          hint="run `kagent config create` for a complete example")
    if len(docs) > 1:
        raise ConfigError("(document)", f"holds {len(docs)} YAML documents, expected one ClusterConfig",
                          hint="keep one document: remove the --- separators and the other documents")
    return docs[0]


YAML_HINT = "indent with spaces (not tabs), quote values holding ': ' or ' #', and give each key once"


def load_config(text: str | None, *, host_address: str | Callable[[], str], source: str | None = None) -> ClusterConfig:
    """Parse and validate. ``text=None`` means no file: the defaults. ``host_address``: the
    default of ``spec.api.address``, or a function giving it (called only when the config does
    not set one: finding it scans the host's interfaces). ``source`` (the file, ``stdin``):
    named by every error (``error: <source>: spec.api.port: ...``)."""
    if text is None:
        return build_config({}, host_address=host_address)
    try:
        return build_config(parse_yaml(text), host_address=host_address)
    except ConfigError as err:
        if source is None:
            raise
        raise err.located(source) from None


def build_config(doc: Any, *, host_address: str | Callable[[], str]) -> ClusterConfig:
    if not isinstance(doc, dict):
        raise ConfigError("(document)", f"expected a ClusterConfig mapping, got {_typename(doc)}", hint="run `kagent config create` for a complete example")
    api_version = doc.get("apiVersion", API_VERSION)
    if api_version not in (API_VERSION, K0S_API_VERSION):
        raise ConfigError("apiVersion", f"{api_version!r} is not supported", hint=f"use {API_VERSION} (or a k0s {K0S_API_VERSION} file)")
    k0s = api_version == K0S_API_VERSION
    root = _Section(doc, "", k0s=k0s)
    root.seen.add("apiVersion")
    kind = root.get("kind", p_str, KIND)
    if kind != KIND:
        raise ConfigError("kind", f"{kind!r} is not supported", hint=f"use kind: {KIND}")
    meta = root.section("metadata")
    name = meta.get("name", p_nonempty, "kagent")
    spec = root.section("spec")

    # api
    api_s = spec.section("api")
    address = api_s.get("address", _API_ADDRESS, "")
    if not address:
        address = host_address if isinstance(host_address, str) else host_address()
    port_key = "k0sApiPort" if k0s and "k0sApiPort" in api_s.raw else "controlApiPort"
    api = ApiSpec(
        address=address,
        port=api_s.get("port", p_port, 6443),
        control_api_port=api_s.get(port_key, p_port, 9443),
        sans=api_s.get("sans", p_address_list, ()),
        external_address=api_s.get("externalAddress", p_address, None),
        extra_args=api_s.get("extraArgs", p_extra_args, MappingProxyType({})),
        raw_args=api_s.get("rawArgs", p_str_list, ()),
    )
    pki_from_k0s: dict[str, timedelta] = {}
    if k0s and isinstance(api_s.raw.get("ca"), dict):
        ca = _Section(api_s.raw["ca"], api_s.sub("ca"), k0s=True)
        api_s.seen.add("ca")
        pki_from_k0s["ca"] = ca.get("expiresAfter", p_duration, timedelta(hours=87600))
        pki_from_k0s["leaf"] = ca.get("certificatesExpireAfter", p_duration, timedelta(hours=8760))
        ca.done()
    if api.port == api.control_api_port:
        raise ConfigError(api_s.sub("controlApiPort"), f"{api.control_api_port} is also spec.api.port", hint="give the controller API its own port (default 9443)")

    # storage
    st_s = spec.section("storage")
    stype = st_s.get("type", _enum(StorageType), StorageType.ETCD)
    etcd_s = st_s.section("etcd")
    if k0s and etcd_s.has("externalCluster"):
        raise ConfigError(etcd_s.sub("externalCluster"), "an external etcd cluster is not supported by kagent",
                          hint="remove it: kagent runs etcd (or kine) itself")
    etcd = EtcdSpec(
        peer_address=etcd_s.get("peerAddress", _PEER_ADDRESS, address),
        client_port=etcd_s.get("clientPort", p_port, 2379),
        peer_port=etcd_s.get("peerPort", p_port, 2380),
        extra_args=etcd_s.get("extraArgs", p_extra_args, MappingProxyType({})),
        raw_args=etcd_s.get("rawArgs", p_str_list, ()),
    )
    if etcd.client_port == etcd.peer_port:
        raise ConfigError(etcd_s.sub("peerPort"), f"{etcd.peer_port} is also spec.storage.etcd.clientPort", hint="etcd needs two ports (default 2379 and 2380)")
    kine_s = st_s.section("kine")
    kine = KineSpec(
        data_source=kine_s.get("dataSource", p_nonempty, None),
        extra_args=kine_s.get("extraArgs", p_extra_args, MappingProxyType({})),
        raw_args=kine_s.get("rawArgs", p_str_list, ()),
    )
    storage = StorageSpec(type=stype, etcd=etcd, kine=kine)

    # network
    net_s = spec.section("network")
    network = NetworkSpec(
        pod_cidr=net_s.get("podCIDR", p_cidr, "10.244.0.0/16"),
        service_cidr=net_s.get("serviceCIDR", p_cidr, "10.96.0.0/12"),
        cluster_domain=net_s.get("clusterDomain", p_domain, "cluster.local"),
    )
    if ipaddress.ip_network(network.pod_cidr).overlaps(ipaddress.ip_network(network.service_cidr)):
        raise ConfigError(net_s.sub("serviceCIDR"), f"{network.service_cidr} overlaps spec.network.podCIDR {network.pod_cidr}", hint="pick disjoint ranges (defaults 10.244.0.0/16 and 10.96.0.0/12)")

    kon_s = spec.section("konnectivity")
    konn = KonnectivitySpec(agent_port=kon_s.get("agentPort", p_port, 8132), admin_port=kon_s.get("adminPort", p_port, 8133))
    if konn.agent_port == konn.admin_port:
        raise ConfigError(kon_s.sub("adminPort"), f"{konn.admin_port} is also spec.konnectivity.agentPort",
                          hint="give each its own port (defaults 8133 and 8132)")

    def overrides(key: str) -> tuple[ComponentOverrides, _Section]:
        s = spec.section(key)
        return (
            ComponentOverrides(
                extra_args=s.get("extraArgs", p_extra_args, MappingProxyType({})),
                raw_args=s.get("rawArgs", p_str_list, ()),
            ),
            s,
        )

    cm, cm_s = overrides("controllerManager")
    sched, sched_s = overrides("scheduler")

    pki_s = spec.section("pki")
    pki = PkiSpec(
        key_algorithm=pki_s.get("keyAlgorithm", _enum(KeyAlgorithm), KeyAlgorithm.RSA_2048),
        ca_expires_after=pki_s.get("caExpiresAfter", p_duration, pki_from_k0s.get("ca", timedelta(hours=87600))),
        certificates_expire_after=pki_s.get("certificatesExpireAfter", p_duration, pki_from_k0s.get("leaf", timedelta(hours=8760))),
        renew_before=pki_s.get("renewBefore", p_duration, timedelta(days=30)),
    )
    if pki.renew_before >= pki.certificates_expire_after:
        raise ConfigError(pki_s.sub("renewBefore"), f"{format_duration(pki.renew_before)} is not shorter than certificatesExpireAfter {format_duration(pki.certificates_expire_after)}", hint="certificates would be renewed on every start; use e.g. 720h")
    if pki.certificates_expire_after > pki.ca_expires_after:
        raise ConfigError(pki_s.sub("certificatesExpireAfter"), f"{format_duration(pki.certificates_expire_after)} outlives caExpiresAfter {format_duration(pki.ca_expires_after)}",
                          hint="make certificatesExpireAfter shorter than caExpiresAfter (defaults 8760h and 87600h)")

    ctd_s = spec.section("containerd")
    containerd = ContainerdSpec(
        registry_mirrors=ctd_s.get("registryMirrors", p_mirrors, MappingProxyType({})),
        imports_dir=ctd_s.get("importsDir", p_nonempty, None),
        extra_config=ctd_s.get("extraConfig", p_containerd_toml, ""),
        sandbox_image=ctd_s.get("sandboxImage", p_nonempty, None),
    )
    if containerd.imports_dir is not None and not containerd.imports_dir.startswith("/"):
        raise ConfigError(ctd_s.sub("importsDir"), f"{containerd.imports_dir!r} is not an absolute path",
                          hint="write an absolute path, e.g. /etc/kagent/containerd.d")

    bk_s = spec.section("backup")
    backup = _backup(bk_s)

    no_profiles: tuple[WorkerProfile, ...] = ()
    profiles = spec.get("workerProfiles", p_profiles, no_profiles)

    # k0s names it spec.installConfig; either is read
    install_key = "installConfig" if k0s and "installConfig" in spec.raw and "install" not in spec.raw else "install"
    inst_s = spec.section(install_key)
    users = _install_users(inst_s)

    warnings: list[str] = []
    for s in (api_s, etcd_s, kine_s, net_s, kon_s, cm_s, sched_s, pki_s, ctd_s, bk_s, inst_s, meta):
        warnings.extend(s.done())
    st_s.seen.update({"etcd", "kine"})
    warnings.extend(st_s.done())
    warnings.extend(spec.done())
    warnings.extend(root.done())

    return ClusterConfig(
        api_version=api_version,
        name=name,
        api=api,
        storage=storage,
        network=network,
        konnectivity=konn,
        controller_manager=cm,
        scheduler=sched,
        pki=pki,
        containerd=containerd,
        worker_profiles=profiles,
        backup=backup,
        users=users,
        warnings=tuple(warnings),
    )


def p_retention(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(where, f"{v!r} is {_typename(v)}, expected a number of backups to keep (1-10000)",
                          hint="use a whole number from 1 to 10000, unquoted")
    if not 1 <= v <= 10000:
        raise ConfigError(where, f"{v} is not between 1 and 10000", hint="use a whole number from 1 to 10000, unquoted")
    return v


def _backup(sec: _Section) -> BackupSpec | None:
    """``spec.backup: {schedule, retention, directory}``; absent or empty means no schedule."""
    if not sec.raw:
        return None
    schedule = sec.get("schedule", p_duration, None)
    directory = sec.get("directory", p_nonempty, None)
    retention = sec.get("retention", p_retention, 5)
    sec.done()  # an unknown (misspelt) field first: it explains a "missing" one
    if schedule is None:
        raise ConfigError(sec.sub("schedule"), "is required with spec.backup", hint='e.g. schedule: "6h"')
    if schedule.total_seconds() < 1:
        raise ConfigError(sec.sub("schedule"), f"{format_duration(schedule)} is shorter than one second",
                          hint='use e.g. schedule: "6h"')
    if directory is None:
        raise ConfigError(sec.sub("directory"), "is required with spec.backup", hint="an absolute directory outside the data dir, e.g. /var/backups/kagent")
    if not directory.startswith("/"):
        raise ConfigError(sec.sub("directory"), f"{directory!r} is not an absolute path",
                          hint="an absolute directory outside the data dir, e.g. /var/backups/kagent")
    return BackupSpec(schedule=schedule, directory=directory, retention=retention)


def render_config(cfg: ClusterConfig) -> dict[str, Any]:
    """The full config as a plain YAML-ready mapping (``kagent config create``)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": cfg.name},
        "spec": {
            "api": {
                "address": cfg.api.address,
                "port": cfg.api.port,
                "controlApiPort": cfg.api.control_api_port,
                "sans": list(cfg.api.sans),
                **({"externalAddress": cfg.api.external_address} if cfg.api.external_address else {}),
                "extraArgs": dict(cfg.api.extra_args),
                "rawArgs": list(cfg.api.raw_args),
            },
            "storage": {
                "type": cfg.storage.type.value,
                "etcd": {
                    "peerAddress": cfg.storage.etcd.peer_address,
                    "clientPort": cfg.storage.etcd.client_port,
                    "peerPort": cfg.storage.etcd.peer_port,
                    "extraArgs": dict(cfg.storage.etcd.extra_args),
                    "rawArgs": list(cfg.storage.etcd.raw_args),
                },
                "kine": {
                    **({"dataSource": cfg.storage.kine.data_source} if cfg.storage.kine.data_source else {}),
                    "extraArgs": dict(cfg.storage.kine.extra_args),
                    "rawArgs": list(cfg.storage.kine.raw_args),
                },
            },
            "network": {
                "podCIDR": cfg.network.pod_cidr,
                "serviceCIDR": cfg.network.service_cidr,
                "clusterDomain": cfg.network.cluster_domain,
            },
            "konnectivity": {"agentPort": cfg.konnectivity.agent_port, "adminPort": cfg.konnectivity.admin_port},
            "controllerManager": {"extraArgs": dict(cfg.controller_manager.extra_args), "rawArgs": list(cfg.controller_manager.raw_args)},
            "scheduler": {"extraArgs": dict(cfg.scheduler.extra_args), "rawArgs": list(cfg.scheduler.raw_args)},
            "pki": {
                "keyAlgorithm": cfg.pki.key_algorithm.value,
                "caExpiresAfter": format_duration(cfg.pki.ca_expires_after),
                "certificatesExpireAfter": format_duration(cfg.pki.certificates_expire_after),
                "renewBefore": format_duration(cfg.pki.renew_before),
            },
            "containerd": {
                "registryMirrors": {k: list(v) for k, v in cfg.containerd.registry_mirrors.items()},
                **({"importsDir": cfg.containerd.imports_dir} if cfg.containerd.imports_dir else {}),
                "extraConfig": cfg.containerd.extra_config,
                **({"sandboxImage": cfg.containerd.sandbox_image} if cfg.containerd.sandbox_image else {}),
            },
            "workerProfiles": [{"name": p.name, "values": _thaw(p.values)} for p in cfg.worker_profiles],
            **({"backup": {"schedule": format_duration(cfg.backup.schedule), "retention": cfg.backup.retention,
                           "directory": cfg.backup.directory}} if cfg.backup else {}),
            "install": {"users": {key: getattr(cfg.users, attr) for key, attr in _USER_FIELDS}},
        },
    }


def _thaw(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def dump_config(cfg: ClusterConfig) -> str:
    import yaml

    return yaml.safe_dump(render_config(cfg), sort_keys=False, default_flow_style=False)
