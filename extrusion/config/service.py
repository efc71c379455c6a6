"""The sections of the config file the daemons and commands read: where to listen, what
to read, how to report and notify. Each is a frozen dataclass whose annotations drive
validation (`extrusion.config.build`); `metadata["check"]` names an extra check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from extrusion.config.checks import checked


@dataclass(frozen=True)
class General:
    mode: Literal["smarthost", "mx"] = "smarthost"
    monitor_only: bool = False
    hostname: str = ""
    own_domains: tuple[str, ...] = ()
    own_networks: tuple[str, ...] = field(default=(), metadata=checked("networks"))
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class StoreSection:
    # "" = the default place: DATA_DIR, or the checkout's var/ (see `place_store`).
    url: str = field(default="", metadata=checked("store_url"))
    refresh_seconds: float = 3.0
    spool_dir: str = ""
    busy_timeout_ms: int = 5000
    retention_days: float = 30.0
    # Per-message rows are kept this long, then folded into per-sender days
    # (scoring/retention.py); at least a day, the longest window a limit counts. 0 = never.
    detail_days: float = 7.0
    flush_batch: int = 5000
    shared_limits: bool = True
    # The failure window too (scoring/failwindow.py), for a sender failing this often here.
    shared_failures: bool = True
    shared_failures_from: int = 3

    def __post_init__(self) -> None:
        if self.shared_failures_from < 1:
            raise ValueError("shared_failures_from must be at least 1")
        if self.detail_days != 0 and not 1 <= self.detail_days <= 3650:
            raise ValueError("detail_days must be 0 (never fold) or from 1 to 3650")


@dataclass(frozen=True)
class MilterSection:
    enabled: bool = True
    # Postfix's queue directory, where a chrooted smtpd reaches it as
    # unix:extrusion/milter.sock; a unix socket, because any local process that can reach
    # libmilter can crash it, and only the postfix group may reach this one.
    socket: str = field(default="unix:/var/spool/postfix/extrusion/milter.sock",
                        metadata=checked("milter_socket"))
    # A unix socket's permissions, set as soon as libmilter has made it; "" keeps the group.
    socket_mode: int = 0o660
    socket_group: str = "postfix"
    timeout: int = 30
    on_error: Literal["accept", "tempfail"] = "accept"
    add_header: bool = False
    reject_bad_helo: bool = False
    rate_limits: bool = False
    engine_timeout: float = 1.0
    # Postfix only: "watched" attaches the milter to the sessions of clients the engine
    # has an eye on (smtpd_milter_maps asks extrusion's socketmap at attach_listen per
    # client address), "always" to every session. Sendmail always attaches it.
    attach: Literal["always", "watched"] = "watched"
    attach_listen: str = field(default="tcp:10041:interface=127.0.0.1",
                               metadata=checked("endpoint"))
    # What the other clients get instead of smtpd_milters: "" = no milter at all
    # (DISABLE); list your other milters here (e.g. OpenDKIM's) to keep them attached.
    attach_others: str = ""
    # How old the list of watched clients may be when a lookup is answered (seconds).
    attach_refresh_seconds: float = 1.0
    attach_max_connections: int = 1000

    def __post_init__(self) -> None:
        if not 0 <= self.socket_mode <= 0o777:
            raise ValueError("socket_mode must be a file mode such as 0o660")
        if not 0 < self.engine_timeout < self.timeout:
            raise ValueError("engine_timeout must be more than 0 and less than timeout")
        if not 0 < self.attach_refresh_seconds <= 60:
            raise ValueError("attach_refresh_seconds must be more than 0 and at most 60")
        if self.attach_max_connections < 1:
            raise ValueError("attach_max_connections must be at least 1")
        if any(ch in self.attach_others for ch in "\r\n\0") or \
                self.attach_others.strip().upper() == "DISABLE":
            raise ValueError('attach_others: one line of Postfix milter addresses ("" for none)')

    @property
    def attach_watched(self) -> bool:
        """Whether Postfix should attach the milter to watched clients only.

        add_header, rate_limits and reject_bad_helo act on every message, and only the
        milter acts on them: with any of them on, the milter is attached everywhere
        whatever `attach` says (and `extrusion serve` serves no socketmap)."""
        return self.attach == "watched" and not (
            self.add_header or self.rate_limits or self.reject_bad_helo)


@dataclass(frozen=True)
class Policyd:
    enabled: bool = True
    listen: str = field(default="tcp:10040:interface=127.0.0.1", metadata=checked("endpoint"))
    allowed_clients: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1/128"), metadata=checked("networks")
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
    listen: str = field(default="tcp:8026:interface=127.0.0.1", metadata=checked("endpoint"))
    token: str = ""


@dataclass(frozen=True)
class Maillog:
    source: Literal["none", "file", "syslog"] = "file"
    # "auto": Postfix's maillog_file (postconf), else /var/log/mail.log; at feed start.
    path: str = "auto"
    syslog_listen: str = field(
        default="udp:5514:interface=127.0.0.1", metadata=checked("syslog_endpoint")
    )
    format: Literal["auto", "postfix", "sendmail", "exim"] = "auto"
    timezone: str = field(default="", metadata=checked("timezone"))
    start_at: Literal["end", "beginning"] = "end"
    poll_seconds: float = 1.0
    submission_wait_seconds: float = 60.0
    queue_id_ttl_seconds: float = 10800.0
    max_queue_ids: int = 200000
    handoff_relays: tuple[str, ...] = field(default=(), metadata=checked("networks"))
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
class ReportSection:
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
class Flows:
    """Port-25 flow records from the ISP's sFlow collector (pmacct's print plugin, JSON lines):
    customers sending straight to the Internet (extrusion/flows/)."""

    enabled: bool = False
    path: str = "/var/lib/pmacct/port25.json"
    start_at: Literal["end", "beginning"] = "end"
    poll_seconds: float = 5.0
    sampling_rate: int = 1
    smarthosts: tuple[str, ...] = field(default=(), metadata=checked("networks"))
    allow_networks: tuple[str, ...] = field(default=(), metadata=checked("networks"))
    allow_customers: tuple[str, ...] = ()
    window_seconds: float = 86400.0
    min_destinations: int = 10
    min_networks: int = 5
    max_sources: int = 100000
    export_path: str = ""
    export_format: Literal["nft", "list"] = "nft"
    nft_table: str = "inet extrusion"
    nft_set: str = "direct_smtp"
    # [general] mode = "mx" only: the same address's mail at our MX annotates its flows.
    mx_annotation: bool = True
    mx_escalation: float = 2.0
    mx_clean_packets_per_hour: int = 5000

    def __post_init__(self) -> None:
        if not 1.0 <= self.mx_escalation <= 10.0:
            raise ValueError("mx_escalation must be from 1 (no escalation) to 10")
        if self.mx_clean_packets_per_hour < 0:
            raise ValueError("mx_clean_packets_per_hour must not be negative")
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
