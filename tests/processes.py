"""Looking at real processes from tests: is a pid still running, which redis-servers use a data dir."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def _state(pid: int) -> str:
    """The one-letter state from /proc/PID/stat (after the command name, which may contain spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
        return _state(pid) != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def redis_servers_in(data_dir: Path) -> list[int]:
    """Running redis-server processes whose working directory is ``data_dir`` (the embedded server's)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"redis-server" not in (proc / "cmdline").read_bytes():
                continue
            if Path(os.readlink(proc / "cwd")) == data_dir and is_running(int(proc.name)):
                pids.append(int(proc.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
