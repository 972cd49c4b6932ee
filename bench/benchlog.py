"""Where a benchmark's logs go: kagent's own log events of the bench process (PKI built in
process, etcd client calls) and the agents' and etcds' output go to files in the benchmark's
temp dir, so stdout carries only the results; on a failure the tails are printed to stderr."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TAIL_LINES = 30


@contextmanager
def logs_in(root: Path) -> Iterator[None]:
    """While inside: kagent's structlog events of this process go, as JSON lines, to
    ``root/bench.log``; when the body raises, the tail of every ``*.log`` under ``root`` is
    printed to stderr. Afterwards the events go to stderr again."""
    import structlog

    from kagent import log

    fh = (root / "bench.log").open("a", buffering=1, encoding="utf-8")
    log.configure(fmt="json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=fh))
    try:
        yield
    except BaseException:
        print_tails(root)
        raise
    finally:
        log.configure(fmt="json")
        fh.close()


def print_tails(root: Path, *, lines: int = TAIL_LINES) -> None:
    """The last ``lines`` lines of every ``*.log`` under ``root``, to stderr (after a failure)."""
    for f in sorted(root.rglob("*.log")):
        try:
            tail = f.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        print(f"--- {f} (last {len(tail)} lines)", file=sys.stderr)
        for line in tail:
            print(f"  {line}", file=sys.stderr)
