"""Log lines per second: extrusion's parser and `extrusion replay` beside pflogsumm, same log.

    .venv/bin/python benchmarks/replay.py [--messages 60000] [--days 0.33] [--repeat 3]
                                          [--log PATH] [--compiled DIR]
    .venv/bin/python benchmarks/replay.py --log PATH --parse-base REV [--repeat 3]
    .venv/bin/python benchmarks/replay.py --log PATH --reader-base REV [--repeat 5]

Generates a Postfix smarthost log with `extrusion_dev.generate` (normal
customers, a newsletter, a bounce relay, relay probes, two spam bots; about
8.5 lines per message), then times, interleaved and best of `--repeat`:

- parse only: `LogFeed.line()` for every line, joined into events that go nowhere;
- full replay: the `extrusion replay LOG` command (process start, engine, a
  throw-away SQLite store, summary), output discarded;
- with `--compiled DIR`: the same command from this checkout compiled with mypyc in DIR
  (`scripts/compiled-tree DIR`, as `pip install .` builds it); its output must be the
  pure replay's, byte for byte;
- pflogsumm LOG (Debian package pflogsumm), output discarded.

Prints lines/s by wall time and by CPU time, peak RSS (of the largest process
of each command, as wait4() reports it) (the replay runs its parser in a
second process, so it uses more CPU than wall time on two cores), the ratios
to pflogsumm, and checks that the replay found exactly the generated bots.

With `--parse-base REV` only the parse is timed: REV's code (`git archive`)
and this tree's, each in a fresh process, interleaved, and the CPU ratio
printed (issue 17: the log feed's share of the daemons' CPU). Each tree
reads as its replay's reader does (`LogFeed.lines()` in batches, where the
tree has it); this tree also one line at a time (`line()`, the live feed's way).

With `--reader-base REV` only the replay's reader process is timed: `python -m
extrusion.replay.reader LOG` of REV's tree and of this one, each given the
settings `extrusion replay` would send it (default config) on standard input,
its event stream written to /dev/null; the CPU seconds of that child (wait4),
alternated, best of `--repeat`, and the ratio to REV printed (issue 17: the
reader is one of replay's two processes, each of which must stay within half
of pflogsumm's time for the wall clock target).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# `--parse-base`'s child runs: another tree's `extrusion` package goes first.
TREE_ENV = "BENCH_EXTRUSION_TREE"
if os.environ.get(TREE_ENV):
    sys.path.insert(0, os.environ[TREE_ENV])
BATCH_LINES = 4096  # the replay's reader's batch (extrusion/replay/worker.py)
#: Issue 17's replay targets: at least this many times pflogsumm's lines per second by
#: wall clock, no more CPU seconds than pflogsumm, a peak RSS below pflogsumm's.
TARGET_LINES_PER_SECOND = 2.0
#: ... on a two-day log of at least this many lines: on a smaller one the replay's fixed
#: start-up (interpreter, imports, the reader process) and memory weigh more.
TARGET_LOG_LINES = 1_500_000

from benchmarks.sinks import CountingEngine  # noqa: E402
from extrusion.maillog.feed import LogFeed  # noqa: E402
from extrusion_dev.generate import generate  # noqa: E402


@dataclass
class Timing:
    wall: float
    cpu: float
    rss_mb: float = 0.0


def parse_only(log: Path, per_line: bool = False) -> tuple[Timing, int, int]:
    """`LogFeed.lines()` in batches as the replay's reader calls it (a tree without it, and
    `per_line`: `line()` for each line, as the live feed calls it)."""
    sink = CountingEngine()
    feed = LogFeed(sink, reference_time=log.stat().st_mtime)
    batch = None if per_line else getattr(feed, "lines", None)
    start, cpu = time.perf_counter(), time.process_time()
    with open(log, encoding="utf-8", errors="replace") as f:
        if batch is None:
            for line in f:
                feed.line(line)
        else:
            while lines := list(islice(f, BATCH_LINES)):
                batch(lines)
    feed.finish()
    took = Timing(time.perf_counter() - start, time.process_time() - cpu)
    return took, feed.stats.lines, sink.events + sink.evidence_events


def parse_in_child(log: Path, tree: Path | None, per_line: bool = False) -> Timing:
    """`parse_only` in a fresh process, with `tree`'s package (None: this checkout's)."""
    env = {**os.environ, TREE_ENV: str(tree)} if tree else {
        k: v for k, v in os.environ.items() if k != TREE_ENV}
    out = subprocess.run([sys.executable, __file__, "--parse-run", str(log),
                          *(["--per-line"] if per_line else [])], env=env,
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    if tree and not data["code"].startswith(str(tree)):
        raise SystemExit(f"{tree}: the child read the log with {data['code']}")
    return Timing(data["wall"], data["cpu"])


def compare_parse(log: Path, rev: str, repeat: int, tmp: Path) -> None:
    """Parse-only CPU of `rev`'s code beside this checkout's, interleaved, best of `repeat`."""
    from benchmarks.trees import export

    base = export(rev, tmp / "parse-base")
    # The base as its replay reads (by lines() where it has one), this tree one line at a
    # time (the live feed's way) and by batches (the replay's reader's).
    how = {f"parse only at {rev}": (base, False), "parse only, this tree, line()": (None, True),
           "parse only, this tree, lines()": (None, False)}
    runs: dict[str, list[Timing]] = {name: [] for name in how}
    for _ in range(repeat):
        for name, (tree, per_line) in how.items():
            runs[name].append(parse_in_child(log, tree, per_line))
    with open(log, "rb") as f:
        lines = sum(1 for _ in f)
    cpu = {name: min(t.cpu for t in ts) for name, ts in runs.items()}
    first = next(iter(cpu.values()))
    print(f"lines: {lines:,}   best of {repeat}   load average: {os.getloadavg()[0]:.1f}\n")
    print("| run | CPU s | µs per line | lines per CPU s | CPU vs base |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, c in cpu.items():
        print(f"| {name} | {c:.2f} | {c / lines * 1e6:.2f} | {lines / c:,.0f} | {c / first:.2f} |")


def reader_settings(log: Path) -> bytes:
    """The pickled `WorkerSettings` `extrusion replay LOG` sends its reader (no config
    file: the defaults)."""
    import pickle

    from extrusion.config.load import from_dict
    from extrusion.maillog.feed import join_settings
    from extrusion.replay.logfiles import reference_time
    from extrusion.replay.parallel import FLUSH_EVERY_LINES
    from extrusion.replay.worker import WorkerSettings

    cfg = from_dict({})
    settings = WorkerSettings(
        fmt=cfg.maillog.format, join=join_settings(cfg), timezone=cfg.maillog.timezone,
        reference_time=reference_time([str(log)]), customers=cfg.customers,
        flush_every_lines=FLUSH_EVERY_LINES)
    return pickle.dumps(settings)


def compare_reader(log: Path, rev: str, repeat: int, tmp: Path) -> None:
    """The reader process's CPU seconds, `rev`'s tree beside this one, alternated."""
    from benchmarks.trees import export

    base = export(rev, tmp / "reader-base")
    settings = reader_settings(log)
    trees = {f"reader at {rev}": base, "reader, this tree": REPO}
    runs: dict[str, list[Timing]] = {name: [] for name in trees}
    for _ in range(repeat):
        for name, tree in trees.items():
            # PYTHONPATH and the cwd (`-m` looks there first) select the tree.
            entry = ("extrusion.replay.reader" if (tree / "extrusion/replay/reader.py").exists()
                     else "extrusion.replay.worker")  # before the reader had a module of its own
            cmd = ["env", f"PYTHONPATH={tree}", sys.executable, "-m", entry, str(log)]
            runs[name].append(timed(cmd, settings, cwd=tree, keep=False)[0])
    print(f"log: {log.name}   best of {repeat}   load average: {os.getloadavg()[0]:.1f}\n")
    print("| reader process | CPU s best | CPU s median | spread | wall s best "
          "| peak RSS MB | CPU vs base |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    first = min(t.cpu for t in next(iter(runs.values())))
    for name, ts in runs.items():
        cpus = sorted(t.cpu for t in ts)
        print(f"| {name} | {cpus[0]:.2f} | {statistics.median(cpus):.2f} | "
              f"{cpus[-1] - cpus[0]:.2f} | {min(t.wall for t in ts):.2f} | "
              f"{max(t.rss_mb for t in ts):.0f} | {cpus[0] / first:.2f} |")


def timed(cmd: list[str], stdin: bytes | None = None, cwd: Path | None = None,
          keep: bool = True) -> tuple[Timing, str]:
    """Wall time, CPU time (all its processes) and peak RSS of a command, given `stdin`
    (None: this process's); its output is returned, or thrown away unless `keep`."""
    with (tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err,
          tempfile.TemporaryFile() as given):
        if stdin is not None:
            given.write(stdin)
            given.seek(0)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=given if stdin is not None else None,
                                stdout=out if keep else subprocess.DEVNULL, stderr=err, cwd=cwd)
        # wait4() gives this child's own usage, its reaped children's included; its
        # ru_maxrss is the peak of the largest of them (KiB on Linux).
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        took = Timing(time.perf_counter() - start, usage.ru_utime + usage.ru_stime,
                      usage.ru_maxrss / 1024)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): "
                             f"{err.read()[-2000:].decode(errors='replace')}")
        return took, out.read().decode()


def tree_cmd(tree: Path) -> list[str]:
    """`extrusion` run from another tree: PYTHONPATH and the cwd (inherited by the replay's
    log reader) select it."""
    return ["env", f"PYTHONPATH={tree}", "sh", "-c",
            f'cd "{tree}" && exec "{sys.executable}" -m extrusion.cli "$@"', "-"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--days", type=float, default=8 / 24, help="log time the messages span")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-parse", action="store_true", help="skip the in-process parse run")
    ap.add_argument("--base", default=None,
                    help="also time `extrusion replay` of this git revision, interleaved")
    ap.add_argument("--log", type=Path, default=None, help="use this log instead of generating")
    ap.add_argument("--compiled", type=Path, default=None, metavar="DIR",
                    help="also time `extrusion replay` of this checkout compiled in DIR "
                         "(scripts/compiled-tree), interleaved; its output must be the same")
    ap.add_argument("--parse-base", default=None, metavar="REV",
                    help="only time the parse of REV's code beside this tree's (needs --log)")
    ap.add_argument("--reader-base", default=None, metavar="REV",
                    help="only time the replay's reader process of REV beside this tree's "
                         "(needs --log)")
    ap.add_argument("--parse-run", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--per-line", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.parse_run:  # a child of --parse-base: one timing as JSON
        t, lines, events = parse_only(args.parse_run, args.per_line)
        code = sys.modules[LogFeed.__module__].__file__
        print(json.dumps({"wall": t.wall, "cpu": t.cpu, "lines": lines, "events": events,
                          "code": code}))
        return
    # The two side-by-side modes of one part: the reader process, the parse and join.
    for rev, compare, flag in ((args.reader_base, compare_reader, "--reader-base"),
                               (args.parse_base, compare_parse, "--parse-base")):
        if rev:
            if args.log is None:
                raise SystemExit(f"{flag} needs --log")
            with tempfile.TemporaryDirectory(prefix="bench-part-") as tmp:
                compare(args.log, rev, args.repeat, Path(tmp))
            return
    pflogsumm = shutil.which("pflogsumm")
    if pflogsumm is None:
        raise SystemExit("pflogsumm not found (Debian package pflogsumm)")
    extrusion = Path(sys.executable).with_name("extrusion")

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        bots: list[str] = []
        if args.log is None:
            log = Path(tmp) / "mail.log"
            with open(log, "w", encoding="utf-8") as f:
                truth = generate(f, seed=11, messages=args.messages,
                                 senders=max(50, args.messages // 200), bots=2,
                                 duration=args.days * 86400.0)
            bots = truth.bots
        else:
            log = args.log
        config = Path(tmp) / "extrusion.toml"
        config.write_text('[general]\nlog_level = "warning"\n')
        size = log.stat().st_size
        print(f"log: {log.name}, {size / 1e6:.1f} MB")

        parse_t: list[Timing] = []
        base_t: list[Timing] = []
        base_cmd: list[str] = []
        if args.base:
            from benchmarks.trees import export

            base_cmd = tree_cmd(export(args.base, Path(tmp) / "base"))
        compiled_cmd: list[str] = []
        if args.compiled:
            from benchmarks.trees import compiled

            compiled_cmd = tree_cmd(compiled(args.compiled))
        compiled_t: list[Timing] = []
        replay_t: list[Timing] = []
        pfl_t: list[Timing] = []
        lines = events = 0
        flagged: set[str] = set()
        for _ in range(args.repeat):
            if not args.no_parse:
                t, lines, events = parse_only(log)
                parse_t.append(t)
            if base_cmd:
                t, _ = timed([*base_cmd, "replay", "--config", str(config), "--json", str(log)])
                base_t.append(t)
            t, out = timed([str(extrusion), "replay", "--config", str(config), "--json",
                            str(log)])
            replay_t.append(t)
            if compiled_cmd:
                t, compiled_out = timed([*compiled_cmd, "replay", "--config", str(config),
                                         "--json", str(log)])
                compiled_t.append(t)
                if compiled_out != out:
                    raise SystemExit("the compiled replay's final states differ")
            flagged = {json.loads(x)["sender"] for x in out.splitlines()
                       if json.loads(x)["state"] != "ok"}
            t, _ = timed([pflogsumm, str(log)])
            pfl_t.append(t)
        if not lines:  # counted here: a generated log goes with the temporary directory
            with open(log, "rb") as f:
                lines = sum(1 for _ in f)

    runs = {"parse only (LogFeed)": parse_t, f"extrusion replay at {args.base}": base_t,
            "extrusion replay (full)": replay_t, "extrusion replay (compiled)": compiled_t,
            "pflogsumm": pfl_t}
    runs = {name: ts for name, ts in runs.items() if ts}
    wall = {name: min(t.wall for t in ts) for name, ts in runs.items()}
    cpu = {name: min(t.cpu for t in ts) for name, ts in runs.items()}
    print(f"lines: {lines:,}   events: {events:,}   best of {args.repeat}   "
          f"load average: {os.getloadavg()[0]:.1f}\n")
    rss = {name: max(t.rss_mb for t in ts) for name, ts in runs.items()}
    print("| run | wall s | lines/s | vs pflogsumm | CPU s | lines per CPU s | vs pflogsumm "
          "| peak RSS MB | vs pflogsumm |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in runs:
        peak = (f"{rss[name]:.0f} | {rss[name] / rss['pflogsumm']:.2f}x" if rss[name]
                else "| ")
        print(f"| {name} | {wall[name]:.2f} | {lines / wall[name]:,.0f} | "
              f"{wall['pflogsumm'] / wall[name]:.2f}x | {cpu[name]:.2f} | "
              f"{lines / cpu[name]:,.0f} | {cpu['pflogsumm'] / cpu[name]:.2f}x | {peak} |")
    for line in target_lines(wall, cpu, rss, lines):
        print(line)
    if bots:
        verdict = "exactly the bots" if flagged == set(bots) else f"WRONG: {sorted(flagged)}"
        print(f"\nreplay flagged {verdict} ({', '.join(sorted(bots))})")


def target_lines(wall: dict[str, float], cpu: dict[str, float],
                 rss: dict[str, float], lines: int) -> list[str]:
    """Issue 17's replay targets, for each build of `extrusion replay` this run timed
    beside pflogsumm (best of the runs; the peak RSS the largest)."""
    ref = "pflogsumm"
    names = [n for n in wall if n.startswith("extrusion replay (")]
    if ref not in wall or not names:
        return []
    size = ("" if lines >= TARGET_LOG_LINES else
            f" (set on a log of {TARGET_LOG_LINES:,} lines or more; this one has {lines:,})")
    out = ["", f"issue 17 targets, beside pflogsumm{size}:"]
    for name in names:
        speed, cpu_ratio = wall[ref] / wall[name], cpu[name] / cpu[ref]
        out.append(f"  {name}: lines/s {speed:.2f}x (target >= {TARGET_LINES_PER_SECOND}x): "
                   f"{'met' if speed >= TARGET_LINES_PER_SECOND else 'NOT met'}; "
                   f"CPU {cpu_ratio:.2f}x (target <= 1x): "
                   f"{'met' if cpu_ratio <= 1 else 'NOT met'}; "
                   f"peak RSS {rss[name]:.0f} against {rss[ref]:.0f} MB: "
                   f"{'met' if rss[name] < rss[ref] else 'NOT met'}")
    return out


if __name__ == "__main__":
    main()
