"""The locks that serialize fabricdata's own writers.

- :func:`dataset_lock` (and the decorator :func:`holds_dataset`): the lease of one dataset, held by every command
  that changes it (import, writeback, augment, balance, split, validate, prelabel, review, and export florence for
  a consistent export) from before it reads anything until it is done. The lease is a document in FiftyOne's own
  database (collection ``fabricdata_leases``, one per dataset name), so every machine and every spelling of the
  database URI sees the same one. It is taken by one atomic update timed by the database's clock; it names its
  holder (command, pid, host) and lapses :data:`LEASE_TTL_S` (``FABRICDATA_LEASE_TTL``) after the holder's last
  heartbeat (a thread renews it every third of that), so a holder killed on another machine frees it within that
  time, and one killed on this machine (its pid is gone) is taken over at once. A second command says who holds
  the dataset and waits (``FABRICDATA_LOCK_WAIT`` seconds at most, default 900).
- :func:`file_lock`: one per annotation file (``fcntl.flock`` on the file itself, released by the kernel when a
  process dies), so two datasets that share a folder never write one file at once.

LabelImg takes no lock: a save from it is caught by re-checking the file's hash just before the rename
(:func:`fabricdata.core.fileio.atomic_write_bytes` with ``expect``). Neither does the FiftyOne App: its edits are
sample updates, which write-back reads under the lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import os
import shlex
import socket
import stat
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from fabricdata.core import faults
from fabricdata.core.errors import DatasetError, InvalidValueError
from fabricdata.core.fileio import file_kind

#: the collection of leases in FiftyOne's database
LEASES = "fabricdata_leases"
#: a lease lapses this long after its holder's last heartbeat (a holder killed on another machine)
LEASE_TTL_S = 30.0
#: how long a command waits for a dataset another command holds, unless ``FABRICDATA_LOCK_WAIT`` says otherwise
DEFAULT_WAIT_S = 900.0
_POLL_S = 0.25

#: the leases each thread holds, by dataset name (a command that holds one may call another that takes it; two
#: threads of one process, as in the App's server, take turns like two processes)
_local = threading.local()


@contextlib.contextmanager
def dataset_lock(dataset_name: str, command: str = "") -> Iterator[None]:
    """Hold the lease of ``dataset_name`` (see the module docstring) for the ``with`` block; ``command`` names
    what the holder does, for the commands that wait ("import", "review r1"). Re-entrant within a thread; another
    thread of the process waits like another process.

    Raises:
        DatasetError: another command held the dataset for longer than the wait (it is named).
    """
    held: dict[str, _Lease] = _local.__dict__.setdefault("held", {})
    if dataset_name in held:
        yield
        return
    lease = _Lease.take(dataset_name, command)
    held[dataset_name] = lease
    try:
        faults.point("lease.acquired")
        yield
    finally:
        del held[dataset_name]
        lease.release()


P = ParamSpec("P")
R = TypeVar("R")


def holds_dataset(command: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the function runs holding :func:`dataset_lock` of its ``dataset_name`` argument, from its first
    line (before it reads anything) to its return. One line makes a new command that changes a dataset wait for
    the others: ``@holds_dataset("snapshot")``."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)
        if "dataset_name" not in signature.parameters:
            raise TypeError(f"{function.__qualname__} has no dataset_name parameter to lock")

        @functools.wraps(function)
        def locked(*args: P.args, **kwargs: P.kwargs) -> R:
            name = signature.bind(*args, **kwargs).arguments["dataset_name"]
            with dataset_lock(str(name), command):
                return function(*args, **kwargs)

        return locked

    return decorate


@dataclass(slots=True)
class _Lease:
    collection: Any
    name: str
    owner: str
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @classmethod
    def take(cls, name: str, command: str) -> _Lease:
        """Wait until the lease of ``name`` is ours; start its heartbeat."""
        from fiftyone.core.odm.database import get_db_conn

        lease = cls(get_db_conn()[LEASES], name, uuid.uuid4().hex)
        me = _holder(lease.owner, command)
        deadline = time.monotonic() + wait_seconds()
        told: str | None = None
        while not lease._try(me):
            holder = lease.collection.find_one({"_id": name})
            if holder is None or "owner" not in holder:
                continue  # released, or about to be taken, between our try and the look
            if _dead_here(holder) and lease._take_over(holder, me):
                break
            told = _tell_waiting(name, holder, told)
            if time.monotonic() > deadline:
                raise DatasetError(
                    f"dataset {name!r} is in use by {describe(holder)} for longer than {wait_seconds():.0f} s; "
                    "run this again when it is done (FABRICDATA_LOCK_WAIT=SECONDS waits longer)"
                )
            time.sleep(_POLL_S)
        lease.thread = threading.Thread(target=lease._heartbeat, name=f"lease {name}", daemon=True)
        lease.thread.start()
        return lease

    def _try(self, me: dict[str, Any]) -> bool:
        """Take the lease where it has lapsed, in one atomic update timed by the database's clock; a dataset
        that never had one gets a lapsed one first (MongoDB allows no ``$expr`` in an upsert's filter)."""
        from pymongo.errors import DuplicateKeyError

        with contextlib.suppress(DuplicateKeyError):
            self.collection.insert_one({"_id": self.name, "expires": datetime(1970, 1, 1)})
        lapsed = {"_id": self.name, "$expr": {"$lt": ["$expires", "$$NOW"]}}
        return bool(self.collection.update_one(lapsed, _set(me)).modified_count == 1)

    def _take_over(self, holder: dict[str, Any], me: dict[str, Any]) -> bool:
        result = self.collection.update_one({"_id": self.name, "owner": holder.get("owner")}, _set(me))
        return bool(result.modified_count == 1)

    def _heartbeat(self) -> None:
        """Renew the lease every third of its life; say so once if another command took it meanwhile (this
        process was stopped for longer than the lease lives)."""
        import pymongo

        ttl = lease_ttl()
        renew = [{"$set": {"expires": {"$add": ["$$NOW", int(ttl * 1000)]}}}]
        while not self.stop.wait(ttl / 3):
            try:
                with pymongo.timeout(ttl / 3):
                    result = self.collection.update_one({"_id": self.name, "owner": self.owner}, renew)
            except pymongo.errors.PyMongoError:
                continue  # the command itself meets the database's failure and reports it
            if result.matched_count == 0 and not self.stop.is_set():
                print(f"warning: the lease of dataset {self.name!r} lapsed; another command took it", file=sys.stderr)
                return

    def release(self) -> None:
        import pymongo

        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        with contextlib.suppress(pymongo.errors.PyMongoError), pymongo.timeout(5):
            self.collection.delete_one({"_id": self.name, "owner": self.owner})


def _set(me: dict[str, Any]) -> list[dict[str, Any]]:
    """The update that makes ``me`` the holder, with times from the database's clock (machines' clocks differ)."""
    return [{"$set": {**me, "since": "$$NOW", "expires": {"$add": ["$$NOW", int(lease_ttl() * 1000)]}}}]


def _holder(owner: str, command: str) -> dict[str, Any]:
    import psutil

    first = Path(sys.argv[0]) if sys.argv else Path()
    ours = first.name == "fabricdata" or (first.name == "__main__.py" and first.parent.name in ("fabricdata", "cli"))
    argv = sys.argv[1:] if ours else []  # the command line of a fabricdata command (not of a test or a script)
    return {
        "owner": owner,
        "command": command or "a command",
        "argv": shlex.join(["fabricdata", *argv])[:300] if argv else "",
        "host": socket.gethostname(),
        "pidns": _pid_namespace(),
        "pid": os.getpid(),
        "started": psutil.Process().create_time(),
    }


def _dead_here(holder: dict[str, Any]) -> bool:
    """True when the holder ran on this machine and its process is gone (its pid unused, or reused since)."""
    import psutil

    if holder.get("host") != socket.gethostname() or holder.get("pidns") != _pid_namespace():
        return False  # another machine, or a container that shares this one's name: its pids are not ours
    try:
        return bool(abs(psutil.Process(int(holder.get("pid", 0))).create_time() - holder.get("started", 0)) > 1)
    except (psutil.NoSuchProcess, ValueError):
        return True
    except psutil.Error:
        return False


def _pid_namespace() -> int | None:
    """The identity of this process's pid namespace (Linux; None elsewhere): containers sharing a host name
    (``--network host``) have their own pids."""
    try:
        return Path("/proc/self/ns/pid").stat().st_ino
    except OSError:
        return None


def describe(holder: dict[str, Any]) -> str:
    """``'fabricdata import data --dataset x' (pid 12 on host h, since 10:04:31 UTC)``."""
    since = holder.get("since")
    when = f", since {since:%H:%M:%S} UTC" if isinstance(since, datetime) else ""
    what = holder.get("argv") or holder.get("command") or "another command"
    return f"{what!r} (pid {holder.get('pid')} on host {holder.get('host')}{when})"


def _tell_waiting(name: str, holder: dict[str, Any], told: str | None) -> str:
    """Say once per holder that this command waits, and for whom."""
    owner = str(holder.get("owner"))
    if owner != told:
        warnings.warn(f"dataset {name!r} is in use by {describe(holder)}: waiting for it", stacklevel=2)
    return owner


def wait_seconds() -> float:
    """How long a command waits for a dataset: ``FABRICDATA_LOCK_WAIT`` seconds, else :data:`DEFAULT_WAIT_S`."""
    return _seconds("FABRICDATA_LOCK_WAIT", DEFAULT_WAIT_S)


def lease_ttl() -> float:
    """How long a lease lives without a heartbeat: ``FABRICDATA_LEASE_TTL`` seconds, else :data:`LEASE_TTL_S`."""
    return max(1.0, _seconds("FABRICDATA_LEASE_TTL", LEASE_TTL_S))


def _seconds(variable: str, default: float) -> float:
    try:
        return float(os.environ.get(variable) or default)
    except ValueError:
        raise DatasetError(f"{variable}: expected a number of seconds, got {os.environ[variable]!r}") from None


def lease_holder(dataset_name: str) -> dict[str, Any] | None:
    """The lease document of ``dataset_name`` (None: free), for tests and status lines."""
    from fiftyone.core.odm.database import get_db_conn

    found = get_db_conn()[LEASES].find_one({"_id": dataset_name, "owner": {"$exists": True}})
    return dict(found) if found else None


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the existing file ``path``. A writer that replaced the file (a rename) while we
    waited leaves us holding the old inode: then the new one is locked instead.

    Raises:
        InvalidValueError: ``path`` is not a regular file (a FIFO, a device, a folder), found without blocking.
        OSError: it cannot be opened (FileNotFoundError when it is gone).
    """
    target = Path(path)
    while True:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO in the file's place must not block the open
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise InvalidValueError(target, "file", f"not a regular file ({file_kind(mode)})")
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == target.stat().st_ino:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)
