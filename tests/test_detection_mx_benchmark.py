"""The MX detection benchmark's yardstick: the MX population generator and the scorer.

The generated day must hold every group the benchmark reports on, in Postfix
3.7's own line shapes, read cleanly through extrusion's parser and be the
same for a seed; the scorer must count bots (postscreen's included), watch-only
senders and minutes to throttle as benchmarks/detection_mx.py defines them.
The targets themselves are not asserted here: the benchmark measures them.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
from pathlib import Path

import pytest

from benchmarks.detection_mx import main, score, targets
from extrusion.config import load
from extrusion_dev.mxpopulation import (
    AGGRESSIVE,
    BAD,
    BOT,
    BUSINESS,
    LEGITIMATE,
    LISTS,
    OUR_DOMAIN,
    OWN_INFECTED,
    REFUSED,
    SLOW,
    MxPopulation,
    Sender,
    populate_mx,
)
from extrusion_dev.mxsession import AMAVIS
from tests.maillog_helpers import Recorder, feed_lines

REPO = Path(__file__).resolve().parent.parent
SCALE = 0.05  # every group still sends; a few thousand lines


@pytest.fixture(scope="module")
def small() -> tuple[str, MxPopulation]:
    out = io.StringIO()
    pop = populate_mx(out, scale=SCALE, seed=3)
    return out.getvalue(), pop


def test_every_group_is_there_with_the_issues_counts(small: tuple[str, MxPopulation]) -> None:
    _log, pop = small
    assert pop.groups() == {"big_provider": 6, "small_mta": 100, "newsletter": 25,
                            "list_server": 15, "forwarder": 23, "business_customer": 3,
                            "bot": 20, "own_infected": 5}
    styles = [s.style for s in pop.senders if s.group == BOT]
    assert (styles.count(AGGRESSIVE), styles.count(SLOW), styles.count(REFUSED)) == (14, 3, 3)
    assert [s.style for s in pop.senders if s.group == OWN_INFECTED].count(REFUSED) == 2
    assert all(s.sessions and s.keys and s.first < pop.end for s in pop.senders)
    owner: dict[str, str] = {}
    for s in pop.senders:
        for k in s.keys:
            assert owner.setdefault(k, s.name) == s.name, k


def test_own_ranges_and_customers_match_the_shipped_mx_config(
        small: tuple[str, MxPopulation]) -> None:
    _log, pop = small
    cfg = load(REPO / "conf" / "extrusion-mx.toml")
    assert cfg.general.mode == "mx"
    assert OUR_DOMAIN in cfg.general.own_domains
    own = [ipaddress.ip_network(n) for n in cfg.general.own_networks]
    nets = {c.name: [ipaddress.ip_network(n) for n in c.networks] for c in cfg.customers}
    allowed = {o.match for o in cfg.overrides if o.action == "allow"}
    for s in pop.senders:
        inside = {any(ipaddress.ip_address(a) in n for n in own) for a in s.addrs}
        assert inside == {s.group in (OWN_INFECTED, BUSINESS)}, s.name
        if s.group == BUSINESS:
            assert s.keys == {f"customer:{s.name}"} and f"customer:{s.name}" in allowed
            assert all(any(ipaddress.ip_address(a) in n for n in nets[s.name])
                       for a in s.addrs)


def test_the_lines_are_postfix_37s(small: tuple[str, MxPopulation]) -> None:
    log, pop = small
    lines = log.splitlines()
    assert len(lines) == pop.lines
    assert lines == sorted(lines, key=lambda x: x.split(" ", 1)[0])
    tail = re.compile(r"; from=<[^>]*>, to=<[^>]+@isp\.example>, proto=ESMTP, helo=<[^>]+>$")
    ps = [x for x in lines if "postscreen" in x and "NOQUEUE: reject: RCPT" in x]
    assert ps and all(tail.search(x) and "blocked using zen.spamhaus.org" in x for x in ps)
    for kind in ("PASS NEW", "PASS OLD", "DNSBL rank", "PREGREET", "HANGUP", "CONNECT from"):
        assert any(kind in x for x in lines), kind
    unknown = [x for x in lines if "User unknown in local recipient table" in x]
    assert unknown and all(re.search(r"from=<[^>]*> to=<[^>]+> proto=ESMTP helo=<", x)
                           for x in unknown)
    assert any("milter-reject: END-OF-MESSAGE" in x and "Blocked by SpamAssassin" in x
               for x in lines)
    assert any("dovecot-lmtp" in x and "status=sent" in x for x in lines)
    assert any("spamd: result: Y" in x for x in lines)
    assert any(re.search(r"disconnect from .* rcpt=\d+/\d+ .*commands=\d+/\d+$", x)
               for x in lines)
    # Bots forge our domain, our address literal and send several HELOs per session.
    bot_helos = {m.group(1) for x in unknown if (m := re.search(r"helo=<([^>]*)>$", x))}
    assert {OUR_DOMAIN, "[192.0.2.25]"} <= bot_helos
    assert any(re.search(r" ehlo=[2-9] ", x) for x in lines)


def test_postscreen_refused_senders_never_reach_smtpd(small: tuple[str, MxPopulation]) -> None:
    log, pop = small
    refused = {a for s in pop.senders if s.style == REFUSED for a in s.addrs}
    assert len(refused) == 5  # 3 bots, 2 own customers
    smtpd = [x for x in log.splitlines() if "postfix/smtpd[" in x]
    assert not any(f"[{a}]" in x for a in refused for x in smtpd)


def test_the_log_reads_cleanly_through_extrusions_parser(small: tuple[str, MxPopulation]) -> None:
    log, pop = small
    rec = Recorder()
    feed = feed_lines(rec, log.splitlines())
    assert feed.stats.garbled == 0, feed.stats.examples
    by_addr = {f"ip:{a}": s for s in pop.senders for a in s.addrs}
    assert {o.sender for o in rec.outcomes} <= set(by_addr)
    assert {s.sender for s in rec.submissions} <= set(by_addr)
    # postscreen's refusals are attributed to the client, even though smtpd never saw it.
    refused = {f"ip:{a}" for s in pop.senders if s.style == REFUSED for a in s.addrs}
    assert refused <= {o.sender for o in rec.outcomes if o.status.value == "rejected"}
    delivered = [o for o in rec.outcomes if o.status.value == "sent"]
    assert len(delivered) == sum("dovecot-lmtp" in x for x in log.splitlines())
    assert all(o.recipient.endswith("@" + OUR_DOMAIN) for o in delivered)


def test_amavis_instead_of_spamd() -> None:
    out = io.StringIO()
    populate_mx(out, scale=SCALE, seed=3, spam_filter=AMAVIS)
    lines = out.getvalue().splitlines()
    assert not any(" spamd[" in x for x in lines)
    assert any("amavis[" in x and "Blocked SPAM {RejectedInbound}" in x for x in lines)
    assert any("amavis[" in x and "Passed CLEAN {RelayedInbound}" in x for x in lines)
    with pytest.raises(ValueError):
        populate_mx(io.StringIO(), scale=SCALE, spam_filter="clamav")
    with pytest.raises(ValueError):
        populate_mx(io.StringIO(), scale=0)


def test_same_seed_same_log_other_seed_other_log(small: tuple[str, MxPopulation]) -> None:
    log, pop = small
    again = io.StringIO()
    twin = populate_mx(again, scale=SCALE, seed=3)
    assert again.getvalue() == log and twin.summary() == pop.summary()
    other = io.StringIO()
    populate_mx(other, scale=SCALE, seed=4)
    assert other.getvalue() != log


def _hand_made() -> MxPopulation:
    """Two bots (one refused by postscreen), one own customer, a list server."""
    pop = MxPopulation(0.0, 86400.0)
    pop.senders = [
        Sender("b1", BOT, {"ip:10.0.0.1"}, first=0.0, style=AGGRESSIVE),
        Sender("b2", BOT, {"ip:10.0.0.2"}, first=600.0, style=REFUSED),
        Sender("o1", OWN_INFECTED, {"ip:100.64.0.1"}, first=1200.0),
        Sender("l1", LISTS, {"ip:10.9.0.1"}, first=0.0),
    ]
    return pop


def _change(t: float, sender: str, state: str) -> dict[str, object]:
    return {"time": t, "sender": sender, "state": state, "score": 0.0, "reason": "x"}


def test_scores_count_groups_watch_and_minutes() -> None:
    pop = _hand_made()
    changes = [_change(120.0, "ip:10.0.0.1", "watch"), _change(300.0, "ip:10.0.0.1", "held"),
               _change(180.0, "ip:10.0.0.1", "throttled"), _change(900.0, "ip:10.0.0.2",
                                                                      "watch"),
               _change(1800.0, "ip:100.64.0.1", "throttled"),
               _change(50.0, "ip:10.9.0.1", "watch")]
    f = score(pop, changes)
    assert set(f) == {*BAD, *LEGITIMATE, f"{BOT}:{AGGRESSIVE}", f"{BOT}:{REFUSED}"}
    assert (f[BOT].senders, f[BOT].throttled, f[BOT].watch_only) == (2, 1, 1)
    assert f[BOT].minutes_median is None  # one of two never: the median is never
    assert f[f"{BOT}:{AGGRESSIVE}"].minutes_median == pytest.approx(3.0)
    assert f[f"{BOT}:{REFUSED}"].throttled == 0
    assert f[OWN_INFECTED].throttled == 1 and f[OWN_INFECTED].minutes_median == 10.0
    assert (f[LISTS].throttled, f[LISTS].watch_only) == (0, 1)
    met = targets(f)
    assert met[OWN_INFECTED] and met[LISTS] and not met[BOT]
    f2 = score(pop, [*changes, _change(2400.0, "ip:10.9.0.1", "throttled")])
    assert not targets(f2)[LISTS]


def test_the_benchmark_runs_and_reports_every_group(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    status = main(["--scale", str(SCALE), "--seed", "2", "--json", "--keep", str(tmp_path)])
    assert status == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures["groups"]) >= {*BAD, *LEGITIMATE}
    assert set(figures["targets_met"]) == {*BAD, *LEGITIMATE}
    for name, g in figures["groups"].items():
        assert g["senders"] == (figures["population"].get(name) or g["senders"])
        assert 0 <= g["throttled"] + g["watch_only"] <= g["senders"], name
    assert figures["groups"][BOT]["senders"] == 20
    assert (tmp_path / "mail.log").stat().st_size > 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert len(truth["senders"]) == 197
    # The replay's state changes name only senders of the truth.
    keys = {k for s in truth["senders"] for k in s["keys"]}
    changes = [json.loads(x) for x in (tmp_path / "replay.jsonl").read_text().splitlines()]
    assert changes and {c["sender"] for c in changes} <= keys
