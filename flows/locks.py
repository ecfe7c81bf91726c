"""One run at a time on a shared folder: an exclusive file lock with a bounded wait.

The lake and the warehouse each have a lock file. A second run waits for it a while (the first
is often nearly done), then stops with a message naming the lock file rather than queueing
forever. `fcntl.flock` locks belong to the open file, so the kernel drops them when the holder
exits however it exits (SIGKILL and power loss included): a killed run never leaves a stale lock
that someone must delete by hand, as a pid file would.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_SECONDS = 0.2


@contextmanager
def held_exclusively(
    lock_path: Path, wait_seconds: float, busy_error: type[Exception], holders: str
) -> Iterator[None]:
    """Hold `lock_path` exclusively for the `with` block.

    Waits up to `wait_seconds` for another holder to finish, then raises `busy_error` saying
    that another mdecost `holders` is running and naming the lock file.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Read-only: flock needs no write access, so a lock file another user created (a
        # shared lake, a service account's run) locks as well; created 0644, it holds nothing.
        descriptor = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as error:
        raise busy_error(
            f"cannot open the lock {lock_path} ({error.strerror}); another user's mdecost "
            "may own it: make it readable to you, or use a lake and warehouse of your own"
        ) from None
    with os.fdopen(descriptor, "rb") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy_error(
                        f"another mdecost {holders} is running (lock {lock_path} held for over "
                        f"{wait_seconds:g} s); wait for it to finish and run again"
                    ) from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
