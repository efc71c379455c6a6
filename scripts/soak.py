"""`make soak`: hostile traffic at real daemons for minutes or hours, then: alive? tracebacks?

Starts `extrusion policyd` (policy server, operator API, a file log feed)
and `extrusion milter`, each with a SQLite store in a throw-away directory,
and sends them, one phase after the other:

- policy requests: valid ones from many distinct client addresses (each must
  be answered with an action) mixed with hostile ones (bytes that are not
  UTF-8, lines without "=", over-long lines and values, too many attributes,
  NUL bytes, nonsense addresses and protocol states, half-closed requests);
- log lines: real lines from `extrusion_dev.generate`, half of them with
  bytes flipped, inserted, deleted or cut, a few made far too long, appended
  to the file the feed follows;
- milter sessions in raw milter protocol (tests/milterwire.py): steps in
  order or shuffled and cut short, with hostile bytes in every field and in
  well-formed macro frames. (Not the macro frame with a name and no value:
  that one crashes libmilter itself, see README, "Who may reach the milter socket".)

Then it checks both daemons are still running, that neither logged a
"Traceback", and that they stop cleanly on SIGTERM. Last comes the `kill -9`
phase (scripts/soak_kill.py): `extrusion serve` with its syslog feed, killed
`--kills` times under policy and milter load and restarted at once, must
lose and double no message, outcome or counter. It prints the counts and
exits 1 on any failure. Not part of `make test` or CI.

    .venv/bin/python scripts/soak.py                       # a few minutes
    .venv/bin/python scripts/soak.py --requests 1000000 --log-lines 1000000 \\
        --milter-sessions 100000                           # the full soak
    .venv/bin/python scripts/soak.py --seconds 600         # stop each phase at its share
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extrusion_dev.generate import iter_lines  # noqa: E402
from scripts.soak_kill import kill_phase  # noqa: E402
from tests.helpers import toml_text  # noqa: E402
from tests.milterwire import (  # noqa: E402
    BODY,
    EOH,
    EOM,
    MACRO,
    NR_BODY,
    NR_EOH,
    Closed,
    Session,
    strings,
)

EXTRUSION = Path(sys.executable).parent / "extrusion"
START_SECONDS = 30.0
REPLY_SECONDS = 5.0  # a policy answer; the milter's own steps wait less (below)
MILTER_REPLY_SECONDS = 0.2  # libmilter ignores frames out of order: don't wait long
MILTER_THREADS = 8
BAD = [b"\xff\xfe", b"caf\xe9", b"\xc3", b"\x80\x80", b"ok", b"", b"\x1b[2J", b"\x00",
       b"\r\n", b"%s%n", b"x" * 3000, "zoë".encode()]
WEDGED_SECONDS = 180.0  # the feed read nothing new for this long: it is stuck
MAX_SENDERS = 1000  # small, so that the soak also drives the sender cap


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Daemon:
    def __init__(self, name: str, command: str, config: dict[str, object], tmp: Path) -> None:
        self.name = name
        self.path = tmp / f"{name}.toml"
        self.path.write_text(toml_text(config))
        self.log_path = tmp / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([str(EXTRUSION), command, "--config", str(self.path)],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=tmp)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while text not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


# --- policy requests ------------------------------------------------------------------


def valid_request(rnd: random.Random, i: int) -> bytes:
    client = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
    state = rnd.choice(("RCPT", "RCPT", "RCPT", "END-OF-MESSAGE"))
    return (f"request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n"
            f"client_address={client}\nclient_name=unknown\nhelo_name=pc{i % 997}.example.net\n"
            f"sender=user{i}@example.net\nrecipient=r{rnd.randrange(10**6)}@example.org\n"
            f"recipient_count=1\nqueue_id=\nsasl_username=\n\n").encode()


def hostile_request(rnd: random.Random) -> bytes:
    kind = rnd.randrange(9)
    if kind == 0:
        return bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 300))) + b"\n\n"
    if kind == 1:
        return b"no equals sign here\n\n"
    if kind == 2:
        return b"request=smtpd_access_policy\nsender=" + b"x" * rnd.randint(2100, 70000) + b"\n\n"
    if kind == 3:
        return b"".join(b"a%d=b\n" % n for n in range(rnd.randint(101, 400))) + b"\n"
    if kind == 4:
        return (b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address="
                + rnd.choice(BAD) + b"\nsender=" + rnd.choice(BAD) + b"@x\n\n")
    if kind == 5:
        return b"request=smtpd_access_policy\nprotocol_state=\x00RCPT\x00\n\n"
    if kind == 6:
        return b"request=nonsense\nprotocol_state=MARS\nclient_address=999.1.1.1\n\n"
    if kind == 7:
        return b"\n" * rnd.randint(1, 50)
    return (b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=::ffff:"
            + b"1" * 200 + b"\nsasl_username=" + b"\x1b[31m" * 30 + b"\n\n")


def read_answer(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 65536:
            break
    return data


def policy_phase(port: int, n: int, deadline: float, rnd: random.Random) -> Counter[str]:
    counts: Counter[str] = Counter()
    sock: socket.socket | None = None
    for i in range(n):
        if time.monotonic() > deadline:
            counts["stopped_at_deadline"] += 1
            break
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_SECONDS)
        hostile = rnd.random() < 0.3
        try:
            if hostile:
                counts["hostile"] += 1
                sock.sendall(hostile_request(rnd))
                if rnd.random() < 0.2:
                    sock.shutdown(socket.SHUT_WR)  # half-closed right after the request
                sock.close()  # whatever the daemon said: a fresh connection for the next
                sock = None
                continue
            sock.sendall(valid_request(rnd, i))
            answer = read_answer(sock)
        except OSError:
            counts["connection_errors"] += 1
            if sock is not None:
                sock.close()
            sock = None
            if not hostile:
                counts["valid_unanswered"] += 1
            continue
        counts["valid"] += 1
        if answer.startswith(b"action="):
            counts["valid_answered"] += 1
        else:
            counts["valid_unanswered"] += 1
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return counts


# --- log lines -------------------------------------------------------------------------


def mutate(line: bytes, rnd: random.Random) -> bytes:
    b = bytearray(line)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        pos = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rnd.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif op == 2:
            del b[pos:pos + rnd.randint(1, 20)]
        elif op == 3:
            del b[pos:]
        elif op == 4:
            b[pos:pos] = rnd.choice((b", ", b"=", b"<", b">", b"[", b"]", b": ", b"\x00"))
        else:
            b[pos:pos] = rnd.choice(BAD)
    return bytes(b).replace(b"\n", b" ")


def log_lines(n: int, rnd: random.Random) -> Iterator[bytes]:
    seed = 1
    while True:
        for line in iter_lines(seed=seed, messages=5000, bots=2):
            if n <= 0:
                return
            n -= 1
            raw = line.encode()
            roll = rnd.random()
            if roll < 0.5:
                yield raw
            elif roll < 0.999:
                yield mutate(raw, rnd)
            else:
                yield raw + b" " + b"A" * rnd.randint(10_000, 300_000)  # far too long
        seed += 1


def log_phase(path: Path, n: int, deadline: float, rnd: random.Random) -> Counter[str]:
    counts: Counter[str] = Counter()
    batch: list[bytes] = []
    with path.open("ab") as log:
        for line in log_lines(n, rnd):
            if time.monotonic() > deadline:
                counts["stopped_at_deadline"] += 1
                break
            batch.append(line + b"\n")
            counts["written"] += 1
            if len(batch) >= 2000:
                log.write(b"".join(batch))
                log.flush()
                batch.clear()
        log.write(b"".join(batch))
    return counts


# --- milter sessions -------------------------------------------------------------------


def bad(rnd: random.Random) -> bytes:
    # No NUL inside a milter field: it would split a macro value into a name without
    # one, the frame libmilter itself crashes on.
    return (rnd.choice(BAD)[:1000] + rnd.choice(BAD)[:1000]).replace(b"\0", b"")


def milter_session(port: int, rnd: random.Random) -> str:
    steps: dict[str, Callable[[Session], object]] = {
        "connect": lambda s: s.connect(bad(rnd), rnd.choice((b"192.0.2.9", b"::1", bad(rnd)))),
        "helo": lambda s: s.helo(bad(rnd)),
        # Well-formed macro frames (names with values) holding hostile bytes.
        "macro": lambda s: s.send(MACRO, rnd.choice((b"M", b"R", b"C", b"H"))
                                  + strings(b"i", bad(rnd), b"{auth_authen}", bad(rnd))),
        "mail": lambda s: s.mail(b"<" + bad(rnd) + b"@example.net>", b"SIZE=" + bad(rnd)),
        "rcpt": lambda s: s.rcpt(b"<" + bad(rnd) + b"@example.org>"),
        "header": lambda s: s.header(bad(rnd), bad(rnd)),
        "eoh": lambda s: s.step(EOH, b"", NR_EOH),
        "body": lambda s: s.step(BODY, bad(rnd), NR_BODY),
        "eom": lambda s: s.step(EOM, b""),
        "empty": lambda s: s.sock.sendall(b"\0\0\0\0"),
    }
    names = list(steps)
    order = names if rnd.random() < 0.5 else rnd.sample(names, rnd.randint(1, len(names)))
    try:
        s = Session.open(("127.0.0.1", port), timeout=MILTER_REPLY_SECONDS)
    except (Closed, OSError):
        return "refused"
    try:
        for name in order:
            steps[name](s)
    except (Closed, OSError):
        return "cut"
    finally:
        s.close()
    return "completed"


def milter_phase(port: int, n: int, deadline: float, seed: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    todo = iter(range(n))

    def worker(k: int) -> None:
        rnd = random.Random(seed * 100 + k)
        while time.monotonic() < deadline:
            with lock:
                if next(todo, None) is None:
                    return
            result = milter_session(port, rnd)
            with lock:
                counts[result] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(MILTER_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


# --- checks ----------------------------------------------------------------------------


def metrics(api_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_feed(api_port: int, written: int) -> tuple[dict[str, float], bool]:
    """Until the feed has read every line written (mutations split none); False when it
    stopped moving before that (wedged). Outcomes whose submission the mutations hid
    are looked up in the store one by one, so this takes its time on a busy machine."""
    last, still = -1.0, time.monotonic()
    while True:
        m = metrics(api_port)
        read = m.get('extrusion_maillog_lines_total{result="read"}', 0.0)
        if read >= written:
            return m, True
        if read != last:
            last, still = read, time.monotonic()
        elif time.monotonic() - still > WEDGED_SECONDS:
            return m, False
        time.sleep(1.0)


def milter_once(port: int, rnd: random.Random) -> str:
    result = milter_session(port, rnd)
    if result == "refused":
        time.sleep(0.05)  # serve is down
    return "milter " + result


def run_kills(args: argparse.Namespace, tmp: Path, base: dict[str, object]) -> list[str]:
    """The `kill -9` phase on `extrusion serve` (scripts/soak_kill.py); its failures."""
    port, api, milter_port = free_port(), free_port(), free_port()
    url, spool, sock = f"sqlite:///{tmp / 'serve.db'}", tmp / "spool-s", tmp / "syslog.sock"
    path = tmp / "serve.toml"
    path.write_text(toml_text({
        **base,
        "store": {"url": url, "spool_dir": str(spool)},
        "policyd": {"listen": f"tcp:{port}:interface=127.0.0.1", "hold_queued_mail": False},
        "api": {"listen": f"tcp:{api}:interface=127.0.0.1"},
        "maillog": {"source": "syslog", "syslog_listen": f"unix:{sock}", "poll_seconds": 0.2},
        "milter": {"socket": f"inet:{milter_port}@127.0.0.1"},
    }))
    rnd = random.Random(args.seed)

    def policy_once(r: random.Random) -> str:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=REPLY_SECONDS) as s:
                s.sendall(valid_request(r, r.randrange(1 << 24)))
                answer = read_answer(s)
        except OSError:
            answer = None
        if answer is None or not answer:  # refused while down, or cut by a kill
            time.sleep(0.05)  # serve is down: ask again soon, without spinning
            return "policy refused or cut (down)"
        return "policy answered" if answer.startswith(b"action=") else "policy unanswered"

    t = time.monotonic()
    r = kill_phase(tmp, path, url, spool, sock, port, kills=args.kills,
                   messages=args.kill_messages, seconds=args.kill_seconds,
                   seed=rnd.randrange(1 << 30),
                   load=[policy_once, lambda r: milter_once(milter_port, r)])
    times = sorted(r.restart_seconds)
    print(f"kill -9: {r.kills} kills of serve under load {dict(r.load)}; answering again "
          f"after {times[0] if times else 0:.1f}-{times[-1] if times else 0:.1f} s "
          f"(median {times[len(times) // 2] if times else 0:.1f}); lost {r.lost}, "
          f"doubled {r.doubled} in {time.monotonic() - t:.0f} s", flush=True)
    return r.failures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--log-lines", type=int, default=20_000)
    p.add_argument("--milter-sessions", type=int, default=2_000)
    p.add_argument("--seconds", type=float, default=0.0,
                   help="stop after about this long (split over the three phases); 0 = no limit")
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs of serve (0: no phase)")
    p.add_argument("--kill-messages", type=int, default=3000)
    p.add_argument("--kill-seconds", type=float, default=120.0,
                   help="how long the kill phase's log lines take to send")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the directory with logs and stores")
    args = p.parse_args()
    rnd = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="extrusion-soak-"))
    policy_port, api_port, milter_port = free_port(), free_port(), free_port()
    maillog = tmp / "mail.log"
    maillog.touch()
    base = {"general": {"hostname": "soak.example", "log_level": "info"},
            "scoring": {"max_senders": MAX_SENDERS}}
    policyd = Daemon("policyd", "policyd", {
        **base,
        "store": {"url": f"sqlite:///{tmp / 'policyd.db'}", "spool_dir": str(tmp / "spool-p")},
        "policyd": {"listen": f"tcp:{policy_port}:interface=127.0.0.1",
                    "hold_queued_mail": False},
        "api": {"listen": f"tcp:{api_port}:interface=127.0.0.1"},
        "maillog": {"source": "file", "path": str(maillog), "start_at": "beginning",
                    "poll_seconds": 0.2},
        "milter": {"enabled": False},
    }, tmp)
    milter = Daemon("milter", "milter", {
        **base,
        "store": {"url": f"sqlite:///{tmp / 'milter.db'}", "spool_dir": str(tmp / "spool-m")},
        "milter": {"socket": f"inet:{milter_port}@127.0.0.1"},
    }, tmp)
    failures: list[str] = []
    started = time.monotonic()
    share = args.seconds / 3 if args.seconds else float("inf")
    try:
        policyd.wait_for("policy server listening")
        milter.wait_for("milter listening on")
        t = time.monotonic()
        policy = policy_phase(policy_port, args.requests, t + share, rnd)
        print(f"policy requests: {dict(policy)} in {time.monotonic() - t:.0f} s", flush=True)
        t = time.monotonic()
        lines = log_phase(maillog, args.log_lines, t + share, rnd)
        m, moving = wait_feed(api_port, lines["written"])
        feed = {k.split('"')[1]: int(v) for k, v in m.items()
                if k.startswith("extrusion_maillog_lines_total")}
        print(f"log lines: {dict(lines)}, feed counted {feed} in {time.monotonic() - t:.0f} s",
              flush=True)
        t = time.monotonic()
        sessions = milter_phase(milter_port, args.milter_sessions, t + share, args.seed)
        print(f"milter sessions: {dict(sessions)} in {time.monotonic() - t:.0f} s", flush=True)
        m = metrics(api_port)
        print("policyd senders in memory: {:.0f}, forgotten by the cap: {:.0f}".format(
            m.get("extrusion_engine_senders_in_memory", -1),
            m.get("extrusion_engine_senders_evicted_total", -1)))
        if policy["valid_unanswered"]:
            failures.append(f"{policy['valid_unanswered']} valid policy requests unanswered")
        if not moving:
            failures.append(f"the feed stopped at {feed.get('read', 0)} of "
                            f"{lines['written']} lines")
    finally:
        for d in (policyd, milter):
            alive = d.proc.poll() is None
            if not alive:
                failures.append(f"{d.name} died (exit {d.proc.returncode})")
            code = d.stop()
            if alive and code != 0:
                failures.append(f"{d.name} exited {code} on SIGTERM")
            log = d.log()
            tracebacks = log.count("Traceback")
            print(f"{d.name}: {'alive' if alive else 'DEAD'}, exit {code} on SIGTERM, "
                  f"{tracebacks} tracebacks, {log.count(os.linesep)} log lines")
            if tracebacks:
                failures.append(f"{d.name} logged {tracebacks} tracebacks (see {d.log_path})")
    if args.kills and not failures:
        failures += run_kills(args, tmp, base)
    print(f"total {time.monotonic() - started:.0f} s")
    for f in failures:
        print("FAIL:", f)
    if args.keep or failures:
        print(f"logs and stores kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
