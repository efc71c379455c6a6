"""What the milter remembers of one SMTP session and of the message in progress.

Pure bookkeeping, no pymilter and no engine: values arrive raw from the MTA,
are cleaned and bounded here, and leave as `Connection` and `Submission`
events. A message that is aborted (RSET, a refused MAIL, a dropped
connection) is simply forgotten: nothing half-built reaches the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from extrusion.milter import constants as c
from extrusion.milter.text import clean
from extrusion.scoring.events import Connection, Headers, Submission
from extrusion.scoring.forwarding import MAX_RECEIVED_CHARS, MAX_RECEIVED_KEPT, received_origin


def bare_address(raw: str | bytes | None) -> str:
    """`<user@example.com>` -> `user@example.com`; `<>` -> "" (the null sender).

    Tolerates what clients really send: no brackets, spaces, a source route
    (`<@relay:user@example.com>`); the result is escaped and bounded.
    """
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "surrogateescape")
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.startswith("@") and ":" in text:  # RFC 5321 source route, obsolete but legal
        text = text.split(":", 1)[1]
    return clean(text, c.MAX_ADDRESS_CHARS)


@dataclass
class Message:
    """The envelope and the few header facts of the message being received."""

    sender: str
    envelope_from: str
    queue_id: str = ""
    recipients: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    received_count: int = 0
    received: list[str] = field(default_factory=list)  # the topmost few, cut short
    message_id: str = ""
    size: int = 0
    forged_marks: int = 0  # X-Extrusion headers the client sent itself
    tried: list[str] = field(default_factory=list)  # every RCPT, refused ones too

    def add_tried(self, rcpt: str) -> None:
        """A recipient asked for, whatever the answer: HELO = RCPT TO domain is judged
        by these even when every one of them was refused."""
        if len(self.tried) < c.MAX_RECIPIENTS:
            self.tried.append(rcpt)

    def add_address(self, rcpt: str) -> None:
        """A recipient, already cleaned by `bare_address`."""
        if len(self.recipients) < c.MAX_RECIPIENTS:
            self.recipients.append(rcpt)

    def add_header(self, name: str, value: str | bytes | None) -> None:
        # Counted like the MTA stores it: "Name: value\r\n".
        self.size += len(name) + 4 + (len(value) if value is not None else 0)
        key = name.strip().lower()
        if key == c.HEADER_RECEIVED:
            self.received_count += 1
            if len(self.received) < MAX_RECEIVED_KEPT:
                self.received.append(clean(value, MAX_RECEIVED_CHARS))
        elif key in c.HEADER_FIELDS:
            # The first occurrence is the one the nearest filter wrote; keep it.
            self.headers.setdefault(c.HEADER_FIELDS[key], clean(value, c.MAX_HEADER_CHARS).strip())
        elif key == c.HEADER_MESSAGE_ID and not self.message_id:
            self.message_id = clean(value, c.MAX_HEADER_CHARS).strip()
        elif key == c.HEADER_EXTRUSION.lower():
            self.forged_marks += 1

    def add_body(self, length: int) -> None:
        self.size += length

    def summary(self, client_addr: str = "", client_name: str = "") -> Headers:
        """The kept headers; whether the Received chain shows forwarding is judged
        against the connecting client (`scoring/forwarding.py`)."""
        origin = received_origin(self.received, client_addr, client_name)
        return Headers(received_count=self.received_count, forwarded_from=origin,
                       **self.headers)


@dataclass
class Session:
    """One SMTP connection: the client, its HELOs in order, and the current message."""

    client_addr: str = ""
    client_name: str = ""
    helos: list[str] = field(default_factory=list)
    sasl_user: str = ""
    connection_recorded: bool = False
    seen_connect: bool = False  # CONNECT reached us (pymilter drops an undecodable one)
    message: Message | None = None
    # HELO names found to resolve to the client (milter/heloconfirm.py).
    confirmed: list[str] = field(default_factory=list)
    # What the engine has judged the HELOs by already: (HELOs, MAIL FROM domain,
    # recipient domains). Each is sent once, so a client repeating itself adds nothing.
    judged: set[tuple[tuple[str, ...], str, tuple[str, ...]]] = field(default_factory=set)

    def connected(self, name: str | bytes | None, addr: str | bytes | None) -> None:
        self.seen_connect = True
        self.client_name = clean(name, c.MAX_NAME_CHARS)
        self.client_addr = clean(addr, c.MAX_NAME_CHARS)

    def add_helo(self, raw: str | bytes | None) -> None:
        """Every HELO/EHLO argument, in order, up to MAX_HELOS of them."""
        if len(self.helos) < c.MAX_HELOS:
            self.helos.append(clean(raw, c.MAX_HELO_CHARS).strip())


    def add_helo_copy(self, raw: str | bytes) -> None:
        """The MTA's copy of the last HELO; kept only if it is not the last one seen."""
        helo = clean(raw, c.MAX_HELO_CHARS).strip()
        if helo and (not self.helos or self.helos[-1] != helo) and len(self.helos) < c.MAX_HELOS:
            self.helos.append(helo)

    def distinct_helos(self) -> tuple[str, ...]:
        """The different HELOs so far, in order, as the judgement compares them."""
        return tuple(dict.fromkeys(h.lower().rstrip(".") for h in self.helos))

    def add_confirmed(self, names: tuple[str, ...]) -> None:
        for name in names:
            if name not in self.confirmed and len(self.confirmed) < c.MAX_HELOS:
                self.confirmed.append(name)

    def first_judgement(self, envelope_from: str = "", recipients: tuple[str, ...] = ()) -> bool:
        """True the first time the HELOs are to be judged with this envelope: a new HELO,
        a new MAIL FROM domain or new recipient domains make it new again."""
        domains = tuple(sorted({r.rpartition("@")[2].lower() for r in recipients}))
        key = (self.distinct_helos(), envelope_from.rpartition("@")[2].lower(),
               domains[:c.MAX_JUDGED_DOMAINS])
        if key in self.judged or len(self.judged) >= c.MAX_JUDGEMENTS or not self.helos:
            return False
        self.judged.add(key)
        return True

    def start_message(self, sender: str, envelope_from: str, queue_id: str = "") -> Message:
        self.message = Message(sender=sender, envelope_from=envelope_from, queue_id=queue_id)
        return self.message

    def end_message(self) -> None:
        self.message = None

    def connection(self, now: float, mta: str, envelope_from: str = "",
                   recipients: tuple[str, ...] = ()) -> Connection:
        return Connection(
            time=now,
            client_addr=self.client_addr,
            client_name=self.client_name,
            helos=tuple(self.helos),
            sasl_user=self.sasl_user,
            mta=mta,
            envelope_from=envelope_from,
            recipients=recipients,
            helo_confirmed=tuple(self.confirmed),
        )

    def submission(self, msg: Message, now: float, mta: str) -> Submission:
        return Submission(
            time=now,
            sender=msg.sender,
            queue_id=msg.queue_id,
            envelope_from=msg.envelope_from,
            recipients=tuple(msg.recipients),
            size=msg.size,
            mta=mta,
            client_addr=self.client_addr,
            client_name=self.client_name,
            helos=tuple(self.helos),
            helo_confirmed=tuple(self.confirmed),
            headers=msg.summary(self.client_addr, self.client_name),
            message_id=msg.message_id,
        )
