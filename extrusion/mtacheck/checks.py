"""The judgement of `check-config --mta postfix`, pure so it can be tested on text: the
milter attached at the right address with the macros extrusion reads, the policy service
asked after reject_unauth_destination and before any permit that accepts customers,
fail-open actions on both, and the log feed pointing where extrusion reads."""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import os
import pwd
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from extrusion import identity
from extrusion.config import Config
from extrusion.maillog import logpath
from extrusion.maillog.hosts import foreign_hosts
from extrusion.mtacheck.attach import check_milter_map
from extrusion.mtacheck.lists import Entry, parse_list
from extrusion.mtacheck.postconf import PostconfView, seconds
from extrusion.postfixaddr import Listener, milter_listener, policy_listener

Level = Literal["ok", "warning", "error"]

MAILLOG_FILE_SINCE = (3, 4)
# A hung extrusion stalls a session or a recipient this long at most before
# Postfix applies the fail-open default; longer is reported.
MAX_MILTER_TIMEOUT_S = 30
MAX_POLICY_TIMEOUT_S = 30
FAIL_OPEN_POLICY_ACTION = "DUNNO"
FAIL_OPEN_MILTER_ACTION = "accept"
# Postfix's default mail_owner, whose group may reach the milter's unix socket.
DEFAULT_MAIL_OWNER = "postfix"

# Restrictions that end the list with "accept" for customers: a policy check
# after one of them is never asked about customers' mail.
CUSTOMER_PERMITS = frozenset({
    "permit", "permit_mynetworks", "permit_sasl_authenticated", "permit_inet_interfaces",
    "permit_tls_clientcerts", "permit_tls_all_clientcerts",
})
RELAY_GUARDS = frozenset({"reject_unauth_destination", "defer_unauth_destination"})
# Macros per milter stage: (name, why), missing ones are errors when `error` is set.
REQUIRED_MACROS: dict[str, list[tuple[str, str, bool]]] = {
    "milter_connect_macros": [
        ("j", "the MTA's name recorded with each message", False),
        ("{daemon_name}", "which listener the customer came in on", False),
        ("{client_addr}", "the customer's address", False),
    ],
    "milter_mail_macros": [
        ("{auth_authen}", "SASL customers would be judged by IP, not by login", True),
        ("{auth_type}", "the SASL mechanism", False),
    ],
    "milter_end_of_data_macros": [
        ("i", "the queue id ties logged delivery outcomes to the sender", True),
    ],
}
# master.cf -o overrides that take a listener out of extrusion's sight.
SIGHT_PARAMS = ("smtpd_milters", "smtpd_recipient_restrictions",
                "smtpd_end_of_data_restrictions")



@dataclass(frozen=True)
class Finding:
    level: Level
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.level:<7} {self.key}: {self.message}"


def check_postfix(cfg: Config, pc: PostconfView) -> list[Finding]:
    """Every finding about Postfix's wiring to extrusion, errors first within each part."""
    findings: list[Finding] = []
    if cfg.milter.enabled:
        findings += _check_milter(cfg, pc)
    if cfg.policyd.enabled:
        findings += _check_policy(cfg, pc)
    findings += _check_overrides(cfg, pc)
    findings += _check_log_feed(cfg, pc)
    return findings


def _check_milter(cfg: Config, pc: PostconfView) -> list[Finding]:
    try:
        want = milter_listener(cfg.milter.socket)
    except ValueError as exc:
        return [Finding("error", "smtpd_milters", f"cannot tell where Postfix must connect: {exc}")]
    found: list[Finding] = []
    queue = pc.get("queue_directory")
    ours = [e for e in parse_list(pc.get("smtpd_milters")) if want.reached_by(e.address, queue)]
    if not ours:
        return [Finding("error", "smtpd_milters",
                        f"extrusion's milter {want} is not attached: customers' sessions are "
                        f"not judged (add `smtpd_milters = {want}`)")]
    found.append(Finding("ok", "smtpd_milters", f"extrusion's milter {want} is attached"))
    found += [Finding(level, key, msg) for level, key, msg in check_milter_map(cfg, pc)]  # type: ignore[arg-type]
    found.append(_milter_reach(cfg, want, pc))
    action = ours[0].options.get("default_action") or pc.get("milter_default_action")
    if action == FAIL_OPEN_MILTER_ACTION:
        found.append(Finding("ok", "milter_default_action",
                             "accept: mail flows while extrusion is down (fail open)"))
    elif action == "tempfail" and cfg.milter.on_error == "tempfail":
        found.append(Finding("ok", "milter_default_action",
                             "tempfail: mail waits (4xx) while extrusion is down, as "
                             "[milter] on_error = \"tempfail\" asks"))
    else:
        found.append(Finding("error", "milter_default_action",
                             f"{action or 'tempfail'}: while extrusion is down every customer "
                             f"gets a refusal; set milter_default_action = accept (fail open)"))
    for param in ("milter_connect_timeout", "milter_command_timeout"):
        secs = seconds(ours[0].options.get(param.removeprefix("milter_")) or pc.get(param))
        if secs is not None and secs > MAX_MILTER_TIMEOUT_S:
            found.append(Finding("warning", param,
                                 f"{secs:.0f}s: a hung extrusion stalls every session that "
                                 f"long; {MAX_MILTER_TIMEOUT_S}s or less is advised"))
    for param, macros in REQUIRED_MACROS.items():
        have = set(pc.get(param).replace(",", " ").split())
        for macro, why, needed in macros:
            if macro not in have:
                found.append(Finding("error" if needed else "warning", param,
                                     f"lacks {macro} ({why})"))
    if any(want.reached_by(e.address, queue) for e in parse_list(pc.get("non_smtpd_milters"))):
        found.append(Finding("warning", "non_smtpd_milters",
                             "extrusion also judges locally submitted mail and Postfix's own "
                             "bounces, which are not customers' SMTP; leave it empty"))
    return found


def _milter_reach(cfg: Config, want: Listener, pc: PostconfView) -> Finding:
    """Who besides Postfix may connect to the milter: any local process that can reach
    a libmilter socket can crash it (README, "Who may reach the milter socket")."""
    key = "[milter] socket"
    if want.kind == "inet":
        return Finding("warning", key,
                       f"{cfg.milter.socket} is open to every local user, and any local "
                       f"process that can connect can crash the milter (libmilter's macro "
                       f"defect); use a unix socket, e.g. the default "
                       f"unix:/var/spool/postfix/extrusion/milter.sock with socket_group = "
                       f"\"postfix\"")
    mode, group, source = _socket_access(cfg, want.path)
    theirs = _postfix_group(pc.get("mail_owner") or DEFAULT_MAIL_OWNER)
    if mode & stat.S_IWOTH:
        return Finding("warning", key,
                       f"{source} mode {mode:04o} lets every local user connect and crash "
                       f"the milter; use socket_mode = 0o660")
    if mode & stat.S_IWGRP and group != theirs:
        return Finding("warning", key,
                       f"{source} group {group or '?'} may connect, which is not Postfix's "
                       f"group {theirs}: its other members can crash the milter; use "
                       f"socket_group = \"{theirs}\"")
    return Finding("ok", key, f"{source} mode {mode:04o} group {group}: only Postfix "
                              f"(group {theirs}) may connect")


def _socket_access(cfg: Config, path: str) -> tuple[int, str, str]:
    """(mode, group name, what was judged): the socket as it is when it exists (this
    check may run beside the daemon), else as the config will make it."""
    try:
        st = os.stat(path)
    except OSError:
        group = cfg.milter.socket_group or _group_name(os.getegid())
        return cfg.milter.socket_mode, group, "the socket will have"
    return stat.S_IMODE(st.st_mode), _group_name(st.st_gid), f"{path} has"


def _postfix_group(mail_owner: str) -> str:
    """The primary group of Postfix's mail_owner: the one its smtpd processes run as."""
    try:
        return _group_name(pwd.getpwnam(mail_owner).pw_gid)
    except KeyError:
        return mail_owner


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _policy_entries(value: str, want: Listener, queue: str) -> list[tuple[int, Entry]]:
    return [(i, e) for i, e in enumerate(parse_list(value))
            if e.name == "check_policy_service" and want.reached_by(e.target, queue)]


def _check_policy(cfg: Config, pc: PostconfView) -> list[Finding]:
    try:
        want = policy_listener(cfg.policyd.listen)
    except ValueError as exc:
        return [Finding("error", "smtpd_recipient_restrictions",
                        f"cannot tell where Postfix must connect: {exc}")]
    queue = pc.get("queue_directory")
    found: list[Finding] = []
    relay = parse_list(pc.get("smtpd_relay_restrictions"))
    rcpt = parse_list(pc.get("smtpd_recipient_restrictions"))
    in_rcpt = _policy_entries(pc.get("smtpd_recipient_restrictions"), want, queue)
    in_relay = _policy_entries(pc.get("smtpd_relay_restrictions"), want, queue)
    relay_guarded = any(e.name in RELAY_GUARDS for e in relay)
    if not relay_guarded and not any(e.name in RELAY_GUARDS for e in rcpt):
        found.append(Finding("error", "smtpd_relay_restrictions",
                             "no reject_unauth_destination in smtpd_relay_restrictions or "
                             "smtpd_recipient_restrictions: Postfix refuses all relaying with "
                             "a configuration error (or is an open relay)"))
    if not in_rcpt and not in_relay:
        elsewhere = [p for p in ("smtpd_client_restrictions", "smtpd_helo_restrictions",
                                 "smtpd_sender_restrictions", "smtpd_data_restrictions")
                     if _policy_entries(pc.get(p), want, queue)]
        where = (f" (it is in {', '.join(elsewhere)}, where there is no recipient yet)"
                 if elsewhere else "")
        found.append(Finding("error", "smtpd_recipient_restrictions",
                             f"no check_policy_service {want}{where}: rate limits and "
                             f"verdicts per recipient are not applied"))
        return found
    param, entries, index, listing = (
        ("smtpd_recipient_restrictions", rcpt, in_rcpt[0][0], in_rcpt) if in_rcpt
        else ("smtpd_relay_restrictions", relay, in_relay[0][0], in_relay))
    found.append(_policy_order(param, entries[:index], relay, relay_guarded, want))
    found += _policy_options(param, listing[0][1], pc)
    found += _end_of_data(want, queue, pc)
    return found


def _policy_order(param: str, before: list[Entry], relay: list[Entry], relay_guarded: bool,
                  want: Listener) -> Finding:
    """Whether the policy service is asked after the relay guard and before any permit
    that accepts customers (`before`: the entries ahead of it in `param`)."""
    permits = [e.name for e in before if e.name in CUSTOMER_PERMITS]
    if permits:
        return Finding("error", param,
                       f"check_policy_service {want} comes after {permits[0]}: "
                       f"customers are accepted before extrusion is asked; move it "
                       f"before {permits[0]}")
    if param == "smtpd_relay_restrictions" and not any(e.name in RELAY_GUARDS for e in before):
        return Finding("warning", param,
                       f"check_policy_service {want} is asked before "
                       f"reject_unauth_destination: extrusion also hears about refused "
                       f"relay attempts; move it to smtpd_recipient_restrictions")
    if param == "smtpd_recipient_restrictions" and not relay_guarded and not any(
            e.name in RELAY_GUARDS for e in before):
        # Already in the right list: the guard is what is missing before it.
        return Finding("warning", param,
                       f"check_policy_service {want} is asked before "
                       f"reject_unauth_destination: extrusion also hears about refused "
                       f"relay attempts; end smtpd_relay_restrictions with "
                       f"reject_unauth_destination")
    guard = next((e.name for e in (relay if relay_guarded else before)
                  if e.name in RELAY_GUARDS), "reject_unauth_destination")
    return Finding("ok", param, f"check_policy_service {want} is asked for every "
                                f"recipient after {guard}")


def _end_of_data(want: Listener, queue: str, pc: PostconfView) -> list[Finding]:
    """The policy service at end of message, where message limits and HOLD apply."""
    eod = _policy_entries(pc.get("smtpd_end_of_data_restrictions"), want, queue)
    if not eod:
        return [Finding("warning", "smtpd_end_of_data_restrictions",
                        f"no check_policy_service {want}: message limits are not counted "
                        f"at end of message and HOLD is left to the milter")]
    return [Finding("ok", "smtpd_end_of_data_restrictions",
                    f"check_policy_service {want} counts and may hold each message"),
            *_policy_options("smtpd_end_of_data_restrictions", eod[0][1], pc)]


def _policy_options(param: str, entry: Entry, pc: PostconfView) -> list[Finding]:
    found: list[Finding] = []
    action = entry.options.get("default_action") or pc.get(
        "smtpd_policy_service_default_action")
    if action.upper() != FAIL_OPEN_POLICY_ACTION:
        found.append(Finding("error", param,
                             f"policy default_action is {action!r}: while extrusion is down "
                             f"every recipient gets it; use default_action=DUNNO (fail open)"))
    timeout = seconds(entry.options.get("timeout") or pc.get("smtpd_policy_service_timeout"))
    if timeout is not None and timeout > MAX_POLICY_TIMEOUT_S:
        found.append(Finding("warning", param,
                             f"policy timeout {timeout:.0f}s: a hung extrusion delays each "
                             f"recipient that long; timeout=10s is advised"))
    tries = entry.options.get("try_limit") or pc.get("smtpd_policy_service_try_limit")
    if tries.isdigit() and int(tries) > 1:
        found.append(Finding("warning", param,
                             f"policy try_limit={tries}: while extrusion is stopped each "
                             f"recipient waits the retry delay first; try_limit=1 is advised"))
    return found


def _check_overrides(cfg: Config, pc: PostconfView) -> list[Finding]:
    """master.cf `-o` settings that take a listener out of extrusion's sight."""
    found: list[Finding] = []
    checks: list[tuple[str, Listener]] = []
    # An address that cannot be rendered is reported by _check_milter / _check_policy.
    with contextlib.suppress(ValueError):
        if cfg.milter.enabled:
            checks.append(("smtpd_milters", milter_listener(cfg.milter.socket)))
    with contextlib.suppress(ValueError):
        if cfg.policyd.enabled:
            want = policy_listener(cfg.policyd.listen)
            checks += [("smtpd_recipient_restrictions", want),
                       ("smtpd_end_of_data_restrictions", want)]
    queue = pc.get("queue_directory")
    for key, value in sorted(pc.overrides.items()):
        service, _, param = key.rpartition("/")
        for name, want in checks:
            if param == name and not any(want.reached_by(e.address, queue)
                                         for e in parse_list(value)):
                found.append(Finding("warning", f"master.cf {service}",
                                     f"-o {param}={value} leaves extrusion ({want}) out on "
                                     f"this listener; right only for a re-injection port"))
        if param == "receive_override_options" and "no_milters" in value and cfg.milter.enabled:
            found.append(Finding("warning", f"master.cf {service}",
                                 "-o receive_override_options=no_milters: the milter does "
                                 "not see this listener; right only for a re-injection port"))
    return found


def _check_log_feed(cfg: Config, pc: PostconfView) -> list[Finding]:
    maillog_file = pc.get("maillog_file")
    source = cfg.maillog.source
    if cfg.maillog.path == logpath.AUTO:  # what the feed will follow, as it decides it
        cfg = dataclasses.replace(cfg, maillog=dataclasses.replace(
            cfg.maillog, path=maillog_file or logpath.SYSLOG_MAIL_LOG))
    if source == "none":
        return [Finding("warning", "maillog", "[maillog] source = \"none\": extrusion reads no "
                                              "delivery outcomes, so it cannot count failures")]
    if source == "syslog":
        if maillog_file:
            return [Finding("error", "maillog_file",
                            f"Postfix writes its log to {maillog_file}, not to syslog: set "
                            f"[maillog] source = \"file\", path = \"{maillog_file}\"")]
        return [Finding("ok", "maillog_file",
                        "Postfix logs to syslog; have syslog forward mail.* to "
                        f"{cfg.maillog.syslog_listen}")]
    found: list[Finding] = []
    if not maillog_file:
        return [Finding("warning", "maillog_file",
                        f"Postfix logs to syslog: make sure syslog writes mail.* to "
                        f"{cfg.maillog.path}, or set maillog_file = {cfg.maillog.path}")]
    if maillog_file != cfg.maillog.path:
        found.append(Finding("error", "maillog_file",
                             f"Postfix logs to {maillog_file} but extrusion reads "
                             f"{cfg.maillog.path}: no delivery outcome reaches extrusion"))
    else:
        found.append(Finding("ok", "maillog_file", f"extrusion reads Postfix's log {maillog_file}"))
    found += _check_log_hosts(cfg, pc)
    if pc.version and pc.version < MAILLOG_FILE_SINCE:
        found.append(Finding("error", "maillog_file",
                             f"Postfix {pc.get('mail_version')} has no maillog_file (3.4+)"))
    if pc.services and not _has_service(pc.services, "postlog", "unix-dgram"):
        found.append(Finding("error", "master.cf postlog",
                             "no postlog unix-dgram service: Postfix cannot write maillog_file"))
    return found


def _check_log_hosts(cfg: Config, pc: PostconfView) -> list[Finding]:
    """Lines whose host field is none of this host's names: with the milter beside the log
    feed, each of their messages would be stored twice (once under each name)."""
    if cfg.general.hostname or not cfg.milter.enabled:
        return []
    names = identity.names_of(socket.gethostname(), pc.get("myhostname"))
    others = foreign_hosts(cfg.maillog.path, names)
    if not others:
        return []
    return [Finding("error", "[general] hostname",
                    f"Postfix's log lines name the host {others[0]!r}, which is neither this "
                    f"machine's name nor myhostname ({', '.join(names)}): the milter and the "
                    f"log feed would count each message twice; set [general] hostname = "
                    f"\"{others[0]}\" if this log is this host's")]


def _has_service(services: Iterable[str], name: str, kind: str) -> bool:
    return any(line.split()[:2] == [name, kind] for line in services if line.split())


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.level == "error" for f in findings)

