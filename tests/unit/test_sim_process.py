"""Telling our processes apart from dead ones and from later ones that got the same pid."""

import os
import signal
import subprocess
import sys
import time

from eventually import eventually

from nodemesh.tools.sim.process import alive, process_env, start_time, terminate
from nodemesh.tools.sim.state import ProcessRecord


def _state(pid: int) -> str:
    """The process's state letter from /proc (R, S, Z...): after the command name, which may hold spaces."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _record(pid: int) -> ProcessRecord:
    return ProcessRecord(argv=[], env={}, netns="", cgroup="", log="", pid=pid, start_time=start_time(pid))


def test_a_live_process_is_alive_and_a_zombie_is_not():
    child = subprocess.Popen(["sleep", "30"])
    record = _record(child.pid)
    assert alive(record)
    child.kill()
    # dead, not reaped yet: a zombie, as orphans stay on hosts whose init does not reap
    eventually(lambda: _state(child.pid) == "Z", what="the killed child to be a zombie")
    assert not alive(record)
    child.wait()
    assert start_time(child.pid) is None


def test_a_reused_pid_is_not_our_process():
    record = _record(os.getpid())
    record.start_time -= 1
    assert not alive(record)


def test_terminate_takes_the_whole_process_group_and_escalates_to_kill():
    # A session leader that ignores SIGTERM, with a child: both must be gone afterwards.
    script = "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
             "p = subprocess.Popen(['sleep', '30']); print(p.pid, flush=True); time.sleep(30)"
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                              stdout=subprocess.PIPE, text=True)
    grandchild = int(leader.stdout.readline())
    started = time.monotonic()
    terminate([leader.pid], grace=0.3)
    assert time.monotonic() - started < 3
    assert leader.wait(timeout=1) == -signal.SIGKILL
    # the group's SIGKILL reaches the grandchild asynchronously
    eventually(lambda: start_time(grandchild) is None, timeout=2, what="the grandchild to be gone")


def test_processes_get_a_clean_env_with_our_venv_first():
    env = process_env({"POD_NAME": "p", "LANG": "fr"})
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)
    assert env["POD_NAME"] == "p" and env["LANG"] == "fr"
    assert "HOME" not in env
