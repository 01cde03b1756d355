"""Starting and always cleaning up the OS processes that DDS tests talk to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class ProcessGroup:
    """Processes started for one test; `close()` ends every one of them (and children)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log_path: Path | None = None, env: dict | None = None) -> subprocess.Popen:
        out = open(log_path, "w") if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so children die with it
        )
        self.procs.append(proc)
        return proc

    def start_python(self, script: Path, *args: str, log_path: Path | None = None, env: dict | None = None):
        return self.start([sys.executable, str(script), *args], log_path=log_path, env=env)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10.0) -> int | None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.procs.clear()


def wait_until(predicate, timeout: float, interval: float = 0.05, spin=None) -> bool:
    """Poll `predicate` (spinning `spin(interval)` between polls if given) until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if spin is not None:
            spin(interval)
        else:
            time.sleep(interval)
    return predicate()
