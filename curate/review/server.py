"""`curate review serve`: a small local web server over the review store (standard library only).

Safety, since every record is attacker-controlled text and the page changes state:
- it binds 127.0.0.1 unless told otherwise, and binding anywhere else requires a token (sent once
  as ?token=..., then kept in an HttpOnly, SameSite=Strict cookie, or as a Bearer header);
- on loopback without a token, the Host header must name loopback, which defeats DNS rebinding;
- every POST needs the page's CSRF token (a per-server secret) and, when the browser sends one,
  an Origin of this server;
- pages carry a Content-Security-Policy that allows only this page's own nonce'd script and style,
  on top of escaping every field.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from curate.errors import UsageError
from curate.review.render import page
from curate.review.store import DECISIONS, Store

MAX_BODY = 64 << 10
COOKIE = "curate_review_token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, store: Store, host: str, port: int, token: str | None, reviewer: str | None):
        if not is_loopback(host) and not token:
            raise UsageError(
                f"binding {host} exposes the queue beyond this machine: pass --token "
                "(or set CURATE_REVIEW_TOKEN), or bind 127.0.0.1"
            )
        super().__init__((host, port), Handler)
        self.store = store
        self.token = token
        self.reviewer = reviewer
        self.csrf = secrets.token_urlsafe(32)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def allowed_hosts(self) -> set[str] | None:
        """Host headers accepted without a token: loopback names at our port. None: any."""
        if self.token:
            return None
        port = self.server_address[1]
        return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "curate-review"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal is the reviewer's
        pass

    # -- plumbing ------------------------------------------------------------------------------

    def _send(
        self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None, nonce: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        csp = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
        if nonce:
            csp += f"; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'"
        self.send_header("Content-Security-Policy", csp)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        if "application/json" in (self.headers.get("Accept") or ""):
            self._send(status, orjson.dumps({"error": message}), "application/json")
        else:
            self._send(status, f"{status} {message}\n".encode(), "text/plain; charset=utf-8")

    def _cookie_token(self) -> str | None:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        return None

    def _authorised(self, query: dict[str, list[str]]) -> bool | str:
        """True when allowed; a token string when it came in the URL (to be set as a cookie)."""
        allowed = self.server.allowed_hosts()
        if allowed is not None and (self.headers.get("Host") or "") not in allowed:
            return False
        token = self.server.token
        if not token:
            return True
        auth = self.headers.get("Authorization") or ""
        for offered in (self._cookie_token(), auth[7:] if auth.startswith("Bearer ") else None):
            if offered and hmac.compare_digest(offered, token):
                return True
        offered = (query.get("token") or [None])[0]
        if offered and hmac.compare_digest(offered, token):
            return offered
        return False

    def _gate(self, query: dict[str, list[str]]) -> bool:
        ok = self._authorised(query)
        if ok is False:
            self._error(HTTPStatus.FORBIDDEN, "forbidden: wrong host or missing token")
            return False
        if isinstance(ok, str):  # move the token from the URL into a cookie, and the URL clean
            self._send(
                HTTPStatus.SEE_OTHER,
                b"",
                "text/plain",
                {
                    "Location": urlsplit(self.path).path or "/",
                    "Set-Cookie": f"{COOKIE}={ok}; HttpOnly; SameSite=Strict; Path=/",
                },
            )
            return False
        return True

    # -- routes --------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._gate(query):
            return
        if parts.path in {"/", "/index.html"}:
            nonce = secrets.token_urlsafe(16)
            params = {k: v[0] for k, v in query.items() if v}
            with self.server.lock:
                body = page(self.server.store, params, self.server.csrf, nonce).encode()
            self._send(HTTPStatus.OK, body, "text/html; charset=utf-8", nonce=nonce)
        elif parts.path == "/api/stats":
            with self.server.lock:
                stats = self.server.store.stats()
            self._send(HTTPStatus.OK, orjson.dumps(stats), "application/json")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        if not self._gate({}):
            return
        origin = self.headers.get("Origin")
        if origin and origin != "null":
            host = urlsplit(origin).netloc
            if host != (self.headers.get("Host") or ""):
                return self._error(HTTPStatus.FORBIDDEN, "cross-origin request refused")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if length > MAX_BODY:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(form.get("csrf", ""), self.server.csrf):
            return self._error(HTTPStatus.FORBIDDEN, "missing or stale CSRF token: reload the page")
        decision = form.get("decision", "")
        if decision not in DECISIONS:
            return self._error(HTTPStatus.BAD_REQUEST, "decision must be accept or reject")
        store = self.server.store
        try:
            with self.server.lock:
                if parts.path == "/decide":
                    ids = [int(form.get("id", ""))]
                elif parts.path == "/bulk":
                    kind, value = form.get("kind", ""), form.get("value", "")
                    if kind not in {"trigger", "cluster", "reason", "source"}:
                        return self._error(HTTPStatus.BAD_REQUEST, "bulk needs kind trigger, cluster, reason or source")
                    ids = store.ids_where(status=form.get("status") or "open", **{kind: value})
                else:
                    return self._error(HTTPStatus.NOT_FOUND, "not found")
                done = store.decide(
                    ids, decision, reviewer=self.server.reviewer, note=form.get("note") or None, via="web"
                )
                stats = store.stats()
                status = store.get(ids[0])["status"] if len(ids) == 1 else None
        except (ValueError, UsageError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        if "application/json" in (self.headers.get("Accept") or ""):
            return self._send(
                HTTPStatus.OK,
                orjson.dumps(
                    {"decided_now": done, "status": status, "decided": stats["decided"], "items": stats["items"]}
                ),
                "application/json",
            )
        target = form.get("next") or "./"
        if not target.startswith("./"):  # only our own page: no open redirect
            target = "./"
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": target})


def make_server(
    store: Store, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, reviewer: str | None = None
) -> ReviewServer:
    return ReviewServer(store, host, port, token, reviewer)
