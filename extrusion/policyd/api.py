"""The operator HTTP API (twisted.web): senders, operator actions, metrics, health.

    GET  /healthz                       no token needed; 200 ok / 503 degraded
    GET  /metrics                       Prometheus text format
    GET  /senders?state=held&limit=N    senders, worst first
    GET  /senders/KEY                   state, score, reasons, evidence, audit trail
    POST /senders/KEY/VERB              VERB: release | hold | allow | block
                                        body {"reason": "...", "who": "..."}

Everything but /healthz needs `Authorization: Bearer TOKEN` when [api] token
is set; a request with a body is checked when its headers arrive, before the
body is read (`apirequest`). Store reads and operator actions block, so they run in a worker
thread; the reactor only routes and serialises.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import threads
from twisted.python.failure import Failure
from twisted.web import resource, server

from extrusion.keys import SenderKeyError, operator_key
from extrusion.policyd.apirequest import MAX_BODY_BYTES, GuardedRequest, too_deep
from extrusion.policyd.metrics import CONTENT_TYPE, Metrics
from extrusion.policyd.responder import EngineSource
from extrusion.scoring.events import OperatorVerb, State, StateChange
from extrusion.scoring.helo import safe_text
from extrusion.scoring.operator import MAX_REASON_CHARS, OperatorError, operator_request

log = logging.getLogger("extrusion.policyd.api")

FORM = b"application/x-www-form-urlencoded"  # what `curl -d` sends
FORM_MAX_FIELDS = 20

# twisted.web's Request is largely unannotated; calls on it are plain Any to mypy.
Request = Any

# HTTP status codes, named for the reader.
OK = 200
BAD_REQUEST = 400
UNAUTHORIZED = 401
NOT_FOUND = 404
METHOD_NOT_ALLOWED = 405
PAYLOAD_TOO_LARGE = 413
UNSUPPORTED_MEDIA = 415
INTERNAL_ERROR = 500
UNAVAILABLE = 503

#: An API client idle this long (seconds) is disconnected (twisted.web's default is 12 hours).
SITE_TIMEOUT_SECONDS = 60
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 10000

VERBS = {
    "release": OperatorVerb.RELEASE,
    "hold": OperatorVerb.HOLD,
    "allow": OperatorVerb.ALLOW,
    "block": OperatorVerb.BLOCK,
}


class SenderDirectory(Protocol):
    """Read access to senders as the store has them (blocking; called in a thread)."""

    def list_senders(self, state: State | None, limit: int) -> list[dict[str, Any]]: ...

    def sender_detail(self, key: str) -> dict[str, Any] | None: ...


class Health(Protocol):
    def health(self) -> dict[str, Any]:
        """{"status": "ok" | "degraded", ...details}."""


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def state_change_json(change: StateChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "time": change.time, "sender": change.sender, "old": change.old.value,
        "new": change.new.value, "score": change.score, "reason": change.reason,
        "who": change.who,
    }


class OperatorApi(resource.Resource):
    """One leaf resource that routes on the path; small enough not to need a tree."""

    isLeaf = True

    def __init__(
        self,
        *,
        source: EngineSource,
        directory: Callable[[], SenderDirectory | None],
        health: Health,
        metrics: Metrics,
        token: str,
        clock: Callable[[], float],
        reactor: Any,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source = source
        self.directory = directory
        self.health_source = health
        self.metrics = metrics
        self.token = token.encode()
        self.clock = clock
        self.reactor = reactor

    # --- plumbing -----------------------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        try:
            result = self._route(request)
        except ApiError as exc:
            return self._json(request, exc.code, {"error": str(exc)})
        if isinstance(result, bytes):
            return result
        result.addCallbacks(
            lambda body: self._finish(request, OK, body),
            lambda f: self._failed(request, f),
        )
        return server.NOT_DONE_YET

    def _finish(self, request: Request, code: int, body: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.write(self._json(request, code, body))
        request.finish()

    def _failed(self, request: Request, failure: Failure) -> None:
        if failure.check(ApiError):  # type: ignore[no-untyped-call]
            exc = failure.value
            assert isinstance(exc, ApiError)
            self._finish(request, exc.code, {"error": str(exc)})
            return
        log.error("api %s failed: %s", safe_text(request.uri),
                  safe_text(failure.getErrorMessage()))
        self.metrics.store_errors.labels("api").inc()
        self._finish(request, UNAVAILABLE, {"error": "store unavailable, try again"})

    @staticmethod
    def _json(request: Request, code: int, body: Any) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        if code == UNAUTHORIZED:
            request.setHeader(b"www-authenticate", b'Bearer realm="extrusion"')
        return json.dumps(body, sort_keys=True, default=str).encode() + b"\n"

    def authorised(self, request: Request) -> bool:
        """Whether the request carries the token (also asked before a body is read)."""
        if not self.token:
            return True
        header = request.getHeader(b"authorization") or b""
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)

    # --- routes -------------------------------------------------------------------------

    def _route(self, request: Request) -> Any:
        path = [p.decode("utf-8", "replace") for p in request.postpath or []]
        while path and path[-1] == "":
            path.pop()
        method = request.method
        if path == ["healthz"]:
            self._allow(method, b"GET")
            health = self.health_source.health()
            code = OK if health.get("status") == "ok" else UNAVAILABLE
            return self._json(request, code, health)
        if not self.authorised(request):
            raise ApiError(UNAUTHORIZED, "missing or wrong bearer token")
        if path == ["metrics"]:
            self._allow(method, b"GET")
            request.setHeader(b"content-type", CONTENT_TYPE.encode())
            return self.metrics.render()
        if path[:1] == ["senders"]:
            if len(path) == 1:
                self._allow(method, b"GET")
                return self._list(request)
            if len(path) == 2:
                self._allow(method, b"GET")
                return self._detail(path[1])
            if len(path) == 3:
                self._allow(method, b"POST")
                return self._operate(request, path[1], path[2])
        raise ApiError(NOT_FOUND, "no such resource")

    @staticmethod
    def _allow(method: bytes, wanted: bytes) -> None:
        if method != wanted and not (wanted == b"GET" and method == b"HEAD"):
            raise ApiError(METHOD_NOT_ALLOWED, f"use {wanted.decode()}")

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def _store(self) -> SenderDirectory:
        directory = self.directory()
        if directory is None:
            raise ApiError(UNAVAILABLE, "store unavailable, try again")
        return directory

    def _list(self, request: Request) -> Any:
        args = request.args or {}
        state: State | None = None
        if raw := args.get(b"state"):
            try:
                state = State(raw[0].decode())
            except ValueError:
                allowed = ", ".join(s.value for s in State)
                raise ApiError(BAD_REQUEST, f"state must be one of {allowed}") from None
        limit = DEFAULT_LIST_LIMIT
        if raw := args.get(b"limit"):
            try:
                limit = int(raw[0])
            except ValueError:
                raise ApiError(BAD_REQUEST, "limit must be an integer") from None
            if not 1 <= limit <= MAX_LIST_LIMIT:
                raise ApiError(BAD_REQUEST, f"limit must be 1..{MAX_LIST_LIMIT}")
        directory = self._store()

        def query() -> dict[str, Any]:
            senders = directory.list_senders(state, limit)
            return {"senders": senders, "count": len(senders)}

        return self._in_thread(query)

    def _detail(self, key: str) -> Any:
        with contextlib.suppress(SenderKeyError):  # no sender has a malformed key: 404 below
            key = operator_key(key)  # GET /senders/ip:2001:DB8::0001 finds ip:2001:db8::1
        directory = self._store()

        def query() -> dict[str, Any]:
            detail = directory.sender_detail(key)
            if detail is None:
                raise ApiError(NOT_FOUND, f"no sender {key!r}")
            return detail

        return self._in_thread(query)

    def _operate(self, request: Request, key: str, verb_name: str) -> Any:
        verb = VERBS.get(verb_name)
        if verb is None:
            raise ApiError(NOT_FOUND, f"unknown action {verb_name!r}; use {', '.join(VERBS)}")
        body = self._body(request)
        reason = body.get("reason")
        who = body.get("who", "api")
        if not isinstance(reason, str) or not reason.strip():
            raise ApiError(
                BAD_REQUEST, 'a non-empty "reason" is required (it goes in the audit trail)'
            )
        if not isinstance(who, str) or not who.strip():
            raise ApiError(BAD_REQUEST, '"who" must be a non-empty string')
        try:
            # Checked and bounded as the CLI's are; malformed keys are refused even while
            # the store is down.
            action = operator_request(verb, key, reason, who, self.clock(), operator_key)
        except OperatorError as exc:
            raise ApiError(BAD_REQUEST, str(exc)) from None
        engine = self.source.engine
        if engine is None:
            raise ApiError(UNAVAILABLE, "store unavailable, try again")

        def apply() -> dict[str, Any]:
            try:
                change = engine.operator(action)
            except SenderKeyError as exc:  # e.g. a customer the config does not define
                raise ApiError(BAD_REQUEST, str(exc)) from None
            sender = change.sender if change is not None else key
            log.info("api %s %s by %s: %s", verb.value, safe_text(sender),
                     safe_text(action.who), safe_text(action.why, MAX_REASON_CHARS))
            return {"sender": sender, "action": verb.value, "change": state_change_json(change)}

        return self._in_thread(apply)

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        ctype = (request.getHeader(b"content-type") or b"application/json").split(b";")[0]
        ctype = ctype.strip().lower()
        if ctype not in (b"application/json", FORM):
            raise ApiError(UNSUPPORTED_MEDIA, "send application/json")
        content = request.content
        if content is not None:
            content.seek(0)  # twisted.web has read a form body once already, for args
        raw = content.read(MAX_BODY_BYTES + 1) if content is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(PAYLOAD_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
        # `curl -d '{"reason": ...}'` labels its JSON as a form: read it as JSON; a real
        # form (`curl -d reason=... -d who=...`) gives its reason and who.
        if ctype == FORM and not raw.lstrip().startswith(b"{"):
            return _form_fields(raw)
        if too_deep(raw):
            raise ApiError(BAD_REQUEST, "body nests too deeply")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(BAD_REQUEST, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(BAD_REQUEST, "body must be a JSON object")
        return body


def _form_fields(raw: bytes) -> dict[str, Any]:
    """reason= and who= of a url-encoded form (the first of each; others ignored)."""
    try:
        fields = urllib.parse.parse_qs(raw.decode("utf-8"), strict_parsing=bool(raw),
                                       max_num_fields=FORM_MAX_FIELDS)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(BAD_REQUEST, "body is neither JSON nor a form (reason=...&who=...)"
                       ) from None
    return {name: fields[name][0] for name in ("reason", "who") if name in fields}


def make_site(api: OperatorApi) -> server.Site:
    # A connection that sends nothing for SITE_TIMEOUT_SECONDS is closed.
    site = server.Site(  # type: ignore[no-untyped-call]
        api, requestFactory=GuardedRequest, timeout=SITE_TIMEOUT_SECONDS
    )
    site.displayTracebacks = False  # never show internals to a client
    return site
