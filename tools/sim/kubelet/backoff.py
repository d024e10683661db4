"""CrashLoopBackOff: how long the kubelet waits before starting a container that exited again.

As the kubelet: 10 s after the first exit, doubling up to 5 min; a container that ran for 10
min before exiting starts over at 10 s. Sans-IO: the runner tells it when the container
started and exited, it says how long to wait.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL = 10.0
MAXIMUM = 300.0
RESET_AFTER = 600.0


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether ``restartPolicy`` restarts a container that exited with ``exit_code``."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


@dataclass
class Backoff:
    """One container's backoff state across its restarts."""

    delay: float = 0.0

    def next_delay(self, ran_for: float) -> float:
        """The wait before the next start, for a run that lasted ``ran_for`` seconds."""
        if ran_for >= RESET_AFTER or self.delay == 0.0:
            self.delay = INITIAL
        else:
            self.delay = min(self.delay * 2, MAXIMUM)
        return self.delay
