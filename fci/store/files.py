"""The store's file operations: reads that never follow a symbolic link, the one
writer every stored byte goes through, and who owns a temporary file or claim.

Owners are named in temporary names as `<pid>.<start>@<host>`: the process id,
its start time (clock ticks after boot, from /proc; 0 where unknown) and the
host, so a leftover whose process has died, or whose pid now belongs to another
process, is recognised as abandoned at once on the same host.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import stat
from pathlib import Path

__all__ = ["HOST", "read_regular", "write_new", "what_is", "remove", "owner_tag", "parse_owner", "owner_gone",
           "process_start", "pid_alive"]

HOST = socket.gethostname()
_HOST_TAG = re.sub(r"[^A-Za-z0-9.-]", "_", HOST) or "host"
_OWNER = re.compile(r"-(\d+)\.(\d+)@([A-Za-z0-9._-]+)$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def what_is(path: Path) -> str:
    """'absent', 'dir', 'file', 'link' or 'other' (a fifo, socket or device), by lstat."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "absent"
    except NotADirectoryError:  # a parent is a file
        return "absent"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """The bytes of the regular file `path` (at most `limit`), never through a
    symbolic link: a link raises OSError ELOOP, anything else not a regular file
    OSError EINVAL."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(-1 if limit is None else limit)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes) -> None:
    """Create the file `path` (it must not exist; never through a link) holding
    `data`, with the modes of the process's umask. Every byte the store writes
    goes through here; on failure (a full disk) the partial file is removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    os.close(fd)


def remove(path: Path) -> None:
    """Remove what is at `path` without following links: a folder with its
    contents (links inside are removed, not followed), anything else unlinked."""
    if what_is(path) == "dir":
        shutil.rmtree(path)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (owned by anyone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


def owner_tag() -> str:
    """This process as a name part: `<pid>.<start>@<host>`."""
    pid = os.getpid()
    return f"{pid}.{process_start(pid) or 0}@{_HOST_TAG}"


def parse_owner(name: str) -> tuple[str, int, int] | None:
    """(host tag, pid, start) from a name ending in `-<owner_tag>`, or None."""
    m = _OWNER.search(name)
    return (m.group(3), int(m.group(1)), int(m.group(2))) if m else None


def owner_gone(host: str, pid: int, start: int | None) -> bool | None:
    """True when the owner (`host` as named in files or tags) is a process of this
    host that has died (or whose pid now belongs to a process started at another
    time); False when it runs; None when it is on another host (unknowable here)."""
    if host not in (HOST, _HOST_TAG):
        return None
    if not pid_alive(pid):
        return True
    if start:
        now = process_start(pid)
        if now is not None and now != start:
            return True
    return False
