"""`check-config --mta postfix` on `smtpd_milter_maps`: does Postfix ask extrusion which
clients get the milter (`[milter] attach = "watched"`, `extrusion.milter.attach`)?

Findings are (level, key, message) tuples, made `Finding`s by `checks`. Neither
wiring loses mail: a lookup that fails attaches `smtpd_milters` (fail safe), so
every mismatch here is a warning about cost or noise, never an error.
"""

from __future__ import annotations

import re

from extrusion.config import Config
from extrusion.mtacheck.postconf import PostconfView
from extrusion.postfixaddr import policy_listener

KEY = "smtpd_milter_maps"
MAP_NAME = "milters"  # extrusion.milter.attach.MAP_NAME (adapters stay out of mtacheck)
SINCE = (3, 2)  # the first Postfix with smtpd_milter_maps
_SOCKETMAP = re.compile(r"socketmap:(?P<address>.+):(?P<name>[^:]+)$")

Found = tuple[str, str, str]


def check_milter_map(cfg: Config, pc: PostconfView) -> list[Found]:
    maps = [m for m in re.split(r"[\s,]+", pc.get(KEY)) if m]
    queue = pc.get("queue_directory")
    try:
        want = policy_listener(cfg.milter.attach_listen)
    except ValueError as exc:
        return [("warning", KEY, f"cannot tell where Postfix must ask: {exc}")]
    ours = []
    for table in maps:
        m = _SOCKETMAP.match(table)
        if m and m.group("name") == MAP_NAME and want.reached_by(m.group("address"), queue):
            ours.append(table)
    line = f"{KEY} = socketmap:{want}:{MAP_NAME}"
    if not cfg.milter_maps:
        if ours:
            return [("warning", KEY, f"extrusion serves no socketmap ([milter] attach = "
                     f"\"always\", add_header, rate_limits or reject_bad_helo on, or mx "
                     f"mode): every "
                     f"connection logs a failed lookup before the milter is attached; remove "
                     f"{ours[0]} from {KEY}")]
        return []
    if pc.version and pc.version < SINCE:
        return [("warning", KEY, f"Postfix {pc.get('mail_version')} has no {KEY} (3.2 and "
                 f"later): the milter is attached to every session")]
    if not ours:
        return [("warning", KEY, f"Postfix does not ask extrusion which clients need the "
                 f"milter: it is attached to every session, which costs the MTA more "
                 f"(add `{line}`)")]
    if ours[0] != maps[0]:
        return [("warning", KEY, f"{maps[0]} is asked before extrusion's {ours[0]}: its "
                 f"answers decide which clients get the milter")]
    return [("ok", KEY, f"the milter is attached to clients under attention only ({ours[0]}; "
             f"a failed lookup attaches smtpd_milters)")]
