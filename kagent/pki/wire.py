"""Pure. The PKI child's protocol (kagent.pki.child): a ``PkiPlan`` and ``now`` as JSON in, the
staged files (or one error) as JSON out: each file the child decided to (re)write with its
reason and the temp file next to it that holds the new bytes (``Staged``; the agent commits or
discards them). Both directions are decoded strictly: every field
of every spec present with its type (paths absolute, enums by value, durations as
``[days, seconds, microseconds]``), nothing else; anything off is a ``ValueError`` naming the
field, so a child never acts on a garbled plan and the agent never trusts a garbled answer.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from kagent.pki.plan import PkiPlan

PROTOCOL = 2  # 2: the child stages, the agent commits


@dataclass(frozen=True, slots=True)
class Staged:
    """What a PKI child staged: target -> reason, and (target, temp file) in write order (keys
    before their certificates, the order the commit renames them in)."""

    written: Mapping[Path, str]
    temps: tuple[tuple[Path, Path], ...]

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(self.written)


def encode(value: Any) -> Any:
    """A plan value as JSON types (dataclasses as objects, tuples as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, timedelta):
        return [value.days, value.seconds, value.microseconds]
    if isinstance(value, tuple):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__}")


def _int(doc: Any, where: str) -> int:
    if isinstance(doc, bool) or not isinstance(doc, int):
        raise ValueError(f"{where}: expected an integer, got {type(doc).__name__}")
    return doc


def decode(tp: Any, doc: Any, where: str) -> Any:
    """``doc`` (JSON types) as a value of type ``tp``; ValueError naming ``where`` otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        if doc is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return decode(inner, doc, where)
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{where}: unsupported tuple type {tp}")
        if not isinstance(doc, list):
            raise ValueError(f"{where}: expected a list, got {type(doc).__name__}")
        return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(doc))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: expected an object, got {type(doc).__name__}")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        if set(doc) != set(names):
            raise ValueError(f"{where}: fields {sorted(doc)} are not {sorted(names)}")
        return tp(**{n: decode(hints[n], doc[n], f"{where}.{n}") for n in names})
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(doc)
        except ValueError:
            raise ValueError(f"{where}: {doc!r} is not a {tp.__name__}") from None
    if tp is Path:
        if not isinstance(doc, str) or not doc.startswith("/") or "\0" in doc:
            raise ValueError(f"{where}: expected an absolute path, got {doc!r}")
        return Path(doc)
    if tp is timedelta:
        if not isinstance(doc, list) or len(doc) != 3:
            raise ValueError(f"{where}: expected [days, seconds, microseconds], got {doc!r}")
        days, seconds, micros = (_int(v, where) for v in doc)
        return timedelta(days=days, seconds=seconds, microseconds=micros)
    if tp is bool:
        if not isinstance(doc, bool):
            raise ValueError(f"{where}: expected true or false, got {doc!r}")
        return doc
    if tp is int:
        return _int(doc, where)
    if tp is str:
        if not isinstance(doc, str):
            raise ValueError(f"{where}: expected a string, got {type(doc).__name__}")
        return doc
    raise TypeError(f"{where}: unsupported type {tp}")


def _aware(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected an ISO 8601 time, got {type(text).__name__}")
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{where}: {text!r} has no time zone")
    return when


def request(plan: PkiPlan, now: datetime) -> dict[str, Any]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return {"protocol": PROTOCOL, "now": now.isoformat(), "plan": encode(plan)}


def parse_request(doc: Any) -> tuple[PkiPlan, datetime]:
    if not isinstance(doc, dict) or set(doc) != {"protocol", "now", "plan"}:
        raise ValueError("expected an object with protocol, now and plan")
    if doc["protocol"] != PROTOCOL:
        raise ValueError(f"protocol {doc['protocol']!r} is not {PROTOCOL}")
    plan: PkiPlan = decode(PkiPlan, doc["plan"], "plan")
    return plan, _aware(doc["now"], "now")


def reply(written: Mapping[Path, str], staged: Mapping[Path, Path]) -> dict[str, Any]:
    return {"written": [[str(p), r] for p, r in written.items()],
            "staged": [[str(p), str(t)] for p, t in staged.items()]}


def _is_temp_of(tmp: Path, target: Path) -> bool:
    """``tmp`` is a ``.<name>.<random>.tmp`` beside ``target`` (what fsutil.stage makes)."""
    middle = tmp.name[len(target.name) + 2:-len(".tmp")]
    return (tmp.parent == target.parent and tmp.name.startswith(f".{target.name}.") and tmp.name.endswith(".tmp")
            and bool(middle) and "." not in middle)


def parse_reply(doc: Any, plan: PkiPlan) -> Staged:
    """The files the child staged, each with its reason and temp file; each must be a file of
    ``plan``, each temp file a ``.<name>.*.tmp`` beside it, and every written file staged."""
    if not isinstance(doc, dict) or set(doc) != {"written", "staged"}:
        raise ValueError("expected an object with written and staged lists")
    allowed = set(plan.files())
    written: dict[Path, str] = {}
    temps: dict[Path, Path] = {}
    for key in ("written", "staged"):
        if not isinstance(doc[key], list):
            raise ValueError(f"{key}: expected a list")
        for i, item in enumerate(doc[key]):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)):
                raise ValueError(f"{key}[{i}]: expected a pair of strings")
            path = decode(Path, item[0], f"{key}[{i}]")
            if path not in allowed:
                raise ValueError(f"{key}[{i}]: {path} is not a file of the plan")
            if key == "written":
                written[path] = item[1]
                continue
            tmp = decode(Path, item[1], f"{key}[{i}]")
            if not _is_temp_of(tmp, path):
                raise ValueError(f"{key}[{i}]: {tmp} is not a temp file beside {path}")
            temps[path] = tmp
    if set(temps) != set(written):
        raise ValueError("staged: the staged files are not the written files")
    return Staged(written=written, temps=tuple((p, temps[p]) for p in written))
