"""``nodemesh check``: can this host run a nodemesh agent? Each need, checked for real, in plain words.

The agent fails late and obscurely when the kernel lacks something (a verifier error deep in
bcc's output, a missing mount), so this preflight tries the same things small: it compiles and
loads (without attaching) one program of each type the agent uses, with the helpers it uses.
Each line says OK or FAIL and, when something is missing, what to do about it. Optional
lines (``--`` when missing) are for extras such as ``sim up --prometheus``: the agent runs
without them, so they never make the host fail the check.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import click

from nodemesh import cgroups

MIN_KERNEL = (5, 15)
BPFFS = Path("/sys/fs/bpf")
BTF = Path("/sys/kernel/btf/vmlinux")
KHEADERS = Path("/sys/kernel/kheaders.tar.xz")
SETUP_HINT = "run `make setup` (as root)"

# The smallest programs that need what the agent needs: the two program types it loads and
# the helpers that identify a pod (netns cookie) and a socket (socket cookie) in each.
PROBE_PROGRAM = r"""
#include <uapi/linux/bpf.h>
int probe_connect4(struct bpf_sock_addr *ctx) {
    return (bpf_get_netns_cookie(ctx) ^ bpf_get_socket_cookie(ctx)) ? 1 : 1;
}
int probe_sockops(struct bpf_sock_ops *ctx) {
    return (bpf_get_netns_cookie(ctx) ^ bpf_get_socket_cookie(ctx)) ? 0 : 0;
}
"""


@dataclass
class Result:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False


def kernel_version() -> Result:
    release = platform.release()
    numbers = tuple(int(x) for x in release.split("-")[0].split(".")[:2])
    ok = numbers >= MIN_KERNEL
    return Result("kernel", ok, f"Linux {release}" + ("" if ok else f" (need >= {MIN_KERNEL[0]}.{MIN_KERNEL[1]})"),
                  "" if ok else "boot a kernel >= 5.15 (Debian 12: apt-get install linux-image-amd64)")


def btf() -> Result:
    if BTF.exists():
        return Result("BTF", True, str(BTF))
    return Result("BTF", False, f"{BTF} is missing",
                  "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's kernels are)")


def root() -> Result:
    if os.geteuid() == 0:
        return Result("root", True, "running as root")
    return Result("root", False, f"running as uid {os.geteuid()}",
                  "run as root (loading eBPF programs and creating namespaces need it)")


def _mounts_of_type(fstype: str) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [parts[1] for parts in (line.split() for line in f) if parts[2] == fstype]


def bpffs() -> Result:
    """bpffs at /sys/fs/bpf, mounted here when it is not (what systemd does on most hosts)."""
    if str(BPFFS) in _mounts_of_type("bpf"):
        return Result("bpffs", True, f"mounted at {BPFFS}")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.mount(b"bpf", str(BPFFS).encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        return Result("bpffs", False, f"not mounted at {BPFFS}, and mounting failed: {os.strerror(err)}",
                      f"mount it as root: mount -t bpf bpf {BPFFS}")
    return Result("bpffs", True, f"was not mounted: mounted it at {BPFFS}")


def cgroup2() -> Result:
    root_dir = cgroups.unified_root()
    if root_dir is None:
        return Result("cgroup v2", False, "the unified hierarchy is not mounted",
                      "mount it: mkdir -p /sys/fs/cgroup/unified && "
                      "mount -t cgroup2 none /sys/fs/cgroup/unified")
    layout = "pure v2" if not _mounts_of_type("cgroup") else "beside v1 (hybrid)"
    return Result("cgroup v2", True, f"unified hierarchy at {root_dir}, {layout}")


def iproute2() -> Result:
    ip = shutil.which("ip")
    if ip:
        return Result("iproute2", True, ip)
    return Result("iproute2", False, "`ip` not found", "apt-get install iproute2")


def kernel_headers() -> Result:
    """bcc compiles against /lib/modules/<release>/build (or source), else the kernel's built-in
    headers (CONFIG_IKHEADERS); our programs use only UAPI structures, so any of them will do."""
    kdir = Path("/lib/modules", platform.release())
    for sub in ("build", "source"):
        if (kdir / sub / "include/linux/kconfig.h").exists():
            return Result("kernel headers", True, f"{kdir / sub} -> {(kdir / sub).resolve()}")
    if KHEADERS.exists():
        return Result("kernel headers", True, f"built into the kernel ({KHEADERS})")
    return Result("kernel headers", False, f"none under {kdir}/build or {kdir}/source",
                  f"{SETUP_HINT}: it installs linux-headers-amd64 and links them for this kernel")


def bcc_import() -> Result:
    try:
        import bcc
    except ImportError as exc:
        return Result("bcc", False, f"cannot import bcc: {exc}",
                      "apt-get install python3-bpfcc, and use a venv with system site-packages "
                      f"({SETUP_HINT})")
    return Result("bcc", True, f"bcc from {Path(bcc.__file__).parent}")


def _stderr_of(action: Callable[[], None]) -> str:
    """Run ``action`` and return what it wrote to fd 2: bcc's compiler says why there, not in the exception."""
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            action()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        return captured.read().decode(errors="replace")


def bpf_programs(source: str = PROBE_PROGRAM) -> Result:
    """Compile and load (not attach) a connect4 and a sock_ops program using the cookie helpers."""
    try:
        from bcc import BPF, BPFAttachType, BPFProgType
    except ImportError:
        return Result("eBPF programs", False, "not tried: bcc is missing", SETUP_HINT)
    loaded: list[BPF] = []
    errors: list[str] = []

    def compile_and_load() -> None:
        try:
            program = BPF(text=source.encode())
            loaded.append(program)
            program.load_func(b"probe_connect4", BPFProgType.CGROUP_SOCK_ADDR,
                              attach_type=BPFAttachType.CGROUP_INET4_CONNECT)
            program.load_func(b"probe_sockops", BPFProgType.SOCK_OPS)
        except Exception as exc:  # bcc raises bare Exceptions for compile and load failures
            errors.append(str(exc))

    output = _stderr_of(compile_and_load)
    for program in loaded:
        program.cleanup()
    if not errors:
        return Result("eBPF programs", True,
                      "cgroup/connect4 and sock_ops with bpf_get_netns_cookie, bpf_get_socket_cookie load")
    tail = "\n".join(output.strip().splitlines()[-5:])
    return Result("eBPF programs", False, errors[0] + (f"\n{tail}" if tail else ""),
                  f"{SETUP_HINT}; if it still fails, the kernel lacks BPF features (need >= 5.15)")


def prometheus() -> Result:
    """Prometheus and promtool, for `nodemesh sim up --prometheus`, the demo's metrics and the
    dashboards' tests; the mesh itself does not need them."""
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if missing:
        return Result("prometheus", False, f"{' and '.join(missing)} not found",
                      f"{SETUP_HINT}: it installs Debian's prometheus package", optional=True)
    version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
    return Result("prometheus", True, version[0] if version else shutil.which("prometheus"),
                  optional=True)


CHECKS: tuple[Callable[[], Result], ...] = (
    kernel_version, btf, root, bpffs, cgroup2, iproute2, kernel_headers, bcc_import, bpf_programs,
)
OPTIONAL_CHECKS: tuple[Callable[[], Result], ...] = (prometheus,)


def run_checks(checks: tuple[Callable[[], Result], ...] = CHECKS) -> list[Result]:
    return [check() for check in checks]


def _status(result: Result) -> str:
    return "OK  " if result.ok else "--  " if result.optional else "FAIL"


@click.command()
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def check(output: str) -> None:
    """Tell whether this host can run a nodemesh agent, and what to do where it cannot."""
    results = run_checks(CHECKS + OPTIONAL_CHECKS)
    failed = [r.name for r in results if not r.ok and not r.optional]
    if output == "json":
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            click.echo(f"{_status(r)}  {r.name}: {r.detail}" + (" (optional)" if r.optional else ""))
            if r.fix:
                click.echo(f"      -> {r.fix}")
        click.echo("\nthis host can run a nodemesh agent" if not failed
                   else f"\nmissing: {', '.join(failed)}")
    raise SystemExit(1 if failed else 0)
