"""Pure. What ``kagent certs check`` says about one certificate: subject, issuer, SANs,
not-after, days left and a status, given the PEM bytes, ``now`` and ``renewBefore``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from kagent.pki import issue


class CertState(StrEnum):
    OK = "ok"
    EXPIRING = "expiring"  # within renewBefore
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertStatus:
    file: Path
    state: CertState
    subject: str = ""
    issuer: str = ""
    sans: tuple[str, ...] = ()
    is_ca: bool = False
    not_before: datetime | None = None
    not_after: datetime | None = None
    days_left: int | None = None

    @property
    def ok(self) -> bool:
        return self.state is CertState.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "ca": self.is_ca,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "days_left": self.days_left,
            "state": str(self.state),
        }


def describe_cert(file: Path, pem: bytes, *, now: datetime, renew_before: timedelta) -> CertStatus:
    cert = issue.load_cert(pem)
    if cert is None:
        return CertStatus(file=file, state=CertState.UNREADABLE)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    left = not_after - now
    if left <= timedelta(0):
        state = CertState.EXPIRED
    elif left <= renew_before:
        state = CertState.EXPIRING
    elif not_before > now:
        state = CertState.NOT_YET_VALID
    else:
        state = CertState.OK
    dns, ips = issue.cert_sans(cert)
    return CertStatus(
        file=file,
        state=state,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=dns + ips,
        is_ca=issue.is_ca(cert),
        not_before=not_before,
        not_after=not_after,
        days_left=left // timedelta(days=1),
    )
