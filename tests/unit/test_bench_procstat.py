"""What the benchmark reads from /proc about the processes it charges: CPU, wake-ups, memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from eventually import eventually

from nodemesh.tools.bench.procstat import cpu_seconds, rss_mb, wakeups
from nodemesh.tools.bench.run import per_operation


def test_a_sleeping_process_wakes_and_a_spinning_one_burns_cpu() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time\nfor _ in range(50): time.sleep(0.01)"])
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"])
    try:
        # it sleeps and wakes 50 times in about 0.5 s: ten wake-ups show soon, however slow its start
        eventually(lambda: wakeups([sleeper.pid]) >= 10, what="the sleeper's wake-ups to count")
        assert rss_mb(spinner.pid) > 1
        cpu = cpu_seconds([spinner.pid])
        sleeper.wait(5)
        spinner_woke = wakeups([spinner.pid])
        time.sleep(0.25)  # not a condition: the interval over which the spinner must burn CPU, not wake
        later_cpu = cpu_seconds([spinner.pid])
        assert wakeups([os.getpid()]) > 0
        assert later_cpu - cpu > 0.1 and wakeups([spinner.pid]) - spinner_woke < 10
    finally:
        spinner.kill()
        spinner.wait(5)


def test_costs_are_per_request_and_per_connection() -> None:
    latency = per_operation("latency-1024B-2000rps", {"count": 4000, "seconds": 2.0, "achieved_rate": 2000.0},
                            cpu=0.8, woke=6000)
    assert latency == {"vcpu_per_krps": 0.2, "wakeups_per_request": 1.5}
    conn = per_operation("conn", {"connections": 2000}, cpu=1.0, woke=5000)
    assert conn == {"cpu_us_per_conn": 500.0, "wakeups_per_conn": 2.5}
    assert per_operation("bulk-1", {"mb_per_s": 100}, cpu=1.0, woke=5) == {}
    assert per_operation("conn", {"connections": 0}, cpu=1.0, woke=5) == {}
