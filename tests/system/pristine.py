"""Pristine Debian servers booted with real systemd, for the system tests and for CI.

A root is built once with debootstrap (minbase + the README's prerequisites + systemd) and cached under
``/var/cache/hubrunbook-roots/<suite>-<key>``, keyed by suite and package list; each test boots a throwaway copy of
it with ``systemd-nspawn -b`` and runs commands inside with ``nsenter``. The container shares the host's network
(loopback ports included), so it gets what a real server has of its own: a resolver, a CA store and the
package clients' settings (copied from this host), nothing more.

CLI (used by .ci/run):  python tests/system/pristine.py run bookworm -- make test
boots a pristine bookworm, clones this checkout into /root/hubrunbook and runs the command there; exit code passes.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HRB_ROOT_CACHE", "/var/cache/hubrunbook-roots"))
WORK = Path(os.environ.get("HRB_SYSTEM_WORK", "/var/tmp/hrb-system"))
MIRROR = os.environ.get("HRB_DEBIAN_MIRROR", "")

# What a new user's server holds: the README's prerequisites, and systemd to boot it. Nothing else.
README_PREREQUISITES = ["python3", "git", "make"]
BOOT = ["systemd", "systemd-sysv", "dbus"]
SUITES = {
    "bookworm": README_PREREQUISITES + BOOT,  # Debian 12: no Node.js at all
    "trixie": README_PREREQUISITES + ["nodejs"] + BOOT,  # Debian 13: Debian's own nodejs (20), so the system-node path
}
# package-client settings a real server has of its own (copied when present on this host)
HOST_FILES = ["/etc/resolv.conf", "/etc/pip.conf", "/etc/xdg/pip/pip.conf", "/etc/xdg/pip/constraints.txt",
              "/root/.npmrc"]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ENV_PREFIXES = ("PIP_CERT", "PIP_INDEX", "PIP_EXTRA_INDEX", "PIP_DEFAULT_TIMEOUT", "UV_", "NPM_CONFIG_", "SSL_CERT_",
                "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
                "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


class HarnessError(RuntimeError):
    """The harness could not build, boot or drive a container."""


def host_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 or one-line sources), else deb.debian.org."""
    if MIRROR:
        return MIRROR
    for src in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        try:
            text = src.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if w.startswith("http"))
    return "http://deb.debian.org/debian"


def root_key(suite: str) -> str:
    packages = ",".join(sorted(SUITES[suite]))
    return hashlib.sha256(f"{suite}|minbase|{packages}".encode()).hexdigest()[:12]


def ensure_root(suite: str, *, log=print) -> Path:
    """The cached pristine root of *suite*, built with debootstrap when missing (~1–2 min). Atomic: a half-built
    root is never used."""
    root = CACHE / f"{suite}-{root_key(suite)}"
    if (root / "etc" / "os-release").exists() and (root / ".hrb-complete").exists():
        os.chmod(root, 0o755)  # the server's `/`: a root built by an older harness kept mkdtemp's 0700
        return root
    for tool in ("debootstrap", "systemd-nspawn"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} is not installed: apt-get install debootstrap systemd-container")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{suite}-", dir=CACHE))
    os.chmod(tmp, 0o755)  # it becomes the server's `/`: mkdtemp's 0700 would lock every user out of everything
    t0 = time.monotonic()
    log(f"building pristine {suite} root ({' '.join(SUITES[suite])}) from {host_mirror()} …")
    proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(SUITES[suite])}", suite, str(tmp),
                           host_mirror()], capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HarnessError(f"debootstrap {suite} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    (tmp / ".hrb-complete").write_text(f"{suite} {' '.join(SUITES[suite])}\n")
    shutil.rmtree(root, ignore_errors=True)
    os.rename(tmp, root)
    log(f"built {root} in {time.monotonic() - t0:.0f} s")
    return root


def container_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a root shell on a fresh server, plus this host's CA and package-client variables."""
    env = {"HOME": "/root", "USER": "root", "LOGNAME": "root", "LANG": "C.UTF-8", "TERM": "dumb",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    if CA_BUNDLE.exists():  # the CA store copied in (this host's egress may need its own CA): every client uses it
        bundle = str(CA_BUNDLE)
        env |= {"SSL_CERT_FILE": bundle, "REQUESTS_CA_BUNDLE": bundle, "NODE_EXTRA_CA_CERTS": bundle, "PIP_CERT": bundle}
    env |= {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    return env | (extra or {})


def checkout_tree(dest: Path) -> None:
    """A fresh clone of this checkout at *dest*, with the working tree's uncommitted changes applied on top (so a
    developer can run the system tests before committing; in CI the tree is clean)."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True, timeout=120)
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=REPO, capture_output=True, check=True).stdout
    if diff.strip():
        subprocess.run(["git", "apply", "--whitespace=nowarn"], cwd=dest, input=diff, check=True)
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "-z"], cwd=REPO,
                               capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, untracked):
        src, dst = REPO / rel.decode(), dest / rel.decode()
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def copy_chart_data(dest: Path) -> None:
    """The Zero to JupyterHub chart data the kubernetes tests validate against, where the tests look for it beside the
    clone (tests/support/chartdata.py), when this host has it: test data of this workplace, not of the repository."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.chartdata import FILES, Z2JH_DIR, chart_data_present

    if chart_data_present():
        dest.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy2(Z2JH_DIR / name, dest / name)


class Container:
    """A throwaway copy of a pristine root, booted with systemd-nspawn. Use as a context manager."""

    def __init__(self, suite: str, name: str = "", *, log=print):
        self.suite, self.log = suite, log
        self.name = name or f"hrb-{suite}-{os.getpid()}"
        self.dir = WORK / self.name
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None

    # --- life cycle -------------------------------------------------------------------------------------
    def create(self) -> "Container":
        root = ensure_root(self.suite, log=self.log)
        self.remove_dir()
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--reflink=auto", str(root), str(self.dir)], check=True, timeout=600)
        self._install_host_settings()
        return self

    def _install_host_settings(self) -> None:
        for f in HOST_FILES:
            if Path(f).exists():
                dst = self.dir / f.lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.is_symlink():
                    dst.unlink()
                shutil.copy2(f, dst)
        if CA_BUNDLE.exists():  # as a local CA of the server's own: it survives update-ca-certificates
            local = self.dir / "usr/local/share/ca-certificates/host-ca-bundle.crt"
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(CA_BUNDLE, local)
            dst = self.dir / CA_BUNDLE.relative_to("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink():
                dst.unlink()
            shutil.copy2(CA_BUNDLE, dst)
        (self.dir / "etc/hostname").write_text(f"{self.name}\n")

    def boot(self, timeout: float = 90) -> float:
        """Boot the copy with systemd as PID 1; returns seconds until `systemctl is-system-running` settles."""
        log = open(WORK / f"{self.name}.console.log", "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", f"--machine={self.name}", "-D", str(self.dir),
             "-b", "--console=passive"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"systemd-nspawn exited with {self.proc.returncode}; see {WORK}/{self.name}.console.log")
            self.leader = self._find_leader()
            if self.leader:
                out = self.run("systemctl is-system-running --wait", check=False, timeout=max(5, deadline - time.monotonic()))
                state = out.stdout.strip()
                if state in ("running", "degraded"):
                    return time.monotonic() - t0
            time.sleep(0.2)
        raise HarnessError(f"{self.name} did not finish booting within {timeout:g} s")

    def _find_leader(self) -> int | None:
        """The container's PID 1 (systemd), a child of our systemd-nspawn."""
        try:
            kids = psutil.Process(self.proc.pid).children()
        except psutil.Error:
            return None
        for kid in kids:
            try:
                if kid.name() == "systemd" or kid.exe().endswith("/systemd"):
                    return kid.pid
            except psutil.Error:
                continue
        return None

    def poweroff(self, timeout: float = 60) -> None:
        """`systemctl poweroff` inside, then wait for systemd-nspawn to exit (killed by PID after *timeout*)."""
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            self.run("systemctl poweroff", check=False, timeout=20)
        except subprocess.TimeoutExpired:
            pass  # a wedged systemd does not answer: systemd-nspawn is killed below
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.leader = None

    def remove_dir(self) -> None:
        if self.dir.exists():
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)], check=False, timeout=600)

    def __enter__(self) -> "Container":
        self.create()
        try:
            self.boot()
        except BaseException:
            self.__exit__(None, None, None)  # a server that did not come up is powered off and removed all the same
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.poweroff()
        finally:
            if not os.environ.get("HRB_KEEP_CONTAINERS"):
                self.remove_dir()

    # --- inside ---------------------------------------------------------------------------------------
    def argv(self, command: str) -> list[str]:
        if not self.leader:
            raise HarnessError(f"{self.name} is not running")
        env = [f"{k}={v}" for k, v in container_env().items()]
        return ["nsenter", "-t", str(self.leader), "-a", "env", "-i", *env, "bash", "-c", command]

    def run(self, command: str, *, check: bool = True, timeout: float = 600, stream: bool = False) -> subprocess.CompletedProcess:
        """Run a shell command as root inside the container; *stream* passes its output through to ours."""
        if stream:
            proc = subprocess.run(self.argv(command), timeout=timeout, stdin=subprocess.DEVNULL)
        else:
            proc = subprocess.run(self.argv(command), timeout=timeout, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise HarnessError(f"in {self.name}: `{command}` exited {proc.returncode}:\n"
                               f"{(proc.stdout or '')[-4000:]}{(proc.stderr or '')[-3000:]}")
        return proc

    def path(self, inside: str) -> Path:
        """Where a path inside the container lies on the host."""
        return self.dir / inside.lstrip("/")

    def clone_checkout(self, dest: str = "/root/hubrunbook") -> str:
        checkout_tree(self.path(dest))
        copy_chart_data(self.path(dest).parent / "shared" / "z2jh")
        return dest


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "run" or "--" not in argv:
        print(__doc__)
        return 2
    suite, command = argv[1], " ".join(shlex.quote(a) for a in argv[argv.index("--") + 1:])
    say = lambda msg: print(f"[pristine {suite}] {msg}", flush=True)
    with Container(suite, f"hrb-ci-{suite}-{os.getpid()}", log=say) as box:
        say(f"booted {box.name} (systemd as PID {box.leader} on the host); cloning the checkout into /root/hubrunbook")
        box.clone_checkout()
        say(f"running `{command}` inside")
        return box.run(f"cd /root/hubrunbook && {command}", check=False, timeout=5000, stream=True).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
