"""Compile and load eBPF programs in a short-lived child, keep only their file descriptors.

bcc compiles C with the LLVM/clang it links in, and once imported that stays resident: it
tripled the agent's memory. Here a child process (this module run with ``-m``) imports bcc,
compiles, loads the programs and maps into the kernel, and hands their file descriptors back
over a Unix socket (SCM_RIGHTS) before it exits. The kernel objects live as long as a
descriptor does, so the agent owns them as if it had loaded them, and never maps LLVM.
The loader pins nothing in bpffs; what must outlive the agent, its user pins (the plaintext
capture's links).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nodemesh.agent.ebpf.syscall import Map

# The reply's JSON must fit one datagram on the socket pair, with its descriptors.
_REPLY_MAX = 65536
_MAX_FDS = 64


class LoadError(RuntimeError):
    """Compiling or loading failed; the message carries what the compiler or verifier said."""


@dataclass(frozen=True)
class Program:
    function: str
    prog_type: int
    attach_type: int


@dataclass
class Loaded:
    """Programs (fds by function name) and maps of one source file, owned by this process."""

    programs: dict[str, int] = field(default_factory=dict)
    maps: dict[str, Map] = field(default_factory=dict)

    def close(self) -> None:
        for fd in self.programs.values():
            os.close(fd)
        self.programs.clear()
        for m in self.maps.values():
            m.close()
        self.maps.clear()


def load(source: Path, cflags: list[str], programs: list[Program], maps: list[str],
         timeout: float = 120.0) -> Loaded:
    """Compile ``source`` in a child and return its ``programs`` and ``maps``, loaded."""
    request = {"source": str(source), "cflags": cflags, "maps": maps,
               "programs": [[p.function, p.prog_type, p.attach_type] for p in programs]}
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, tempfile.TemporaryFile() as errors:
        with theirs:
            try:
                child = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(theirs.fileno()), json.dumps(request)],
                    pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=errors, stderr=errors)
            except OSError as e:
                raise LoadError(f"cannot start the eBPF loader ({sys.executable}): {e}") from e
        try:
            ours.settimeout(timeout)
            message, fds, _, _ = socket.recv_fds(ours, _REPLY_MAX, _MAX_FDS)
        except OSError as e:  # includes the timeout
            child.kill()
            raise LoadError(f"no answer from the eBPF loader: {e}") from e
        finally:
            child.wait()
        if not message:
            errors.seek(0)
            raise LoadError(f"the eBPF loader exited with {child.returncode}: "
                            f"{errors.read().decode(errors='replace').strip()[-4000:]}")
        reply = json.loads(message)
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise LoadError(reply["error"])
    names = reply["programs"] + reply["maps"]
    owned = dict(zip(names, fds))
    return Loaded(programs={name: owned[name] for name in reply["programs"]},
                  maps={name: Map(name, owned[name]) for name in reply["maps"]})


def _child(sock_fd: int, request: dict) -> None:
    """Runs in the child: compile, load, send the fds (or the reason it failed), exit."""
    with socket.socket(fileno=sock_fd) as sock:
        try:
            from bcc import BPF, lib

            # bcc prints compiler diagnostics on fd 2 (the parent's temporary file) and raises
            # a bare Exception: both go back, the diagnostics as part of the message.
            bpf = BPF(src_file=request["source"].encode(), cflags=request["cflags"])
            fds = []
            for function, prog_type, attach_type in request["programs"]:
                fds.append(bpf.load_func(function.encode(), prog_type, attach_type=attach_type).fd)
            for name in request["maps"]:
                fd = lib.bpf_table_fd(bpf.module, name.encode())
                if fd < 0:
                    raise LookupError(f"{request['source']} declares no map {name}")
                fds.append(fd)
        except Exception as e:
            sys.stderr.flush()
            sock.send(json.dumps({"error": f"{e}: {_diagnostics()}"}).encode())
            return
        reply = {"programs": [p[0] for p in request["programs"]], "maps": request["maps"]}
        socket.send_fds(sock, [json.dumps(reply).encode()], fds)


def _diagnostics() -> str:
    """What the compiler wrote to fd 2 so far (a file the parent gave us), its last part."""
    try:
        size = os.lseek(2, 0, os.SEEK_CUR)
        return os.pread(2, 4000, max(0, size - 4000)).decode(errors="replace").strip() or "no compiler output"
    except OSError:
        return "compiler output unavailable"


if __name__ == "__main__":
    _child(int(sys.argv[1]), json.loads(sys.argv[2]))
