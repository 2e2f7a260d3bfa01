"""The sandbox against hostile programs: real bwrap, real subprocesses.

Each attack runs beside a benign program in the same batch: the attack must never score
passed, the benign one must (the harness keeps working), host canaries must stay intact
and no process may be left over. Attacks are written so that they would *pass* if they
succeeded (e.g. `assert <secret was read>`), so a broken sandbox fails these tests.
"""
import os
import secrets
import shutil
import socket
import threading
import time

import psutil
import pytest

from mtp import UserError
from mtp.evals import sandbox
from mtp.evals.sandbox import Limits, run_programs

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (apt-get install bubblewrap)")

FAST = Limits(timeout_s=2.0, memory_mb=256, tmpfs_mb=8, file_mb=4)
BENIGN = "def f(x):\n    return x + 1\nassert f(1) == 2\n"


def sandbox_processes():
    """Processes still alive that a run left behind: our children, or any process of this harness's sandbox uids."""
    uids = range(sandbox.slot_uid(0), sandbox.slot_uid(sandbox.MAX_WORKERS - 1) + 1)
    left = list(psutil.Process().children(recursive=True))
    for p in psutil.process_iter(["uids"]):
        try:
            if p.info["uids"] and p.info["uids"].real in uids:
                left.append(p)
        except psutil.Error:
            continue
    return [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    assert sandbox_processes() == [], "a sandboxed process outlived its run"


def run_with_benign(attack, limits=FAST):
    """Run the attack and a benign program in one batch; the benign one must pass."""
    attack_result, benign = run_programs([attack, BENIGN], limits=limits, workers=2)
    assert benign["status"] == "passed", benign
    return attack_result


def test_verdicts_of_plain_programs():
    results = run_programs([BENIGN, "assert 1 == 2", "x = (", "raise ValueError('boom')"], limits=FAST, workers=2)
    assert [r["status"] for r in results] == ["passed", "failed", "failed", "failed"]
    assert results[1]["result"] == "failed: AssertionError"
    assert "SyntaxError" in results[2]["result"] and "ValueError: boom" in results[3]["result"]


def test_runs_unprivileged_without_capabilities():
    check = ("import os\n"
             "assert os.getuid() != 0 and os.geteuid() != 0 and os.getgid() != 0 and os.getgroups() in ([], [os.getgid()])\n"
             "status = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
             "assert status['CapEff'] == status['CapPrm'] == status['CapAmb'] == '0000000000000000', status\n"
             "assert status['NoNewPrivs'] == '1'\n"
             "assert not os.environ.get('HOME', '').startswith('/root')\n")
    assert run_with_benign(check)["status"] == "passed"


@pytest.mark.parametrize("attack", [
    "while True:\n    pass\n",
    "import time\ntime.sleep(1000)\n",
    "import select\nselect.select([], [], [])\n",
    "import signal\nsignal.pause()\n",
    "import os\nr, w = os.pipe()\nos.read(r, 1)\n",
])
def test_loops_and_blocking_calls_time_out(attack):
    t0 = time.monotonic()
    result = run_with_benign(attack)
    assert result["status"] == "timeout"
    assert time.monotonic() - t0 < FAST.timeout_s + 3


def test_fork_bomb_is_contained_and_does_not_starve_a_neighbour():
    bomb = ("import os\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        pass\n")
    # a neighbour that needs a process of its own while the bomb runs in the other worker
    neighbour = ("import os, time\ntime.sleep(0.3)\npid = os.fork()\n"
                 "if pid == 0:\n    os._exit(7)\n"
                 "assert os.waitpid(pid, 0)[1] >> 8 == 7\n")
    counted = ("import os\nn = 0\n"
               "try:\n"
               "    while n < 1000:\n"
               "        if os.fork() == 0:\n"
               "            import time; time.sleep(60)\n"
               "        n += 1\n"
               "except OSError:\n    pass\n"
               "assert n >= 1000, n\n")  # passes only if the process limit did not hold
    results = run_programs([bomb, neighbour, counted, BENIGN], limits=FAST, workers=2)
    assert results[0]["status"] in ("timeout", "failed")
    assert results[1]["status"] == "passed", results[1]
    assert results[2]["status"] == "failed" and "AssertionError" in results[2]["result"]
    assert results[3]["status"] == "passed"


@pytest.mark.parametrize("attack", [
    "x = bytearray(8 << 30)\nassert len(x)\n",
    "keep = []\nwhile True:\n    keep.append(bytearray(1 << 24))\n",
    "x = 'a' * (4 << 30)\nassert x\n",
])
def test_memory_bomb_fails(attack):
    result = run_with_benign(attack)
    assert result["status"] == "failed" and "MemoryError" in result["result"], result  # RLIMIT_AS, not the clock


@pytest.mark.parametrize("attack", [
    # one big file: stopped by RLIMIT_FSIZE
    "f = open('big', 'wb')\nn = 0\ntry:\n    while n < (64 << 20):\n        n += f.write(b'x' * (1 << 20))\n"
    "except OSError:\n    pass\nassert n >= (64 << 20), n\n",
    # many files: stopped by the tmpfs size
    "n = 0\ntry:\n    for i in range(1000):\n        with open(f'/tmp/f{i}', 'wb') as f:\n"
    "            n += f.write(b'x' * (1 << 20))\n"
    "except OSError:\n    pass\nassert n >= (64 << 20), n\n",
])
def test_disk_fill_is_capped(attack):
    before = shutil.disk_usage("/tmp").free
    result = run_with_benign(attack)
    assert result["status"] == "failed" and "AssertionError" in result["result"], result
    assert shutil.disk_usage("/tmp").free > before - (32 << 20)


@pytest.fixture
def canary(tmp_path):
    """A host folder with a secret file; (folder, file, secret)."""
    folder = tmp_path / "canary"
    folder.mkdir()
    secret = secrets.token_hex(16)
    (folder / "secret.txt").write_text(secret)
    return folder, folder / "secret.txt", secret


def test_rm_rf_and_writes_outside_leave_the_host_untouched(canary):
    folder, file, secret = canary
    marker = f"mtp-sandbox-test-{secrets.token_hex(8)}"
    targets = [str(folder / "new.txt"), f"/tmp/{marker}", f"/var/tmp/{marker}", f"/dev/shm/{marker}",
               f"/root/{marker}", f"/{marker}", f"/usr/{marker}", f"{os.getcwd()}/{marker}"]
    rm = (f"import os, shutil\nassert os.path.exists({str(file)!r})\n"
          f"shutil.rmtree({str(folder)!r})\n")
    rm_shell = f"import os\nos.system('rm -rf {folder} 2>/dev/null')\nassert False\n"
    write = ("import os\nwritten = []\n"
             f"for path in {targets!r}:\n"
             "    try:\n"
             "        with open(path, 'w') as f:\n"
             "            f.write('pwned')\n"
             "        written.append(path)\n"
             "    except OSError:\n"
             "        pass\n"
             "assert len(written) == len(set(written)) and False, written\n")
    results = run_programs([rm, rm_shell, write, BENIGN], limits=FAST, workers=2)
    assert [r["status"] for r in results] == ["failed", "failed", "failed", "passed"]
    assert file.read_text() == secret
    assert sorted(p.name for p in folder.iterdir()) == ["secret.txt"]
    for path in targets[1:]:
        assert not os.path.exists(path), f"the sandbox wrote {path} on the host"


def test_secrets_of_the_host_are_out_of_reach(canary, monkeypatch):
    folder, file, secret = canary
    monkeypatch.setenv("MTP_TEST_SECRET", secret)
    attacks = [
        "import os\nassert os.environ.get('MTP_TEST_SECRET')\n",
        f"assert open({str(file)!r}).read()\n",
        f"import os\nassert any({secret!r} in open(f'/proc/{{p}}/environ', errors='replace').read()\n"
        "           for p in os.listdir('/proc') if p.isdigit())\n",
        "assert open('/etc/shadow').read()\n",
        "assert open('/etc/passwd').read()\n",
        "import os\nassert os.listdir('/work') or os.listdir('/home')\n",
        "import os\nassert os.listdir('/root/.ssh') or os.listdir('/root')\n",
    ]
    results = run_programs(attacks + [BENIGN], limits=FAST, workers=2)
    for attack, r in zip(attacks, results):
        assert r["status"] == "failed", (attack, r)
        assert secret not in r["stderr"]
    assert results[-1]["status"] == "passed"


def test_no_network_to_host_listeners():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    abstract = socket.socket(socket.AF_UNIX)
    name = f"\0mtp-sandbox-test-{secrets.token_hex(8)}"
    abstract.bind(name)
    abstract.listen(8)
    abstract.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            for s in (server, abstract):
                try:
                    accepted.append(s.accept())
                except (TimeoutError, OSError):
                    pass

    thread = threading.Thread(target=accept)
    thread.start()
    port = server.getsockname()[1]
    try:
        attacks = [
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'x')\n",
            f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({name!r})\ns.sendall(b'x')\n",
            "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\n",
            "import socket\nsocket.getaddrinfo('pypi.org', 443)\n",
        ]
        results = run_programs(attacks + [BENIGN], limits=FAST, workers=2)
    finally:
        stop.set()
        thread.join()
        server.close()
        abstract.close()
    assert [r["status"] for r in results] == ["failed"] * len(attacks) + ["passed"]
    assert accepted == []


def test_signalling_parents_and_everyone_does_not_hurt_the_harness():
    attacks = [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(0.2)\nassert False\n",
        "import os, signal\nos.kill(1, signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\n",
        f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)\nassert False\n",
        f"import os, signal\nos.killpg({os.getpgid(0)}, signal.SIGTERM)\nassert False\n",
    ]
    results = run_programs(attacks + [BENIGN], limits=FAST, workers=2)
    assert all(r["status"] != "passed" for r in results[:-1]), results
    assert results[-1]["status"] == "passed"


def test_orphans_die_with_the_run(tmp_path):
    late = tmp_path / "late.txt"
    orphan = ("import os, sys, time\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        time.sleep(1.0)\n"
              f"        open({str(late)!r}, 'w').write('outlived')\n"
              "        for fd in range(3, 32):\n"
              "            try:\n"
              "                os.write(fd, b'R' + b'0' * 32)\n"
              "            except OSError:\n"
              "                pass\n"
              "        os.execv('/bin/sleep', ['sleep', '600'])\n"
              "    os._exit(0)\n"
              "time.sleep(0.1)\n"
              "os._exit(0)\n")
    t0 = time.monotonic()
    result = run_with_benign(orphan)
    assert result["status"] == "failed"
    assert time.monotonic() - t0 < FAST.timeout_s  # the run ended with the main process
    assert sandbox_processes() == []
    time.sleep(1.5)  # past the orphan's wake-up time
    assert sandbox_processes() == []
    assert not late.exists()


def test_forged_passes_do_not_count():
    attacks = [
        "import os\nos._exit(0)\nassert False\n",
        "import sys\nsys.exit(0)\nassert False\n",
        "raise SystemExit(0)\n",
        "import atexit, os\natexit.register(os._exit, 0)\nassert False\n",
        "print('passed')\nprint('{\"passed\": true, \"result\": \"passed\"}')\nimport sys\n"
        "print('passed', file=sys.stderr)\nassert False\n",
        # patching builtins and the modules the harness uses
        "import builtins, os, sys\n"
        "builtins.AssertionError = type('AssertionError', (Exception,), {})\n"
        "sys.excepthook = lambda *a: None\nsys.exit = lambda *a: None\n"
        "os._exit = lambda *a: None\nos.read = lambda fd, n: b'x' * n\nos.write = lambda fd, b: len(b)\n"
        "assert False\n",
        # searching the process for the token: frames, every object, argv, /proc, every fd
        "import gc, os, sys, re\n"
        "found = set()\n"
        "f = sys._getframe()\n"
        "while f:\n"
        "    found |= {v for v in list(f.f_locals.values()) + list(f.f_globals.values()) if isinstance(v, (str, bytes))}\n"
        "    f = f.f_back\n"
        "found |= {o for o in gc.get_objects() if isinstance(o, (str, bytes))}\n"
        "found |= set(sys.argv) | set(os.environ.values())\n"
        "found |= set(open('/proc/self/cmdline', 'rb').read().split(b'\\0'))\n"
        "cands = [c if isinstance(c, bytes) else c.encode('utf-8', 'replace') for c in found]\n"
        "cands = [c for c in cands if re.fullmatch(rb'[0-9a-f]{32}', c)]\n"
        "for fd in range(3, 32):\n"
        "    for c in cands[:200]:\n"
        "        try:\n"
        "            os.write(fd, b'SR' + c)\n"
        "        except OSError:\n"
        "            pass\n"
        "os._exit(0)\n",
    ]
    results = run_programs(attacks + [BENIGN], limits=FAST, workers=2)
    for attack, r in zip(attacks, results):
        assert r["status"] != "passed", attack
    assert results[-1]["status"] == "passed"


def test_documented_limit_protocol_aware_code_can_forge():
    """The module docstring says code that speaks the verdict protocol itself can forge a pass. Keep it honest:
    if this starts failing, the protocol got stronger and the docstring must be updated."""
    forge = ("import os, sys\nctl_in, ctl_out = int(sys.argv[1]), int(sys.argv[2])\n"
             "os.write(ctl_out, b'R')\nos.write(ctl_out, os.read(ctl_in, 64))\nos._exit(0)\nassert False\n")
    assert run_with_benign(forge)["status"] == "passed"


def test_output_flood_is_bounded():
    flood = ("import os\nblock = b'x' * 65536\n"
             "while True:\n    os.write(1, block)\n    os.write(2, block)\n")
    t0 = time.monotonic()
    result = run_with_benign(flood)
    assert result["status"] == "timeout"
    assert len(result["stderr"]) <= sandbox.STDERR_TAIL
    assert time.monotonic() - t0 < FAST.timeout_s + 3


def test_many_programs_in_parallel_keep_their_order():
    programs = [f"assert {i} % 3 != 0\n" for i in range(24)]
    results = run_programs(programs, limits=FAST, workers=3)
    assert [r["status"] == "passed" for r in results] == [i % 3 != 0 for i in range(24)]


def test_refuses_without_bwrap_unless_unsafe(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap here
    with pytest.raises(UserError, match="apt-get install bubblewrap"):
        run_programs([BENIGN])
    results = run_programs([BENIGN, "import os\nos._exit(0)\n"], limits=FAST, unsafe_no_sandbox=True)
    assert [r["status"] for r in results] == ["passed", "failed"]
