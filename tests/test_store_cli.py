"""`extrusion db upgrade` against both backends, and its failure mode."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extrusion.cli import main
from extrusion.config import load
from extrusion.exits import EX_DATAERR, EX_UNAVAILABLE, EX_USAGE
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import Action, Outcome, Stage, State, Status, Submission
from extrusion.scoring.store import Store


def test_db_upgrade_creates_then_reports_up_to_date(
    store_url: str, write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(f'[store]\nurl = "{store_url}"\n')
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert f"to {Store.head_revision()}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert "up to date" in capsys.readouterr().out
    with Store(store_url, create=False) as s:
        assert s.revision() == Store.head_revision()


@pytest.mark.parametrize(
    ("command", "name"),
    [(["db", "upgrade"], "db upgrade"), (["senders"], "senders"),
     (["block", "ip:192.0.2.1", "-r", "x"], "block")],
)
def test_unreachable_database_is_one_line_and_exit_69(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str],
    command: list[str], name: str,
) -> None:
    with socket.socket() as sock:  # bound but not listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        path = write_config(
            f'[store]\nurl = "postgresql+psycopg://postgres@127.0.0.1:{port}/x"\n'
        )
        assert main([*command, "--config", str(path)]) == EX_UNAVAILABLE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"extrusion {name}: store unavailable:")
    assert len(err.splitlines()) == 1


# --- senders, release|hold|allow|block: straight on the store, daemons follow on refresh ------

BOT = "ip:192.0.2.66"


def _failures(engine: Engine, sender: str, n: int, t0: float, tag: str = "r") -> None:
    for i in range(n):
        r = f"{tag}{i}@example.org"
        engine.submission(Submission(t0 + i, sender, f"{tag}{i:05d}", "bot@example.net", (r,)))
        engine.outcome(Outcome(t0 + i, f"{tag}{i:05d}", r, Status.BOUNCED, "5.1.1",
                               "550 5.1.1 user unknown", sender=sender))


@pytest.fixture
def setup(store_url: str, write_config: Callable[[str], Path], tmp_path: Path
          ) -> Iterator[tuple[str, Engine]]:
    path = write_config(
        f'[general]\nhostname = "mx1"\n[store]\nurl = "{store_url}"\n'
        f'spool_dir = "{tmp_path / "spool"}"\n'
        '[[customers]]\nname = "acme"\nnetworks = ["10.0.0.0/8"]\nsasl = ["*@acme.example"]\n'
    )
    engine = open_engine(load(path))
    yield str(path), engine
    engine.close()


def test_block_from_the_cli_reaches_a_running_engine(
    setup: tuple[str, Engine], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, engine = setup
    monkeypatch.setenv("USER", "kim")
    assert main(["block", BOT, "--config", path, "-r", "spam run, ticket 7"]) == 0
    said = capsys.readouterr().out.strip()
    assert said == f"{BOT}: ok -> blocked (block by kim: spam run, ticket 7)"
    engine.refresh()
    assert engine.decide(BOT, Stage.MAIL).action is Action.REJECT
    (change,) = engine.store.state_changes(BOT)
    assert (change.who, change.new) == ("kim", State.BLOCKED)
    assert main(["senders", "--config", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("SENDER") and BOT in out[1] and "blocked" in out[1]
    assert "block by kim" in out[1]


def test_release_from_the_cli_forgets_the_evidence_everywhere(
    setup: tuple[str, Engine], capsys: pytest.CaptureFixture[str]
) -> None:
    path, engine = setup
    t = time.time()
    _failures(engine, BOT, 25, t)
    engine.flush()
    assert engine.decide(BOT, Stage.RCPT, count=False).state is State.THROTTLED
    assert main(["release", BOT, "--config", path, "-r", "cleaned", "--who", "ops"]) == 0
    assert "throttled -> ok" in capsys.readouterr().out
    engine.refresh()
    d = engine.decide(BOT, Stage.RCPT, count=False)
    assert d.state is State.OK and d.score < 0.01
    _failures(engine, BOT, 3, t + 100, tag="after")  # the old window was forgotten too
    assert engine.decide(BOT, Stage.RCPT, count=False).state is State.OK


def test_senders_json_and_state_filter(
    setup: tuple[str, Engine], capsys: pytest.CaptureFixture[str]
) -> None:
    path, engine = setup
    _failures(engine, BOT, 12, time.time())
    engine.flush()
    assert main(["hold", "ip:192.0.2.1", "--config", path, "-r", "check"]) == 0
    capsys.readouterr()
    # 12 of 12 distinct recipients failed: throttled (failures in proportion).
    assert main(["senders", "--config", path, "--json", "--state", "throttled"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    assert data["sender"] == BOT and data["state"] == "throttled" and data["score"] > 20
    assert "failed_recipients" in data["findings"]
    assert main(["senders", "--config", path, "--state", "sleepy"]) == 2
    assert "unknown state 'sleepy'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["block", "192.0.2.1"], EX_USAGE, "is not a sender key"),
        (["block", "host:192.0.2.1"], EX_USAGE, "is not a sender key"),
        (["block", ""], EX_USAGE, "is not a sender key"),
        (["allow", "sasl:"], EX_USAGE, "names nobody"),
        (["release", "ip:"], EX_USAGE, "names nobody"),
        (["block", "ip:192.0.2.300"], EX_USAGE, "is not an IP address"),
        (["block", "ip:not-an-ip"], EX_USAGE, "is not an IP address"),
        (["block", "ip:192.0.2.01"], EX_USAGE, "is not an IP address"),
        (["hold", "ip:192.0.2.0/24"], EX_USAGE, "[[overrides]] entry"),
        (["allow", "ip:2001:DB8::/32"], EX_USAGE, 'match = "2001:db8::/32"'),
        (["block", "customer:nobody"], EX_DATAERR, "no customer in the config"),
        (["block", "customer:ACME"], EX_DATAERR, "no customer in the config"),
        (["hold", "ip:10.1.2.3"], EX_DATAERR, "belongs to customer:acme"),
        (["hold", "ip:::ffff:10.1.2.3"], EX_DATAERR, "belongs to customer:acme"),
        (["hold", "sasl:joe@acme.example"], EX_DATAERR, "belongs to customer:acme"),
        (["hold", BOT, "-r", "  "], 2, "a reason is required"),
    ],
)
def test_bad_operator_input_is_one_clear_line_and_writes_nothing(
    setup: tuple[str, Engine], capsys: pytest.CaptureFixture[str], args: list[str],
    status: int, message: str,
) -> None:
    path, engine = setup
    reason = [] if "-r" in args else ["-r", "x"]
    assert main([*args, *reason, "--config", path]) == status
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"extrusion {args[0]}: ")
    assert engine.store.state_changes() == []  # nothing written
    assert engine.store.senders(None) == []
    assert main(["senders", "--config", path]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []  # so never listed


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ip:2001:DB8::0001", "ip:2001:db8::1"),
        ("ip:::ffff:192.0.2.5", "ip:192.0.2.5"),
        ("IP:[IPv6:2001:db8:0:0::7]", "ip:2001:db8::7"),
        ("sasl:Anna@Example.net", "sasl:Anna@Example.net"),  # as the MTA passes it
        ("customer:acme", "customer:acme"),
    ],
)
def test_operator_keys_are_stored_as_traffic_has_them(
    setup: tuple[str, Engine], capsys: pytest.CaptureFixture[str], given: str, stored: str,
) -> None:
    path, engine = setup
    assert main(["hold", given, "--config", path, "-r", "check"]) == 0
    assert capsys.readouterr().out.startswith(f"{stored}: ok -> held ")
    assert [r.key for r in engine.store.senders(None)] == [stored]
    (change,) = engine.store.state_changes(stored)
    assert change.new is State.HELD
    engine.refresh()
    assert engine.decide(stored, Stage.EOM, count=False).action is Action.HOLD
