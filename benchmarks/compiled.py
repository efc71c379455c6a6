"""The hot strictly typed modules compiled with mypyc beside the same code interpreted.

    .venv/bin/python benchmarks/compiled.py [--messages 35000] [--repeat 3]
                                            [--requests 20000] [--connections 16]
                                            [--no-replay] [--keep DIR]

Compiles this checkout in a temporary directory (or `--keep DIR`) as `pip install .`
builds it: `scripts/compiled-tree`, the modules of mypyc-modules.txt compiled with mypyc
in place, timing the build. Then, interleaved and best of
`--repeat`, each tree first on PYTHONPATH of a fresh process:

- parse only: `LogFeed.line()` over a generated log (about 8.5 lines per message,
  events discarded), by CPU time; also the bare read loop, so the ratio of the
  compiled part alone can be given;
- the policy request parser: `RequestParser.feed()` over `benchmarks/policyd.py`'s
  request stream, one request per call as the daemon receives them, by CPU time;
- `benchmarks/policyd.py --connections N` without postfwd: the whole `extrusion
  policyd` daemon under that stream (requests/s and p99, wall clock);
- the whole `extrusion replay --json LOG` (parser process and engine, a throw-away
  SQLite store), CPU of both processes and wall clock.

Prints each figure and the ratio compiled/interpreted. Both trees must give the same
event and request counts, the same policy answers and byte-identical replay state
changes, and the compiled tree's modules must really be extensions.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmarks.trees, and extrusion_dev where a log is made
BENCH = REPO / "benchmarks"

from benchmarks.trees import compiled as compiled_tree  # noqa: E402

# What `pip install .` compiles (setup.py reads the same list).
MODULES_LIST = REPO / "mypyc-modules.txt"

# The child processes: each prints one line, "<figure> <count> <module file>".
PARSE_CHILD = """
import sys, time
from extrusion.maillog import feed as feedmod
class Discard:
    events = 0
    def sender_key(self, *, client_addr, sasl_user=""):
        return f"sasl:{sasl_user}" if sasl_user else f"ip:{client_addr}"
    def submission(self, event): self.events += 1
    def outcome(self, event): self.events += 1
    def refused(self, event): self.events += 1
    def evidence(self, event): self.events += 1
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    lines = f.readlines()
t0 = time.process_time()
for line in lines:
    pass
bare = time.process_time() - t0
sink = Discard()
feed = feedmod.LogFeed(sink, reference_time=float(sys.argv[2]))
t0 = time.process_time()
for line in lines:
    feed.line(line)
feed.finish()
print(time.process_time() - t0, bare, sink.events, feedmod.__file__)
"""

REQUEST_CHILD = """
import sys, time
sys.path.append(sys.argv[1])
from policyd import stream
from extrusion.policyd import request as reqmod
reqs = stream(int(sys.argv[2]))
parser = reqmod.RequestParser(2048, 100)  # [policyd]'s defaults
done = 0
t0 = time.process_time()
for data in reqs:
    done += len(parser.feed(data))
print(time.process_time() - t0, done, reqmod.__file__)
"""


def build(tree: Path) -> float:
    """The checkout compiled in `tree` as `pip install .` builds it (a whole copy, so its
    tests can run in it); the build's wall seconds."""
    start = time.perf_counter()
    compiled_tree(tree)
    return time.perf_counter() - start


def child(src: Path, code: str, *args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=src,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{src}: child failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.split()


def check_origin(name: str, module_file: str, compiled: bool) -> None:
    """A figure of the wrong tree would make the ratio a lie."""
    if module_file.endswith(".so") != compiled:
        raise SystemExit(f"{name}: ran {module_file}, expected the "
                         f"{'compiled' if compiled else 'interpreted'} module")


def policyd(src: Path, requests: int, connections: int) -> tuple[float, float, str]:
    """requests/s, p99 ms and the answer counts of `extrusion policyd` run from `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([sys.executable, str(BENCH / "policyd.py"), "--postfwd", "",
                           "--requests", str(requests), "--connections", str(connections)],
                          env=env, capture_output=True, text=True, check=False)
    row = re.search(r"^extrusion\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or row is None:
        raise SystemExit(f"{src}: policyd.py failed:\n{proc.stdout[-2000:]}"
                         f"{proc.stderr[-2000:]}")
    return float(row[1]), float(row[3]), row[4]


def replay(src: Path, log: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds (both processes) of `extrusion replay --json LOG` run from
    `src` with an empty config, and a digest of its state changes."""
    config = log.with_name("empty.toml")
    config.write_text("")
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "extrusion.cli", "replay", "--json", "--config",
           str(config), str(log)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=src, stdout=out, stderr=err)
        # wait4(): this child's usage with its reaped children's (the parsing process).
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{src}: replay failed:\n{err.read()[-3000:].decode()}")
        digest = hashlib.sha256(out.read()).hexdigest()[:16]
    return wall, usage.ru_utime + usage.ru_stime, digest


def generate_log(path: Path, messages: int) -> int:
    from extrusion_dev.generate import generate

    with open(path, "w", encoding="utf-8") as f:
        truth = generate(f, seed=17, messages=messages, senders=300, bots=2,
                         duration=86400.0)
    return int(truth.lines)


def measure(name: str, src: Path, log: Path, args: argparse.Namespace
            ) -> tuple[dict[str, float], dict[str, str]]:
    """One round of every measurement of one tree: figures, and the counts that must
    agree between the trees."""
    compiled = name == "compiled"
    fig: dict[str, float] = {}
    cpu, bare, events, origin = child(src, PARSE_CHILD, str(log), str(log.stat().st_mtime))
    check_origin(name, origin, compiled)
    fig["parse"], fig["bare"] = float(cpu), float(bare)
    cpu, done, origin = child(src, REQUEST_CHILD, str(BENCH), str(args.requests))
    # The request parser stays Python unless the list names it.
    check_origin(name, origin, compiled and "extrusion/policyd/request.py"
                 in MODULES_LIST.read_text(encoding="utf-8").split())
    fig["requests"] = float(cpu)
    same = {"events": events, "requests": done}
    if args.connections:
        rate, p99, same["answers"] = policyd(src, args.requests, args.connections)
        fig["rate"], fig["p99"] = -rate, p99  # negated: the best is the lowest
    if args.replay:
        fig["replay wall"], fig["replay cpu"], same["state changes"] = replay(src, log)
    return fig, same


def run(trees: dict[str, Path], log: Path, args: argparse.Namespace
        ) -> dict[str, dict[str, float]]:
    """Every measurement of each tree, interleaved; the best (lowest) of each."""
    best: dict[str, dict[str, float]] = {name: {} for name in trees}
    seen: dict[str, set[str]] = {}
    for _ in range(args.repeat):
        for name, src in trees.items():
            fig, same = measure(name, src, log, args)
            for key, value in fig.items():
                best[name][key] = min(best[name].get(key, value), value)
            for key, text in same.items():
                seen.setdefault(key, set()).add(text)
    for what, values in seen.items():
        if len(values) > 1:
            raise SystemExit(f"the trees disagree on {what}: {sorted(values)}")
    return best


def report(best: dict[str, dict[str, float]], lines: int, requests: int) -> None:
    pure, comp = best["interpreted"], best["compiled"]
    rows = [("parse only, lines/s (CPU)", lines / pure["parse"], lines / comp["parse"])]
    # The read loop is the benchmark's own; without it, what the compiled modules do.
    rows.append(("  compiled part alone, lines/s", lines / (pure["parse"] - pure["bare"]),
                 lines / (comp["parse"] - comp["bare"])))
    rows.append(("request parser, requests/s (CPU)", requests / pure["requests"],
                 requests / comp["requests"]))
    if "rate" in pure:
        rows.append(("policyd, requests/s (wall)", -pure["rate"], -comp["rate"]))
        rows.append(("policyd, p99 ms (lower is better)", pure["p99"], comp["p99"]))
    if "replay cpu" in pure:
        rows.append(("replay, lines/s (CPU)", lines / pure["replay cpu"],
                     lines / comp["replay cpu"]))
        rows.append(("replay, lines/s (wall)", lines / pure["replay wall"],
                     lines / comp["replay wall"]))
    print(f"{'figure':<36}{'interpreted':>14}{'compiled':>14}{'ratio':>8}")
    for label, a, b in rows:
        print(f"{label:<36}{a:>14,.2f}{b:>14,.2f}{b / a:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=35_000, help="about 8.5 log lines each")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--connections", type=int, default=16, help="0: skip the daemon run")
    ap.add_argument("--no-replay", dest="replay", action="store_false",
                    help="skip the whole `extrusion replay`")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the compiled tree here and keep it (to run tests in it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="extrusion-mypyc-") as tmp:
        compiled = args.keep or Path(tmp) / "compiled"
        took = build(compiled)
        print(f"mypyc build of the modules in {MODULES_LIST.name}: {took:.1f} s wall")
        log = Path(tmp) / "mail.log"
        lines = generate_log(log, args.messages)
        print(f"log: {lines:,} lines; best of {args.repeat}, interleaved; "
              f"load average {os.getloadavg()[0]:.1f} at the start")
        best = run({"interpreted": REPO, "compiled": compiled}, log, args)
        report(best, lines, args.requests)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
