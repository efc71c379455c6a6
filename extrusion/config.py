"""Configuration: one TOML file, validated once at start-up into frozen dataclasses.

Every key has a default here and a commented line in `conf/extrusion.toml`.
Validation is driven by the dataclass annotations, so adding a key is adding
a field; a field's `metadata["check"]` names an extra check (endpoint syntax,
CIDR, choices). Any problem raises `ConfigError` naming the file, the key and
the reason — the CLI turns it into one line and exit status 78 (EX_CONFIG).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from extrusion import postfixaddr
from extrusion.scoring.keys import override_problem

EX_CONFIG = os.EX_CONFIG
ENV_VAR = "EXTRUSION_CONFIG"
SYSTEM_PATH = Path("/etc/extrusion/extrusion.toml")
CHECKOUT_PATH = Path(__file__).resolve().parent.parent / "conf" / "extrusion.toml"
# Where an installed extrusion keeps its SQLite store and spool by default.
DATA_DIR = Path("/var/lib/extrusion")
# sqlite:///relative/path (three slashes, no fourth: not absolute; not :memory: or file:).
_SQLITE_RELATIVE = re.compile(r"(sqlite(?:\+\w+)?:///)((?![/:]|file:)[^?]+)")


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator."""

    def __init__(self, path: str | os.PathLike[str], key: str, reason: str) -> None:
        self.path = str(path)
        self.key = key
        self.reason = reason
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {reason}")


# --- value checks named by field metadata -------------------------------------------------

_TWISTED_SERVER_PREFIXES = ("tcp:", "tcp6:", "unix:", "ssl:", "systemd:")
_UDP_RE = re.compile(r"^udp:(\d{1,5})(:interface=[^:]+)?$")


# Endpoint strings separate fields with ':'; a '\:' is a colon inside a field (IPv6).
_ENDPOINT_SPLIT = re.compile(r"(?<!\\):")


def check_endpoint(value: str) -> str | None:
    """A Twisted server endpoint string (`tcp:10040:interface=127.0.0.1`, `unix:/path`)."""
    if not value.startswith(_TWISTED_SERVER_PREFIXES):
        return "not a Twisted endpoint string (expected tcp:PORT:interface=ADDR or unix:/path)"
    if value.startswith(("tcp:", "tcp6:", "ssl:")):
        port = value.split(":")[1]
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            return f"bad port {port!r} in endpoint"
    if value.startswith("unix:") and len(value) <= len("unix:"):
        return "unix endpoint without a path"
    # Twisted keeps the last of a repeated option, and a check reading the first would
    # pass `interface=127.0.0.1:interface=0.0.0.0`, which listens on every address.
    seen: set[str] = set()
    for part in _ENDPOINT_SPLIT.split(value)[1:]:
        name, eq, option = part.partition("=")
        if not eq:
            continue  # a positional field (the port, a path)
        if name in seen:
            return f"option {name!r} given twice in endpoint"
        seen.add(name)
        if (name == "interface" and value.startswith(("tcp:", "tcp6:", "ssl:"))
                and (problem := _interface_problem(option.replace("\\:", ":")))):
            return problem
    return None


def _interface_problem(interface: str) -> str | None:
    """Twisted binds `interface=` as given: a name (eth0, a host name) fails only when the
    daemon starts, with a traceback; refuse it here with the reason."""
    try:
        ipaddress.ip_address(interface)
    except ValueError:
        return (f"interface {interface!r} is not an IP address (name the address to listen "
                f"on, e.g. interface=127.0.0.1)")
    return None


def check_milter_socket(value: str) -> str | None:
    """libmilter's socket form: `inet:PORT@HOST`, `inet6:PORT@HOST` or `unix:/path`, one
    Postfix can be pointed at (`extrusion.postfixaddr`, which parses with `sockspec`)."""
    try:
        listener = postfixaddr.milter_listener(value)
    except ValueError as exc:
        return f"not a milter socket ({str(exc).removeprefix(f'milter socket {value!r}: ')})"
    if listener.kind == "unix" and not listener.path.startswith("/"):
        return "not a milter socket (a unix socket needs an absolute path)"
    return None


def check_syslog_endpoint(value: str) -> str | None:
    """`udp:PORT[:interface=ADDR]` or `unix:/path` (a datagram socket)."""
    if m := _UDP_RE.fullmatch(value):
        if int(m.group(1)) > 65535:
            return f"bad port {m.group(1)!r} in endpoint"
        return _interface_problem(m.group(2).removeprefix(":interface=")) if m.group(2) else None
    if re.fullmatch(r"unix:/.+", value):
        return None
    return "not a syslog endpoint (expected udp:PORT:interface=ADDR or unix:/path)"


def check_networks(value: tuple[str, ...]) -> str | None:
    for net in value:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            return f"{net!r} is not an IP network"
    return None


def check_store_url(value: str) -> str | None:
    if value == "":
        return None  # the default place (see `place_store`)
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
        return "store url must start with sqlite:// or postgresql+psycopg://"
    return None


def check_timezone(value: str) -> str | None:
    """An IANA zone name such as `Europe/Oslo`, or "" for the machine's local time."""
    if not value:
        return None
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r}"
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "timezone": check_timezone,
    "endpoint": check_endpoint,
    "milter_socket": check_milter_socket,
    "syslog_endpoint": check_syslog_endpoint,
    "networks": check_networks,
    "store_url": check_store_url,
}


def _check(name: str) -> dict[str, str]:
    return {"check": name}


# --- the schema ----------------------------------------------------------------------------


@dataclass(frozen=True)
class General:
    mode: Literal["smarthost", "mx"] = "smarthost"
    monitor_only: bool = False
    hostname: str = ""
    own_domains: tuple[str, ...] = ()
    own_networks: tuple[str, ...] = field(default=(), metadata=_check("networks"))
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class Store:
    # "" = the default place: DATA_DIR, or the checkout's var/ (see `place_store`).
    url: str = field(default="", metadata=_check("store_url"))
    refresh_seconds: float = 3.0
    spool_dir: str = ""
    busy_timeout_ms: int = 5000
    retention_days: float = 30.0
    flush_batch: int = 5000
    shared_limits: bool = True


@dataclass(frozen=True)
class Milter:
    enabled: bool = True
    # Postfix's queue directory, where a chrooted smtpd reaches it as
    # unix:extrusion/milter.sock; a unix socket, because any local process that can reach
    # libmilter can crash it, and only the postfix group may reach this one.
    socket: str = field(default="unix:/var/spool/postfix/extrusion/milter.sock",
                        metadata=_check("milter_socket"))
    # A unix socket's permissions, set as soon as libmilter has made it; "" keeps the group.
    socket_mode: int = 0o660
    socket_group: str = "postfix"
    timeout: int = 30
    on_error: Literal["accept", "tempfail"] = "accept"
    add_header: bool = False
    reject_bad_helo: bool = False
    rate_limits: bool = False
    engine_timeout: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.socket_mode <= 0o777:
            raise ValueError("socket_mode must be a file mode such as 0o660")
        if not 0 < self.engine_timeout < self.timeout:
            raise ValueError("engine_timeout must be more than 0 and less than timeout")


@dataclass(frozen=True)
class Policyd:
    enabled: bool = True
    listen: str = field(default="tcp:10040:interface=127.0.0.1", metadata=_check("endpoint"))
    allowed_clients: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1/128"), metadata=_check("networks")
    )
    default_action: str = "DUNNO"
    max_line_bytes: int = 2048
    max_attributes: int = 100
    idle_timeout: float = 330.0
    request_timeout: float = 10.0
    max_connection_seconds: float = 1800.0
    max_connections_per_client: int = 1000
    flush_seconds: float = 1.0
    engine_retry_seconds: float = 5.0
    drain_seconds: float = 10.0
    hold_queued_mail: bool = True
    postsuper: str = "postsuper"
    postfix_config_dir: str = ""


@dataclass(frozen=True)
class Api:
    enabled: bool = True
    listen: str = field(default="tcp:8026:interface=127.0.0.1", metadata=_check("endpoint"))
    token: str = ""


@dataclass(frozen=True)
class Maillog:
    source: Literal["none", "file", "syslog"] = "file"
    # "auto": Postfix's maillog_file (postconf), else /var/log/mail.log; at feed start.
    path: str = "auto"
    syslog_listen: str = field(
        default="udp:5514:interface=127.0.0.1", metadata=_check("syslog_endpoint")
    )
    format: Literal["auto", "postfix", "sendmail", "exim"] = "auto"
    timezone: str = field(default="", metadata=_check("timezone"))
    start_at: Literal["end", "beginning"] = "end"
    poll_seconds: float = 1.0
    submission_wait_seconds: float = 60.0
    queue_id_ttl_seconds: float = 10800.0
    max_queue_ids: int = 200000
    handoff_relays: tuple[str, ...] = field(default=(), metadata=_check("networks"))
    skip_replies: tuple[str, ...] = ("extrusion:",)
    # No delivery outcome for this long: a warning and a /healthz detail. 0 = never.
    quiet_warning_seconds: float = 3600.0
    # source = "syslog": the journal of received datagrams (in the spool directory) never
    # grows past this; when the feed is that far behind, datagrams are dropped, loudly.
    syslog_journal_max_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        if self.syslog_journal_max_bytes < 1 << 20:
            raise ValueError("syslog_journal_max_bytes must be at least 1048576 (1 MiB)")


@dataclass(frozen=True)
class Report:
    """How `extrusion report` and notification e-mails present the evidence."""

    timezone: str = "UTC"
    max_destinations: int = 6
    max_messages_per_sender: int = 200
    plot_senders: int = 12

    def __post_init__(self) -> None:
        if self.timezone not in ("UTC", "local"):
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None


@dataclass(frozen=True)
class Notify:
    """Telling the abuse desk when a sender is throttled, held or blocked (both off by default)."""

    email_enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_timeout: float = 30.0
    mail_from: str = "extrusion@localhost"
    mail_to: tuple[str, ...] = ()
    subject_prefix: str = "[extrusion]"
    webhook_enabled: bool = False
    webhook_url: str = ""
    webhook_token: str = ""
    webhook_timeout: float = 10.0
    collect_seconds: float = 60.0
    min_interval_seconds: float = 600.0
    max_reports_per_digest: int = 20
    max_attempts: int = 5
    retry_seconds: float = 30.0
    max_pending: int = 10000
    claim_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.email_enabled and not self.mail_to:
            raise ValueError("mail_to: email_enabled needs at least one address")
        for addr in (self.mail_from, *self.mail_to):
            if "@" not in addr or any(c in addr for c in " \r\n<>,"):
                raise ValueError(f"{addr!r} is not a plain mail address (user@domain)")
        if self.webhook_enabled and not re.match(r"^https?://[^\s/]+", self.webhook_url):
            raise ValueError("webhook_url: webhook_enabled needs an http:// or https:// URL")
        if not 0 < self.smtp_port <= 65535:
            raise ValueError(f"smtp_port: {self.smtp_port} is not a TCP port")


@dataclass(frozen=True)
class Scoring:
    """Thresholds of the engine; see conf/extrusion.toml for what each means."""

    window_seconds: float = 3600.0
    failure_trigger: int = 20
    half_life_seconds: float = 3600.0
    list_min_recipients: int = 10
    list_max_failure_share: float = 0.2
    watch_score: float = 10.0
    throttle_score: float = 20.0
    hold_score: float = 40.0
    block_score: float = 0.0
    release_ratio: float = 0.5
    misconfigured_failures: int = 5
    failure_share: float = 0.4
    share_min_failures: int = 8
    submission_window_seconds: float = 600.0
    envelope_domains: int = 4
    spread_domains: int = 30
    spread_factor: float = 5.0
    sasl_memory_seconds: float = 86400.0
    max_senders: int = 200_000

    def __post_init__(self) -> None:
        if self.max_senders < 0:
            raise ValueError("max_senders must be 0 (no cap) or more")
        if not 0.0 < self.failure_share <= 1.0:
            raise ValueError("failure_share must be more than 0 and at most 1")
        if self.share_min_failures < 1:
            raise ValueError("share_min_failures must be at least 1")


@dataclass(frozen=True)
class Weights:
    failed_recipient: float = 1.0
    extra_mailing_list: float = 10.0
    virus_rejection: float = 5.0
    spam_rejection: float = 1.5
    helo_anomaly: float = 10.0
    spam_verdict: float = 2.0
    own_network_inbound: float = 10.0
    throttled_refusal: float = 0.25
    freemail_unauthenticated: float = 5.0
    unauthenticated_from_sasl_address: float = 5.0
    envelope_domains: float = 10.0
    recipient_spread: float = 5.0
    direct_to_mx: float = 25.0


@dataclass(frozen=True)
class Probation:
    """A sender that departs from its own history gets a small budget until its first
    outcomes come back (extrusion/scoring/probation.py)."""

    enabled: bool = True
    recipients: int = 30
    window_seconds: float = 600.0
    release_deliveries: int = 10
    min_failures: int = 3
    max_seconds: float = 7200.0
    baseline_messages: int = 20
    volume_factor: float = 5.0
    volume_min_recipients: int = 50

    def __post_init__(self) -> None:
        if self.recipients < 1 or self.release_deliveries < 1 or self.min_failures < 1:
            raise ValueError("recipients, release_deliveries and min_failures must be at least 1")
        if self.window_seconds <= 0 or self.max_seconds <= 0:
            raise ValueError("window_seconds and max_seconds must be more than 0")


@dataclass(frozen=True)
class Limits:
    """Automatic rate limits for one class of sender; 0 means no limit."""

    messages_per_hour: int = 0
    recipients_per_hour: int = 0
    messages_per_day: int = 0
    recipients_per_day: int = 0


def _default_limits() -> Mapping[str, Limits]:
    return types.MappingProxyType({
        # A safety net while nothing speaks against a sender: a list of a few thousand
        # members posting several times an hour stays under it.
        "default": Limits(messages_per_hour=10000, recipients_per_hour=20000),
        "consumer": Limits(messages_per_hour=100, recipients_per_hour=300, messages_per_day=1000),
        "business": Limits(messages_per_hour=20000, recipients_per_hour=50000),
        # Chosen by the engine from the evidence, whatever the class (scoring/limits.py).
        "list": Limits(messages_per_hour=20000, recipients_per_hour=100000),
        "watch": Limits(messages_per_hour=500, recipients_per_hour=2000),
        "throttled": Limits(messages_per_hour=10, recipients_per_hour=20),
    })


@dataclass(frozen=True)
class Customer:
    """Maps IP ranges and SASL user patterns to `customer:NAME` and a limits class."""

    name: str
    limits: str = "default"
    networks: tuple[str, ...] = field(default=(), metadata=_check("networks"))
    sasl: tuple[str, ...] = ()


@dataclass(frozen=True)
class Override:
    """An operator's standing decision about a sender, by key, CIDR or SASL pattern."""

    match: str
    action: Literal["allow", "block", "hold", "monitor", "limits"]
    limits: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Flows:
    """Port-25 flow records from the ISP's sFlow collector (pmacct's print plugin, JSON lines):
    customers sending straight to the Internet (extrusion/flows/)."""

    enabled: bool = False
    path: str = "/var/lib/pmacct/port25.json"
    start_at: Literal["end", "beginning"] = "end"
    poll_seconds: float = 5.0
    sampling_rate: int = 1
    smarthosts: tuple[str, ...] = field(default=(), metadata=_check("networks"))
    allow_networks: tuple[str, ...] = field(default=(), metadata=_check("networks"))
    allow_customers: tuple[str, ...] = ()
    window_seconds: float = 86400.0
    min_destinations: int = 10
    min_networks: int = 5
    max_sources: int = 100000
    export_path: str = ""
    export_format: Literal["nft", "list"] = "nft"
    nft_table: str = "inet extrusion"
    nft_set: str = "direct_smtp"

    def __post_init__(self) -> None:
        if self.sampling_rate < 1:
            raise ValueError("sampling_rate must be at least 1")
        # At most a week: each source keeps a count per active hour of the window, and
        # the finding carries them.
        if not 3600 <= self.window_seconds <= 7 * 86400:
            raise ValueError("window_seconds must be from 3600 (an hour) to 604800 (a week)")
        if self.min_destinations < 1 or self.min_networks < 1 or self.max_sources < 1:
            raise ValueError("min_destinations, min_networks and max_sources must be at least 1")
        if not re.fullmatch(r"(ip|ip6|inet|arp|bridge|netdev) [A-Za-z_][A-Za-z0-9_]*",
                            self.nft_table):
            raise ValueError("nft_table must be FAMILY NAME, such as \"inet extrusion\"")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.nft_set):
            raise ValueError("nft_set must be a plain name (letters, digits, _)")


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration. `path` is where it was read from."""

    general: General = field(default_factory=General)
    store: Store = field(default_factory=Store)
    milter: Milter = field(default_factory=Milter)
    policyd: Policyd = field(default_factory=Policyd)
    api: Api = field(default_factory=Api)
    maillog: Maillog = field(default_factory=Maillog)
    report: Report = field(default_factory=Report)
    notify: Notify = field(default_factory=Notify)
    scoring: Scoring = field(default_factory=Scoring)
    weights: Weights = field(default_factory=Weights)
    probation: Probation = field(default_factory=Probation)
    flows: Flows = field(default_factory=Flows)
    limits: Mapping[str, Limits] = field(default_factory=_default_limits)
    customers: tuple[Customer, ...] = ()
    overrides: tuple[Override, ...] = ()
    path: str = field(default="", metadata={"internal": True})


# --- loading -------------------------------------------------------------------------------


def default_path() -> Path:
    """`$EXTRUSION_CONFIG`, else the checkout's `conf/extrusion.toml`, else /etc."""
    if env := os.environ.get(ENV_VAR):
        return Path(env)
    if CHECKOUT_PATH.is_file():
        return CHECKOUT_PATH
    return SYSTEM_PATH


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config file; raise ConfigError on any problem."""
    p = Path(path) if path is not None else default_path()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(p, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(p, "", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(p, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, "", f"not valid TOML: {exc}") from None
    return from_dict(data, p)


def from_dict(data: Mapping[str, Any], path: str | os.PathLike[str] = "<config>") -> Config:
    cfg: Config = _build(Config, data, str(path), "")
    _check_references(cfg, str(path))
    return dataclasses.replace(cfg, path=str(path), store=place_store(cfg.store, str(path)))


def in_checkout(path: str) -> bool:
    """Whether `path` is the config file of the checkout extrusion runs from."""
    return Path(path).is_file() and Path(path).resolve().parent == CHECKOUT_PATH.parent


def place_store(store: Store, path: str) -> Store:
    """The store's SQLite file and spool directory as absolute paths, so every command
    opens the same store from any current directory.

    "" is the default place: `<checkout>/var` for the checkout's own config (what
    `make run` uses, no root needed), else DATA_DIR. A relative path is relative to the
    checkout for the checkout's config, else to the config file's directory; a config
    that is no file (tests, `from_dict`) leaves relative paths as they are."""
    checkout = in_checkout(path)
    data_dir = CHECKOUT_PATH.parent.parent / "var" if checkout else DATA_DIR
    base: Path | None = (CHECKOUT_PATH.parent.parent if checkout
                         else Path(path).resolve().parent if Path(path).is_file() else None)
    url, spool = store.url, store.spool_dir
    if not url:
        url = f"sqlite:///{data_dir / 'extrusion.db'}"
    elif base is not None and (m := _SQLITE_RELATIVE.fullmatch(url)):
        url = f"{m.group(1)}{base / m.group(2)}"
    if not spool:
        spool = str(data_dir / "spool")
    elif base is not None and not os.path.isabs(spool):
        spool = str(base / spool)
    return dataclasses.replace(store, url=url, spool_dir=spool)


def _check_references(cfg: Config, path: str) -> None:
    """Names that must point at something defined elsewhere in the file."""
    for needed in ("default", "list", "watch", "throttled"):
        if needed not in cfg.limits:
            raise ConfigError(path, f"limits.{needed}", "this limits class must be defined")
    for i, c in enumerate(cfg.customers):
        if c.limits not in cfg.limits:
            raise ConfigError(path, f"customers[{i}].limits", f"no [limits.{c.limits}] table")
    names = {c.name for c in cfg.customers}
    for i, o in enumerate(cfg.overrides):
        if o.action == "limits" and o.limits not in cfg.limits:
            raise ConfigError(path, f"overrides[{i}].limits", f"no [limits.{o.limits}] table")
        if (problem := override_problem(o.match, names)) is not None:
            raise ConfigError(path, f"overrides[{i}].match", problem)
    for i, name in enumerate(cfg.flows.allow_customers):
        if name not in names:
            raise ConfigError(path, f"flows.allow_customers[{i}]",
                              f"{name!r} is no customer in [[customers]]")
    s = cfg.scoring
    if not 0 < s.watch_score <= s.throttle_score <= s.hold_score:
        raise ConfigError(
            path, "scoring", "need 0 < watch_score <= throttle_score <= hold_score"
        )
    if s.block_score and s.block_score < s.hold_score:
        raise ConfigError(path, "scoring.block_score", "must be 0 (never) or >= hold_score")
    if not 0 < s.release_ratio <= 1:
        raise ConfigError(path, "scoring.release_ratio", "must be in (0, 1]")


def _build(cls: type[Any], data: Any, path: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(path, prefix or "(top level)", "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            raise ConfigError(path, _join(prefix, key), "unknown key")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(path, _join(prefix, name), "missing required key")
            continue
        key = _join(prefix, name)
        value = _coerce(hints[name], data[name], path, key)
        if isinstance(value, Mapping) and f.default_factory is not dataclasses.MISSING:
            # Tables of named entries ([limits.NAME]) add to and replace the defaults.
            value = types.MappingProxyType({**f.default_factory(), **value})
        if (check := f.metadata.get("check")) and (reason := _CHECKS[check](value)):
            raise ConfigError(path, key, reason)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:  # __post_init__ cross-field checks
        raise ConfigError(path, prefix or "(top level)", str(exc)) from None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping):
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _coerce(tp: Any, value: Any, path: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(path, key, f"must be one of {allowed}, not {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        last: ConfigError | None = None
        for arm in typing.get_args(tp):
            if arm is type(None):
                continue
            try:
                return _coerce(arm, value, path, key)
            except ConfigError as exc:
                last = exc
        assert last is not None
        raise last
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, key, f"must be a list, not {_toml_type(value)}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, path, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(path, key, f"must be a table, not {_toml_type(value)}")
        _k, item_tp = typing.get_args(tp)
        return types.MappingProxyType(
            {k: _coerce(item_tp, v, path, _join(key, k)) for k, v in value.items()}
        )
    if dataclasses.is_dataclass(tp):
        return _build(typing.cast(type[Any], tp), value, path, key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, key, f"must be a number, not {_toml_type(value)}")
        if value < 0:
            raise ConfigError(path, key, "must not be negative")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, key, f"must be an integer, not {_toml_type(value)}")
        if value < 0:
            raise ConfigError(path, key, "must not be negative")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(path, key, f"must be {_type_name(tp)}, not {_toml_type(value)}")
        return value
    raise TypeError(f"config field {key} has an unsupported type {tp!r}")


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def as_dict(cfg: Any) -> dict[str, Any]:
    """The effective config as plain data (for `check-config` and reports)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("internal"):
            continue
        out[f.name] = _plain(getattr(cfg, f.name))
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
