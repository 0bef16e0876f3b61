"""HTTP to one registry: keep-alive connections per thread, and the auth challenge handled once.

A request that answers 401 is retried after answering the challenge: Basic with the credentials,
or Bearer with a token fetched from the challenge's realm for the scopes the session needs. The
token is then sent up front on later requests, so a transfer pays the round trip only once.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import IO

from . import tls
from .auth import Challenge, Credentials, parse_challenges
from .endpoint import Endpoint
from .errors import RegistryError, from_response

Body = bytes | IO[bytes] | None
USER_AGENT = "berth/0.1 (distribution client)"
TIMEOUT = 120.0
# a layer body goes out in reads of this size (http.client's default, 8 KiB, costs a Python
# round per 8 KiB: a third of a push's CPU)
BLOCKSIZE = 1 << 20


class Session:
    """Thread-safe: each thread gets its own connection; auth state is shared under a lock."""

    def __init__(self, endpoint: Endpoint, creds: Credentials, scopes: Iterable[str] = (),
                 certs_dir: str | None = tls.DEFAULT_CERTS_DIR, schemes: dict[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.creds = creds
        self.scopes = sorted(set(scopes))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._authorization: str | None = None
        self._token_expires = 0.0
        self._challenge: Challenge | None = None
        # An insecure registry gets HTTPS without verification if it speaks TLS, else HTTP;
        # which one is found out on first use (or known from `schemes`, shared across sessions).
        self._certs_dir = certs_dir
        self._ssl_ctx: ssl.SSLContext | None = None
        self._schemes = schemes if schemes is not None else {}
        known = self._schemes.get(endpoint.host)
        self._base: str | None = endpoint.base if endpoint.secure else (
            f"{known}://{endpoint.host}" if known else None)

    @property
    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_ctx is None:
            self._ssl_ctx = tls.context(self.endpoint.name, self._certs_dir, verify=self.endpoint.secure)
        return self._ssl_ctx

    # --- connections ------------------------------------------------------------------------
    def _conn(self, host: str, secure: bool) -> http.client.HTTPConnection:
        conns: dict[tuple[str, bool], http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        conn = conns.get((host, secure))
        if conn is None:
            if secure:
                conn = http.client.HTTPSConnection(host, timeout=TIMEOUT, context=self._ssl, blocksize=BLOCKSIZE)
            else:
                conn = http.client.HTTPConnection(host, timeout=TIMEOUT, blocksize=BLOCKSIZE)
            conns[(host, secure)] = conn
        return conn

    def _drop(self, host: str, secure: bool) -> None:
        conns = self._local.__dict__.get("conns", {})
        conn = conns.pop((host, secure), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self._local.__dict__.get("conns", {}).values():
            conn.close()
        self._local.__dict__["conns"] = {}

    def _send(self, method: str, url: str, headers: Mapping[str, str], body: Body) -> http.client.HTTPResponse:
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "https"
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            conn = self._conn(parts.netloc, secure)
            try:
                send_file = getattr(body, "sendfile_to", None)
                if send_file is None:
                    conn.request(method, target, body=body, headers={"User-Agent": USER_AGENT, **headers})
                else:
                    # a layer from a file: sendfile(2), the GIL released for all of it (a 1 MiB
                    # read+send loop makes push threads queue for the GIL after every syscall)
                    conn.putrequest(method, target)
                    for key, value in {"User-Agent": USER_AGENT, **headers}.items():
                        conn.putheader(key, value)
                    conn.endheaders()
                    send_file(conn.sock)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a kept-alive connection the server closed meanwhile: once more on a new one
                self._drop(parts.netloc, secure)
                rewindable = body is None or isinstance(body, bytes) or hasattr(body, "seek")
                if attempt or not rewindable:
                    raise
                if body is not None and not isinstance(body, bytes):
                    body.seek(0)
            except OSError:
                self._drop(parts.netloc, secure)
                raise
        raise AssertionError("unreachable")

    # --- requests ---------------------------------------------------------------------------
    def url(self, path: str) -> str:
        if self._base is None:
            found = tls.speaks_tls(self.endpoint.host, self._ssl)
            scheme = "https" if found else "http"
            if found is not None:  # nothing answered: try again next time
                self._schemes[self.endpoint.host] = scheme
            self._base = f"{scheme}://{self.endpoint.host}"
        return self._base + path

    def request(self, method: str, path_or_url: str, headers: Mapping[str, str] | None = None,
                body: Body = None, ok: Iterable[int] = (200,), context: str = "") -> http.client.HTTPResponse:
        """Send, answering an auth challenge once; a status not in `ok` raises RegistryError
        (the body is read). The caller reads the returned response to its end."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        hdrs = dict(headers or {})
        auth = self._current_authorization()
        if auth and self._same_host(url):
            hdrs["Authorization"] = auth
        try:
            resp = self._send(method, url, hdrs, body)
        except OSError as e:
            raise RegistryError(f"{context or method + ' ' + url}: {e}", 502) from None
        if resp.status == 401 and self._same_host(url):
            header = resp.getheader("WWW-Authenticate") or ""
            err = resp.read()
            if not self._answer(header, url):
                if self.creds.anonymous and any(c.scheme == "basic" for c in parse_challenges(header)):
                    # dockerd's words when a Basic registry is asked without a login
                    raise RegistryError("no basic auth credentials", 401, "UNAUTHORIZED")
                raise from_response(401, err, context)
            hdrs["Authorization"] = self._current_authorization() or ""
            if body is not None and not isinstance(body, bytes):
                body.seek(0)
            resp = self._send(method, url, hdrs, body)
        if resp.status not in tuple(ok):
            raise from_response(resp.status, resp.read(), context)
        return resp

    def _same_host(self, url: str) -> bool:
        return urllib.parse.urlsplit(url).netloc == self.endpoint.host

    def _current_authorization(self) -> str | None:
        with self._lock:
            if self._authorization and self._token_expires and time.time() > self._token_expires:
                self._authorization = None
                if self._challenge is not None:
                    self._fetch_token(self._challenge)
            return self._authorization

    def _answer(self, header: str, url: str) -> bool:
        """Set the Authorization for the challenge; False if it cannot be answered."""
        challenges = parse_challenges(header)
        with self._lock:
            for ch in challenges:
                if ch.scheme == "bearer" and ch.params.get("realm"):
                    self._challenge = ch
                    self._fetch_token(ch)
                    return True
            for ch in challenges:
                if ch.scheme == "basic":
                    if self.creds.anonymous or not self.creds.username:
                        return False
                    if self._authorization == self.creds.basic():
                        return False  # these credentials were just refused
                    self._authorization = self.creds.basic()
                    return True
        return False

    def _fetch_token(self, ch: Challenge) -> None:
        if self.creds.registry_token:
            self._authorization = "Bearer " + self.creds.registry_token
            return
        params: list[tuple[str, str]] = []
        if ch.params.get("service"):
            params.append(("service", ch.params["service"]))
        scopes = list(self.scopes)
        for s in (ch.params.get("scope") or "").split(" "):
            if s and s not in scopes:
                scopes.append(s)
        params += [("scope", s) for s in scopes]
        realm = ch.params["realm"]
        headers: dict[str, str] = {}
        if self.creds.identity_token:
            # OAuth2 refresh-token grant, as docker does with an identity token
            form = urllib.parse.urlencode([("grant_type", "refresh_token"), ("client_id", "docker"),
                                           ("refresh_token", self.creds.identity_token), *params]).encode()
            resp = self._send("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, form)
        else:
            if self.creds.username:
                headers["Authorization"] = self.creds.basic()
                params += [("account", self.creds.username), ("client_id", "docker")]
            sep = "&" if "?" in realm else "?"
            resp = self._send("GET", realm + sep + urllib.parse.urlencode(params), headers, None)
        body = resp.read()
        if resp.status != 200:
            err = from_response(resp.status, body, f'Get "{realm}"')
            if resp.status == 401:
                err = RegistryError(f'Get "{realm}": unauthorized: incorrect username or password', 401,
                                    "UNAUTHORIZED")
            raise err
        try:
            data = json.loads(body)
        except ValueError:
            raise RegistryError(f"token service {realm} answered no JSON", 502) from None
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryError(f"token service {realm} answered no token", 502)
        self._authorization = "Bearer " + str(token)
        expires = int(data.get("expires_in") or 60)
        self._token_expires = time.time() + max(expires - 10, 10)
