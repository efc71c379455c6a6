"""Where digests go: an SMTP relay (the abuse desk's mailbox) and an HTTP webhook (ticketing).

Each channel's `send()` either succeeds or raises `TransientError` (try again
later: relay down, 4xx, 5xx from the webhook) or `PermanentError` (retrying
cannot help: 5xx from the relay, 4xx from the webhook). The notifier decides
about retries; channels only classify.
"""

from __future__ import annotations

import email.policy
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

from extrusion import __version__
from extrusion.notify.digest import Digest

SMTP_PERMANENT = 500  # reply codes from here up are permanent (RFC 5321 4.2.1)
HTTP_CLIENT_ERROR = 400
HTTP_SERVER_ERROR = 500
HTTP_RETRYABLE = frozenset({408, 425, 429})  # client errors that mean "later"
USER_AGENT = f"extrusion/{__version__}"
# RFC 5322 allows 998 characters a line: headers (a subject is at most 200) are
# never folded, which some parsers read back with a stray leading space; longer
# body lines make set_content() pick quoted-printable.
MAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)


class ChannelError(Exception):
    """A failed send, phrased for the log (never containing credentials)."""


class TransientError(ChannelError):
    pass


class PermanentError(ChannelError):
    pass


class Channel(Protocol):
    name: str

    def send(self, digest: Digest) -> None: ...


class EmailChannel:
    """Sends the digest text (and its JSON as an attachment) through an SMTP relay."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        mail_from: str,
        mail_to: tuple[str, ...],
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.mail_from, self.mail_to = mail_from, mail_to

    def message(self, digest: Digest) -> EmailMessage:
        msg = EmailMessage(policy=MAIL_POLICY)
        msg["From"] = self.mail_from
        msg["To"] = ", ".join(self.mail_to)
        msg["Subject"] = digest.subject
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=self.mail_from.rpartition("@")[2])
        # RFC 3834: a machine wrote this; auto-responders must not answer it.
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(digest.text)
        msg.add_attachment(
            digest.json.encode("utf-8"),
            maintype="application",
            subtype="json",
            filename="extrusion-digest.json",
        )
        return msg

    def send(self, digest: Digest) -> None:
        msg = self.message(digest)
        where = f"SMTP relay {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = PermanentError if all(c >= SMTP_PERMANENT for c in codes) else TransientError
            replies = _smtp_replies(exc.recipients)
            raise error(f"{where} refused every recipient: {replies}") from None
        except smtplib.SMTPResponseException as exc:
            error = PermanentError if exc.smtp_code >= SMTP_PERMANENT else TransientError
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            raise error(f"{where} answered {exc.smtp_code} {reply}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"{where}: {exc.__class__.__name__}: {exc}") from None
        if refused:
            # Some recipients took it; retrying would duplicate it for them.
            raise PermanentError(f"{where} refused some recipients: {_smtp_replies(refused)}")


def _smtp_replies(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{rcpt}: {code} {reply.decode('utf-8', 'replace')}" for rcpt, (code, reply) in
        refused.items()
    )


def redact(url: str) -> str:
    """The URL without user:password@ and query string, which may carry secrets."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured; following it would turn POST into GET."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


class WebhookChannel:
    """POSTs the digest's JSON to a URL."""

    name = "webhook"

    def __init__(self, url: str, token: str = "", timeout: float = 10.0) -> None:
        self.url, self.timeout = url, timeout
        self._token = token
        self._shown = redact(url)
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, digest: Digest) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(
            self.url, data=digest.json.encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            code = exc.code
            permanent = HTTP_CLIENT_ERROR <= code < HTTP_SERVER_ERROR and code not in HTTP_RETRYABLE
            error = PermanentError if permanent or code < HTTP_CLIENT_ERROR else TransientError
            raise error(f"webhook {self._shown} answered HTTP {code} {exc.reason}") from None
        except (OSError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"webhook {self._shown}: {reason}") from None
