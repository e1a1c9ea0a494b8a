"""Publish the DuckDB writer file as the readers' snapshot: renamed into place whole, and patched
rather than copied when the previous copy is free.

A copy of the whole file per unit of work grew with fleet x history (1.7 GB at 1,000 meters x
180 days, several copies per 15-minute cycle, each under the writer lock: docs/scaling.md), while
a checkpoint changes a small part of it. So the snapshot is double-buffered: the current one at
`snapshot_path`, the one before it kept as a *spare* beside it. Publishing brings the spare up to
the writer file in place (only the chunks that differ are written) and renames it over the
current one, which becomes the next spare. Readers only ever open `snapshot_path`, whose file is
never written in place, so what a reader opened stays exactly what it was.

The spare may still be open by a reader that opened it when it was current. Patching it then
would change a file under that reader, so it is patched only when nobody has it open:
- other processes: DuckDB holds a POSIX read lock on a file it has open, and an open file
  description (OFD) write lock on it cannot be taken while it does (Linux; elsewhere, e.g. macOS,
  there are no OFD locks and every publish copies, as before);
- this process: POSIX locks are per process, and closing *any* descriptor of a file drops every
  lock the process holds on it, DuckDB's included. So while a reader of this process is open,
  this process never opens a snapshot file at all (`reading`), and copies instead.
A publisher killed mid-patch leaves a torn spare that no reader opens; the next publish patches
it again by content. Disk: one more file the size of the snapshot.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.errors import TransientError
from shared.logging import get_logger

__all__ = ["publish", "reading", "spare_path"]

CHUNK = 1 << 18  # compared and written a DuckDB block (256 KiB) at a time
_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)

log = get_logger(__name__)
_guard = threading.Lock()
_readers: dict[Path, int] = {}  # open readers of this process, per snapshot path


def spare_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.spare")


@contextmanager
def reading(target: Path) -> Iterator[None]:
    """Wrap every open of `target` by this process (registered before the open, released after
    the close), so a publisher of this process never touches a file a reader here may hold."""
    key = target.resolve()
    with _guard:
        _readers[key] = _readers.get(key, 0) + 1
    try:
        yield
    finally:
        with _guard:
            _readers[key] -= 1
            if not _readers[key]:
                del _readers[key]


def publish(source: Path, target: Path) -> bool:
    """Make `target` a copy of the closed `source` (the caller holds the writer lock). Returns False
    when it already is one (same mtime and size). No fsync: a process crash keeps the page cache,
    and a snapshot lost to power loss is published again by the next unit of work or reader."""
    if not source.exists() or same_state(source, target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):  # from a publisher that was killed
        leftover.unlink(missing_ok=True)
    wal = source.with_name(source.name + ".wal")
    if wal.exists():  # a checkpoint that could not run; never publish a file without its log
        raise TransientError(f"{source} still has a write-ahead log after checkpoint; not publishing it")
    spare = spare_path(target)
    stat = source.stat()
    began = time.monotonic()
    with _guard:  # no reader of this process opens a snapshot file while the spare is patched
        patched = None if _readers.get(target.resolve()) else _patch(source, spare, stat)
    fresh = spare
    if patched is None:
        fresh = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copyfile(source, fresh)
        os.utime(fresh, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # what same_state compares
    previous = target.with_name(f".{target.name}.tmp-{os.getpid()}-previous")  # leftovers are cleared
    keep = target.exists()
    if keep:
        os.link(target, previous)  # keeps the current snapshot's file once it is replaced
    os.replace(fresh, target)
    if keep:
        os.replace(previous, spare)  # a spare that was not free is dropped; its readers keep it
    facts = {
        "bytes": stat.st_size,
        "written": stat.st_size if patched is None else patched,
        "mode": "copied" if patched is None else "patched",
        "seconds": round(time.monotonic() - began, 3),
    }
    log.info("warehouse snapshot published", extra=facts)
    return True


def _patch(source: Path, spare: Path, stat: os.stat_result) -> int | None:
    """Bring `spare` to `source`'s content in place; the bytes written, or None when it cannot be
    (no spare yet, no OFD locks on this system, or a reader somewhere still has it open)."""
    if _OFD_SETLK is None or not spare.exists():
        return None
    fd = os.open(spare, os.O_RDWR)
    try:
        try:  # l_type, l_whence, l_start, l_len (0: the whole file), l_pid (0 for OFD locks)
            fcntl.fcntl(fd, _OFD_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        except OSError:
            return None
        written = 0
        with source.open("rb") as src:
            offset = 0
            while chunk := src.read(CHUNK):
                if os.pread(fd, len(chunk), offset) != chunk:
                    os.pwrite(fd, chunk, offset)
                    written += len(chunk)
                offset += len(chunk)
        os.ftruncate(fd, stat.st_size)
        os.utime(fd, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return written
    finally:
        os.close(fd)  # releases the OFD lock; no reader of this process has the file (`reading`)


def same_state(source: Path, target: Path) -> bool:
    try:
        a, b = source.stat(), target.stat()
    except FileNotFoundError:
        return False
    return (a.st_mtime_ns, a.st_size) == (b.st_mtime_ns, b.st_size)
