"""Virtual machines for the storage lab: QEMU on a bridge in a network
namespace of their own, each booting a throw-away snapshot of one root disk,
and a command channel through a directory shared over 9p.

Everything started here is recorded by PID and torn down by PID: the QEMU
processes (each the direct child, `ip netns exec` executes QEMU itself) and
the namespace, whose deletion removes the bridge and the taps in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
SUBNET = "10.213.0"
TCG = ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]
KVM = ["-accel", "kvm", "-cpu", "max"]


class LabError(RuntimeError):
    pass


@dataclass
class Build:
    kernel: Path
    initrd: Path
    rootfs: Path
    image: Path
    kver: str
    build_dir: Path

    @classmethod
    def make(cls, build_dir: Path) -> Build:
        """Runs lab/setup.sh (everything cached under `build_dir`)."""
        env = dict(os.environ, LAB_BUILD=str(build_dir))
        out = subprocess.run(
            ["bash", str(LAB_DIR / "setup.sh")],
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        v = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return cls(
            Path(v["KERNEL"]),
            Path(v["INITRD"]),
            Path(v["ROOTFS"]),
            Path(v["IMAGE"]),
            v["KVER"],
            build_dir,
        )


@dataclass
class VM:
    lab: Lab
    name: str
    index: int
    memory: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready_after: float = 0.0

    @property
    def ip(self) -> str:
        return f"{SUBNET}.{self.index}"

    @property
    def tap(self) -> str:
        return f"tap{self.index}"

    @property
    def run_dir(self) -> Path:
        return self.lab.share / "run" / self.name

    @property
    def console(self) -> Path:
        return self.lab.logs / f"{self.name}.console"

    def start(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        b = self.lab.build
        cmd = [
            "ip",
            "netns",
            "exec",
            self.lab.netns,
            "qemu-system-x86_64",
            *self.lab.accel_args,
            "-machine",
            "q35",
            "-m",
            str(self.memory),
            "-smp",
            "1",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{self.console}",
            "-kernel",
            str(b.kernel),
            "-initrd",
            str(b.initrd),
            "-netdev",
            f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-device",
            f"virtio-net-pci,netdev=n0,mac=52:54:00:13:00:{self.index:02x}",
            "-drive",
            f"file={b.image},if=virtio,format=raw,snapshot=on,cache=unsafe",
            "-virtfs",
            f"local,path={self.lab.share},mount_tag=labrun,security_model=none,id=run",
            "-append",
            f"console=ttyS0 panic=-1 quiet lab.name={self.name} lab.ip={self.ip}",
        ]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        self.lab.pids.add(self.proc.pid)

    def wait_ready(self, limit: float = 240) -> None:
        end = time.monotonic() + limit
        while not (self.run_dir / "ready").exists():
            if self.proc is None or self.proc.poll() is not None:
                raise LabError(f"{self.name}: QEMU exited; see {self.console}")
            if time.monotonic() > end:
                raise LabError(f"{self.name}: not ready after {limit} s; see {self.console}")
            time.sleep(0.1)
        self.ready_after = time.monotonic() - self.started

    def stop(self) -> None:
        """Powers the VM off (SIGKILL to its QEMU: a pulled plug)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.lab.pids.discard(self.proc.pid)
            self.proc = None

    def sh(self, script: str, limit: float = 120, check: bool = True) -> str:
        """Runs `script` with /bin/sh in the VM; gives its output."""
        rc, out = self.sh_rc(script, limit)
        if check and rc != 0:
            raise LabError(f"{self.name}: exit {rc} from {script.strip()[:200]!r}:\n{out}")
        return out

    def sh_rc(self, script: str, limit: float = 120) -> tuple[int, str]:
        i = uuid.uuid4().hex[:12]
        tmp = self.run_dir / f".c.{i}"
        tmp.write_text(script + "\n")
        tmp.rename(self.run_dir / f"cmd.{i}")
        rc_path = self.run_dir / f"rc.{i}"
        end = time.monotonic() + limit
        while not rc_path.exists():
            if time.monotonic() > end:
                out = (self.run_dir / f"out.{i}").read_text(errors="replace")
                raise LabError(f"{self.name}: no exit after {limit} s of {script[:200]!r}:\n{out}")
            time.sleep(0.05)
        rc = int(rc_path.read_text())
        return rc, (self.run_dir / f"out.{i}").read_text(errors="replace")

    def spawn(self, script: str, name: str) -> None:
        """Starts `script` in the background in the VM; its output goes to
        the file `name` of the VM's run directory."""
        self.sh(f"(setsid sh -c {shquote(script)} > /lab/run/{self.name}/{name} 2>&1 &)")

    def clock_offset(self) -> float:
        """This VM's CLOCK_REALTIME minus the host's, from the exchange with
        the shortest round trip of three."""
        best: tuple[float, float] | None = None
        for _ in range(3):
            t0 = time.time()
            g = float(self.sh("date +%s.%N"))
            t1 = time.time()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, g - (t0 + t1) / 2)
        assert best is not None
        return best[1]


def shquote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


@dataclass
class Lab:
    build: Build
    accel: str
    netns: str = field(default_factory=lambda: f"fgr-lab-{os.getpid()}")
    pids: set[int] = field(default_factory=set)
    vms: dict[str, VM] = field(default_factory=dict)

    @property
    def share(self) -> Path:
        return self.build.build_dir / "share"

    @property
    def logs(self) -> Path:
        return self.build.build_dir / "logs"

    @property
    def accel_args(self) -> list[str]:
        return KVM if self.accel == "kvm" else TCG

    def up(self, names: dict[str, tuple[int, int]]) -> None:
        """The namespace, its bridge and one tap per VM; the shared directory."""
        reap_stale_labs()
        shutil.rmtree(self.share, ignore_errors=True)
        shutil.rmtree(self.logs, ignore_errors=True)
        (self.share / "run").mkdir(parents=True)
        self.logs.mkdir(parents=True)
        shutil.copytree(LAB_DIR / "guest", self.share / "guest")
        hosts = ["127.0.0.1 localhost"] + [f"{SUBNET}.{i} {n}" for n, (i, _) in names.items()]
        (self.share / "hosts").write_text("\n".join(hosts) + "\n")
        ip = ["ip", "-n", self.netns]
        run(["ip", "netns", "add", self.netns])
        run([*ip, "link", "set", "lo", "up"])
        run([*ip, "link", "add", "br0", "type", "bridge"])
        run([*ip, "link", "set", "br0", "up"])
        for n, (i, mem) in names.items():
            run([*ip, "tuntap", "add", "dev", f"tap{i}", "mode", "tap"])
            run([*ip, "link", "set", f"tap{i}", "master", "br0", "up"])
            self.vms[n] = VM(self, n, i, mem)

    def link(self, vm: VM, up: bool) -> None:
        run(["ip", "-n", self.netns, "link", "set", vm.tap, "up" if up else "down"])

    def collect_logs(self, paths: str) -> None:
        """Copies `paths` of every running VM to its run directory (kept
        until the next run), for a look after a failure."""
        for vm in self.vms.values():
            if vm.proc is not None and vm.proc.poll() is None:
                with contextlib.suppress(LabError, OSError):
                    vm.sh(
                        f"mkdir -p /lab/run/{vm.name}/logs; dmesg > /lab/run/{vm.name}/logs/dmesg; "
                        f"cp -r {paths} /lab/run/{vm.name}/logs/ 2>/dev/null; true",
                        limit=30,
                    )

    def down(self) -> None:
        for vm in self.vms.values():
            vm.stop()
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.netns], stderr=subprocess.DEVNULL, check=False)


def reap_stale_labs() -> None:
    """A lab whose runner died without its teardown (SIGKILL) left its
    namespace: its QEMU processes (`ip netns pids`) are killed by PID and the
    namespace deleted. Only namespaces named by this harness, whose runner
    is gone."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in (line.split()[0] for line in out.splitlines() if line.startswith("fgr-lab-")):
        owner = ns.removeprefix("fgr-lab-")
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True)


def probe_kvm(build: Build) -> tuple[bool, str]:
    """Does a stock kernel boot under KVM here? Boots the initramfs with
    `lab.probe` (it prints a marker and powers off) for at most 20 s. The
    answer is cached in the build directory, keyed by the kernel, QEMU and
    the host's CPU."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    cpu = next(
        (
            ln
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "",
    )
    key = f"{build.kernel.name} {qemu} {cpu} {os.uname().release}"
    cache = build.build_dir / "kvm-probe"
    if cache.exists():
        k, _, verdict = cache.read_text().partition("\n")
        if k == key:
            return verdict.startswith("works"), verdict.strip() + " (cached)"
    console = build.build_dir / "kvm-probe.console"
    t0 = time.monotonic()
    p = subprocess.Popen(
        [
            "qemu-system-x86_64",
            *KVM,
            "-machine",
            "q35",
            "-m",
            "256",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{console}",
            "-kernel",
            str(build.kernel),
            "-initrd",
            str(build.initrd),
            "-append",
            "console=ttyS0 panic=-1 lab.probe",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    ok = console.exists() and "LAB-PROBE-OK" in console.read_text(errors="replace")
    verdict = (
        f"works ({time.monotonic() - t0:.1f} s to boot and power off)"
        if ok
        else "a stock kernel does not boot under KVM here (no marker within 20 s)"
    )
    cache.write_text(f"{key}\n{verdict}\n")
    return ok, verdict
