"""Test-only hooks of the RLBench double (not part of RLBench's API)."""

from __future__ import annotations

import threading

# (call name, threading.get_ident()) for every simulator-facing call, in order.
CALL_LOG: list[tuple[str, int]] = []
# The Environment objects created, newest last (to inspect the configuration used).
ENVIRONMENTS: list = []
_lock = threading.Lock()


class ProcessAborted(BaseException):
    """Stands in for a crash the real library cannot report (CoppeliaSim's abort without an X
    display): a BaseException, so code under test cannot swallow it with `except Exception`."""


def record(name: str) -> None:
    with _lock:
        CALL_LOG.append((name, threading.get_ident()))


def clear() -> None:
    """Forget the call log and environments, and switch off injected faults."""
    from fake_rlbench.task_environment import TaskEnvironment

    with _lock:
        CALL_LOG.clear()
        ENVIRONMENTS.clear()
    TaskEnvironment.next_step_error = None
    TaskEnvironment.reset_failures = 0
