"""etcd v3 through its HTTP/JSON gateway (etcd >= 3.4: paths under /v3/).

Keys and values are bytes on the wire, base64 in the JSON; int64 fields arrive as strings and
zero-valued fields are left out (grpc-gateway's encoding), so every read has a default.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# gRPC codes worth trying another member for: Unavailable, DeadlineExceeded, Unknown ("leader changed").
_RETRY_CODES = {14, 4, 2}
_RETRY_MESSAGES = ("etcdserver: leader changed", "etcdserver: no leader", "etcdserver: request timed out",
                   "etcdserver: not capable", "etcdserver: server stopped", "transport is closing")


class EtcdError(Exception):
    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint answered."""


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def prefix_end(prefix: bytes | str) -> bytes:
    """The range_end that selects every key starting with `prefix`."""
    raw = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # all keys


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @classmethod
    def decode(cls, d: dict[str, Any]) -> KeyValue:
        return cls(_unb64(d.get("key")), _unb64(d.get("value")), int(d.get("create_revision", 0)),
                   int(d.get("mod_revision", 0)), int(d.get("version", 0)), int(d.get("lease", 0)))

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass(frozen=True)
class WatchEvent:
    type: str  # PUT or DELETE
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True)
class LeaderKey:
    """What a campaign returns: proof of leadership, needed to resign or proclaim."""

    name: bytes
    key: bytes
    rev: int
    lease: int

    def wire(self) -> dict[str, str]:
        return {"name": _b64(self.name), "key": _b64(self.key), "rev": str(self.rev), "lease": str(self.lease)}


class Stream:
    """A long-lived response (watch, observe, campaign): JSON messages one per line. close() ends it
    from another thread too (the blocked reader sees the connection go)."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self.closed = False

    def messages(self) -> Iterator[dict[str, Any]]:
        while not self.closed:
            try:
                line = self._resp.readline()
            except (OSError, ValueError, http.client.HTTPException):
                return
            if not line:
                return
            if not line.strip():
                continue
            msg = json.loads(line)
            if "error" in msg:
                err = msg["error"]
                raise EtcdError(err.get("message", str(err)), int(err.get("grpc_code", err.get("code", 0)) or 0))
            yield msg.get("result", msg)

    def close(self) -> None:
        self.closed = True
        sock = self._conn.sock
        if sock is not None:
            try:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._conn.close()


class EtcdClient:
    def __init__(self, endpoints: Sequence[str] | str, timeout: float = 5.0) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValueError("no etcd endpoint given")
        self.endpoints = [self._parse(e.strip()) for e in endpoints]
        self.timeout = timeout
        self._current = 0

    @staticmethod
    def _parse(url: str) -> tuple[str, int]:
        if "://" not in url:
            url = "http://" + url
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            raise ValueError(f"unsupported etcd endpoint {url!r} (http:// only)")
        return u.hostname or "127.0.0.1", u.port or 2379

    # --- transport ------------------------------------------------------------------------------

    def _open(self, path: str, body: dict[str, Any], timeout: float | None
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """POST to the current member, moving on to the next when it cannot serve; tries each once
        per round for up to `self.timeout` seconds."""
        data = json.dumps(body).encode()
        deadline = time.monotonic() + self.timeout
        last = "no endpoint tried"
        while True:
            for _ in range(len(self.endpoints)):
                host, port = self.endpoints[self._current]
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
                try:
                    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    last = f"{host}:{port}: {e}"
                    self._current = (self._current + 1) % len(self.endpoints)
                    continue
                if resp.status == 200:
                    return conn, resp
                raw = resp.read()
                conn.close()
                err = _error(raw, resp.status)
                if err.code in _RETRY_CODES and any(m in err.message for m in _RETRY_MESSAGES) \
                        or resp.status in (502, 503):
                    last = f"{host}:{port}: {err.message}"
                    self._current = (self._current + 1) % len(self.endpoints)
                    continue
                raise err
            if time.monotonic() >= deadline:
                raise EtcdUnavailable(f"etcd unavailable ({last})", 14)
            time.sleep(0.1)

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        conn, resp = self._open(path, body, self.timeout)
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise EtcdUnavailable(f"etcd: {e}", 14) from e
        finally:
            conn.close()
        return json.loads(raw) if raw.strip() else {}

    def _stream(self, path: str, body: dict[str, Any]) -> Stream:
        conn, resp = self._open(path, body, None)
        return Stream(conn, resp)

    # --- kv -------------------------------------------------------------------------------------

    def get(self, key: bytes | str) -> KeyValue | None:
        kvs = self.range(key)
        return kvs[0] if kvs else None

    def range(self, key: bytes | str, range_end: bytes | None = None, prefix: bool = False,
              limit: int = 0) -> list[KeyValue]:
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            range_end = prefix_end(key)
        if range_end is not None:
            body["range_end"] = _b64(range_end)
        if limit:
            body["limit"] = str(limit)
        out = self._call("/v3/kv/range", body)
        return [KeyValue.decode(kv) for kv in out.get("kvs", [])]

    def get_prefix(self, prefix: bytes | str) -> list[KeyValue]:
        return self.range(prefix, prefix=True)

    def put(self, key: bytes | str, value: bytes | str, lease: int = 0) -> int:
        """Returns the store's revision after the put."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        out = self._call("/v3/kv/put", body)
        return int(out.get("header", {}).get("revision", 0))

    def delete(self, key: bytes | str, prefix: bool = False) -> int:
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        return int(self._call("/v3/kv/deleterange", body).get("deleted", 0))

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> tuple[bool, list[dict[str, Any]]]:
        """A raw transaction; build its parts with the `cmp_*` and `op_*` helpers below."""
        out = self._call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(out.get("succeeded", False)), out.get("responses", [])

    def create(self, key: bytes | str, value: bytes | str, lease: int = 0) -> bool:
        """Put only if the key does not exist."""
        ok, _ = self.txn([cmp_create_revision(key, 0)], [op_put(key, value, lease)])
        return ok

    def compare_and_swap(self, key: bytes | str, value: bytes | str, mod_revision: int, lease: int = 0) -> bool:
        """Put only if the key was last changed at `mod_revision` (0: does not exist)."""
        ok, _ = self.txn([cmp_mod_revision(key, mod_revision)], [op_put(key, value, lease)])
        return ok

    def compare_and_delete(self, key: bytes | str, mod_revision: int) -> bool:
        ok, _ = self.txn([cmp_mod_revision(key, mod_revision)], [op_delete(key)])
        return ok

    # --- leases ---------------------------------------------------------------------------------

    def lease_grant(self, ttl: int) -> int:
        return int(self._call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def lease_keepalive(self, lease: int) -> int:
        """Renew once; returns the TTL now left (0: the lease is gone)."""
        conn, resp = self._open("/v3/lease/keepalive", {"ID": str(lease)}, self.timeout)
        try:
            line = resp.readline()
        except (OSError, http.client.HTTPException) as e:
            raise EtcdUnavailable(f"etcd: {e}", 14) from e
        finally:
            conn.close()
        msg = json.loads(line) if line.strip() else {}
        if "error" in msg:
            raise EtcdError(msg["error"].get("message", "keepalive failed"))
        return int(msg.get("result", {}).get("TTL", 0))

    def lease_ttl(self, lease: int) -> int:
        """Seconds left, -1 when the lease does not exist."""
        return int(self._call("/v3/lease/timetolive", {"ID": str(lease)}).get("TTL", -1))

    def lease_revoke(self, lease: int) -> None:
        try:
            self._call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if "not found" not in e.message:
                raise

    # --- watch ----------------------------------------------------------------------------------

    def watch(self, key: bytes | str, prefix: bool = False, start_revision: int = 0,
              prev_kv: bool = False) -> tuple[Stream, Iterator[list[WatchEvent]]]:
        """Watch a key or prefix; yields the events of each response. Close the stream to stop."""
        req: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            req["range_end"] = _b64(prefix_end(key))
        if start_revision:
            req["start_revision"] = str(start_revision)
        if prev_kv:
            req["prev_kv"] = True
        stream = self._stream("/v3/watch", {"create_request": req})

        def events() -> Iterator[list[WatchEvent]]:
            for msg in stream.messages():
                if msg.get("canceled"):
                    raise EtcdError(msg.get("cancel_reason", "watch canceled"))
                evs = [WatchEvent(e.get("type", "PUT"), KeyValue.decode(e.get("kv", {})),
                                  KeyValue.decode(e["prev_kv"]) if e.get("prev_kv") else None)
                       for e in msg.get("events", [])]
                if evs:
                    yield evs

        return stream, events()

    # --- election -------------------------------------------------------------------------------

    def campaign(self, name: bytes | str, value: bytes | str, lease: int) -> LeaderKey:
        """Block until this lease holds the election's leadership (the lease must be kept alive)."""
        body = {"name": _b64(name), "value": _b64(value), "lease": str(lease)}
        conn, resp = self._open("/v3/election/campaign", body, None)
        try:
            out = json.loads(resp.read())
        finally:
            conn.close()
        ld = out["leader"]
        return LeaderKey(_unb64(ld.get("name")), _unb64(ld.get("key")), int(ld.get("rev", 0)),
                         int(ld.get("lease", 0)))

    def leader(self, name: bytes | str) -> KeyValue | None:
        try:
            out = self._call("/v3/election/leader", {"name": _b64(name)})
        except EtcdError as e:
            if "no leader" in e.message:
                return None
            raise
        return KeyValue.decode(out["kv"]) if out.get("kv") else None

    def observe(self, name: bytes | str) -> tuple[Stream, Iterator[KeyValue]]:
        """The election's leader now and at every change (close the stream to stop)."""
        stream = self._stream("/v3/election/observe", {"name": _b64(name)})

        def leaders() -> Iterator[KeyValue]:
            for msg in stream.messages():
                if msg.get("kv"):
                    yield KeyValue.decode(msg["kv"])

        return stream, leaders()

    def proclaim(self, leader: LeaderKey, value: bytes | str) -> None:
        self._call("/v3/election/proclaim", {"leader": leader.wire(), "value": _b64(value)})

    def resign(self, leader: LeaderKey) -> None:
        self._call("/v3/election/resign", {"leader": leader.wire()})

    # --- cluster --------------------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        return list(self._call("/v3/cluster/member/list", {}).get("members", []))


def _error(raw: bytes, status: int) -> EtcdError:
    try:
        d = json.loads(raw)
        return EtcdError(str(d.get("message") or d.get("error") or raw[:200]), int(d.get("code", 0)))
    except ValueError:
        return EtcdError(f"etcd answered HTTP {status}: {raw[:200]!r}")


# Transaction parts (etcd's Compare and RequestOp in JSON).

def cmp_create_revision(key: bytes | str, rev: int) -> dict[str, Any]:
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(rev)}


def cmp_mod_revision(key: bytes | str, rev: int) -> dict[str, Any]:
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(rev)}


def cmp_value(key: bytes | str, value: bytes | str) -> dict[str, Any]:
    return {"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(value)}


def op_put(key: bytes | str, value: bytes | str, lease: int = 0) -> dict[str, Any]:
    put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def op_delete(key: bytes | str, prefix: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"key": _b64(key)}
    if prefix:
        d["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": d}


def op_range(key: bytes | str) -> dict[str, Any]:
    return {"request_range": {"key": _b64(key)}}
