"""Child processes that never outlive their parent: a test killed midway leaves none behind.

Each child asks the kernel (PR_SET_PDEATHSIG) to be killed when its parent dies, and runs in a
session of its own, so a Ctrl-C aimed at pytest reaches pytest (which then stops the children in
order) rather than every component at once. Output goes to a log file, whose tail is what a
failed start reports.

The kernel's "parent" here is the thread that started the child: start components from a
thread that outlives them (the main thread, as pytest's fixtures do), never from a worker thread
that may end first (``asyncio.to_thread``), or they are killed with it.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from pathlib import Path

PR_SET_PDEATHSIG = 1
GRACE = 10.0  # seconds a component gets to exit on SIGTERM before SIGKILL


def _die_with_parent() -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


class Child:
    """One running component: its process and its log."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                            env=env, start_new_session=True,
                                            preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log (what a failed start reports)."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = GRACE) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the process is reaped."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
