"""Which registered domains belong to the big mailbox providers, grouped by operator.

Mass-mailing worms announce themselves in HELO with a big provider's name
(`lkrw.hotmail.com`, `pshw.netscape.net`, `zmgp.cs.com`) because the
sender addresses they forge are mostly at those providers. A real
provider's server is named in its own family (Hotmail's outbound hosts
live under outlook.com, AOL's under aol.com), so names are compared by
family, not by exact domain.
"""

from __future__ import annotations

import functools

# Operator -> registered domains (as the public suffix list splits them).
PROVIDER_DOMAINS: dict[str, frozenset[str]] = {
    "microsoft": frozenset(
        {
            "hotmail.com",
            "outlook.com",
            "live.com",
            "msn.com",
            "passport.com",
            "windowslive.com",
            "live.co.uk",
            "live.fr",
            "live.de",
            "live.nl",
            "live.it",
            "live.ca",
            "live.com.au",
            "live.be",
            "live.se",
            "live.jp",
        }
    ),
    "google": frozenset({"gmail.com", "googlemail.com", "google.com"}),
    "yahoo": frozenset({"yahoo.com", "ymail.com", "rocketmail.com", "yahoodns.net"}),
    "aol": frozenset(
        {
            "aol.com",
            "aim.com",
            "netscape.net",
            "netscape.com",
            "cs.com",
            "compuserve.com",
            "wmconnect.com",
        }
    ),
    "usa.net": frozenset({"usa.net"}),
    "apple": frozenset({"icloud.com", "me.com", "mac.com"}),
    "united-internet": frozenset({"web.de", "mail.com", "gmx.com", "gmx.net", "gmx.de"}),
    "comcast": frozenset({"comcast.net", "xfinity.com"}),
    "orange": frozenset({"orange.fr", "wanadoo.fr"}),
    "att": frozenset({"att.net", "sbcglobal.net", "bellsouth.net", "prodigy.net"}),
    "verizon": frozenset({"verizon.net"}),
    "yandex": frozenset({"yandex.ru", "yandex.com", "ya.ru"}),
    "mail.ru": frozenset({"mail.ru", "bk.ru", "inbox.ru", "list.ru"}),
    "proton": frozenset({"protonmail.com", "proton.me", "pm.me", "protonmail.ch"}),
    "zoho": frozenset({"zoho.com", "zohomail.com"}),
    "tencent": frozenset({"qq.com", "foxmail.com"}),
    "netease": frozenset({"163.com", "126.com", "yeah.net"}),
    "lycos": frozenset({"lycos.com"}),
    "juno": frozenset({"juno.com", "netzero.net"}),
}

# Providers that register their name under many country suffixes
# (yahoo.co.uk, yahoo.com.tw, hotmail.fr, aol.de, gmx.at): the first label of
# the registered domain names the family. Generic words ("live", "mail") are
# deliberately not here; their country domains are listed one by one above.
PROVIDER_LABELS: dict[str, str] = {
    "yahoo": "yahoo",
    "hotmail": "microsoft",
    "outlook": "microsoft",
    "aol": "aol",
    "gmx": "united-internet",
}

_FAMILY_OF_DOMAIN: dict[str, str] = {
    domain: family for family, domains in PROVIDER_DOMAINS.items() for domain in domains
}


# Asked for every unauthenticated submission (shown.freemail_unauthenticated) with the
# same few domains all day; bounded, as a bot's domains are new every time.
@functools.lru_cache(maxsize=4096)
def provider_family(registered_domain: str) -> str | None:
    """The provider family of a registered domain ("hotmail.co.uk" -> "microsoft"), or None."""
    domain = registered_domain.lower().rstrip(".")
    family = _FAMILY_OF_DOMAIN.get(domain)
    if family is not None:
        return family
    first_label = domain.split(".", 1)[0]
    if "." in domain:
        return PROVIDER_LABELS.get(first_label)
    return None
