"""Work-directory safety: folder-name checks, the write lock, atomic and repairable swaps.

Every directory swap runs under the work directory's lock file (``.lpa.lock``, fcntl flock):
build the new content in ``.<name>.tmp-<pid>-*``, rename the old ``<name>`` to ``.<name>.old``,
rename the temp into place, drop ``.old``. A crash between the two renames is repaired on the
next write or read (``.old`` is restored); temp folders of dead writers are removed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["safe_slug", "workdir_lock", "WorkdirLockedError", "atomic_dir", "atomic_write_bytes",
           "recover_dir", "clean_stale_temps", "LOCK_FILE"]

LOCK_FILE = ".lpa.lock"
LOCK_TIMEOUT_ENV = "LPA_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 300.0
STALE_TEMP_AGE_S = 3600.0
_SLUG = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_HELD: dict[tuple[str, int], int] = {}  # (lock root, thread id) -> nesting depth


class WorkdirLockedError(RuntimeError):
    """Another process held the work directory's write lock for longer than the timeout."""


def safe_slug(value: Any, field: str) -> str:
    """Return ``value`` if it is safe as one folder name, else raise ValueError naming ``field``.

    Allowed: 1-100 ASCII letters, digits, ``-``, ``_`` and ``.``, not starting with ``.``
    (so no ``..``, no path separators, no absolute paths, no hidden names).
    """
    if not isinstance(value, str) or _SLUG.fullmatch(value) is None:
        raise ValueError(
            f"{field} must be 1-100 characters of letters, digits, '-', '_' or '.' "
            f"(not starting with '.'), because it names a folder; got {value!r}")
    return value


def _lock_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_LOCK_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds; got {raw!r}") from None


@contextmanager
def workdir_lock(workdir: Path, timeout: float | None = None) -> Iterator[Path]:
    """Hold the exclusive write lock of a work directory; yield its resolved path.

    Parameters
    ----------
    workdir : the work directory; its ``.lpa.lock`` file is created if missing.
    timeout : seconds to wait for another holder (default ``$LPA_LOCK_TIMEOUT`` or 300 s);
        then :class:`WorkdirLockedError` names the holder's pid. Re-entrant per thread.
    """
    root = Path(workdir).resolve()
    key = (str(root), threading.get_ident())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield root
        finally:
            _HELD[key] -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    wait = _lock_timeout(timeout)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = path.read_text().strip() or "unknown"
                    raise WorkdirLockedError(
                        f"work directory {root} is being written by another process "
                        f"(pid {holder}, lock file {path}); waited {wait:g} s. Retry when it "
                        f"finishes, or raise {LOCK_TIMEOUT_ENV}") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = 1
        try:
            yield root
        finally:
            del _HELD[key]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _old(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


def _recover(target: Path) -> None:
    """Finish an interrupted swap (caller holds the lock)."""
    old = _old(target)
    if not old.exists():
        return
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, target)


def recover_dir(target: Path, root: Path | None = None) -> None:
    """Repair a swap cut short by a crash: restore ``.<name>.old`` if ``target`` is missing.

    If both exist the new content had landed, so the leftover ``.old`` is dropped. Takes the
    lock of ``root`` (default: the target's parent folder) only when there is work to do.
    """
    target = Path(target)
    if not _old(target).exists():
        return
    with workdir_lock(root if root is not None else target.parent):
        _recover(target)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(target: Path, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove ``.<name>.tmp-*`` folders beside ``target`` left by dead or hour-old writers.

    A temp folder is stale when the pid in its name is not running or it is older than
    ``max_age_s`` seconds. Call with the work directory's lock held. Returns what was removed.
    """
    target = Path(target)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    now = time.time()
    for p in target.parent.glob(f".{target.name}.tmp-*"):
        if not p.is_dir() or p.is_symlink():
            continue
        m = re.match(r"(\d+)-", p.name[len(f".{target.name}.tmp-"):])
        dead = m is not None and not _pid_alive(int(m.group(1)))
        if dead or now - p.stat().st_mtime > max_age_s:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _inside(target: Path, root: Path) -> Path:
    """Resolved root; ValueError unless ``target`` (symlinks resolved) lies strictly inside it."""
    root_r, target_r = Path(root).resolve(), Path(target).resolve()
    if root_r not in target_r.parents:
        raise ValueError(f"refusing to replace {target}: it resolves to {target_r}, which is "
                         f"not inside the work directory {root_r}")
    return root_r


def atomic_dir(target: Path, fill: Callable[[Path], None], root: Path | None = None) -> None:
    """Build a directory in a temp sibling via ``fill`` and swap it in place of ``target``.

    Parameters
    ----------
    target : folder to replace; must resolve (symlinks followed) strictly inside ``root``,
        otherwise ValueError and nothing on disk is touched.
    fill : writes the new content into the temp folder it is given.
    root : the work directory that owns ``target`` (default: the target's parent folder);
        its lock serialises writers (:func:`workdir_lock`).

    If ``fill`` fails the previous ``target`` is untouched; if the swap fails it is restored;
    if the process dies mid-swap, the next write or :func:`recover_dir` restores it.
    """
    target = Path(target)
    root_r = _inside(target, root if root is not None else target.parent)
    with workdir_lock(root_r):
        _recover(target)
        clean_stale_temps(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent,
                                    prefix=f".{target.name}.tmp-{os.getpid()}-"))
        try:
            fill(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = _old(target)
        moved = False
        try:
            if target.exists() or target.is_symlink():
                os.replace(target, old)
                moved = True
            os.replace(tmp, target)
        except BaseException:
            if moved and not target.exists():
                os.replace(old, target)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)

