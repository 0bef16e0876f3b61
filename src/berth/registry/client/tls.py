"""TLS to registries as dockerd sets it up: system CAs plus `<certs-dir>/<host[:port]>/`.

In that directory (docker's `/etc/docker/certs.d/HOST/`), every `*.crt` is a trusted CA and a
`NAME.cert` + `NAME.key` pair is a client certificate. An insecure registry (loopback, or named by
`--insecure-registry`) is first tried over HTTPS without verification and then over plain HTTP,
as dockerd tries its endpoints.
"""

from __future__ import annotations

import glob
import os
import socket
import ssl

DEFAULT_CERTS_DIR = "/etc/docker/certs.d"


def context(registry: str, certs_dir: str | None, verify: bool = True) -> ssl.SSLContext:
    if verify:
        ctx = ssl.create_default_context()  # loads the system CAs: ~50 ms, so only when verifying
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    directory = os.path.join(certs_dir, registry) if certs_dir else None
    if directory and os.path.isdir(directory):
        for ca in sorted(glob.glob(os.path.join(directory, "*.crt"))):
            ctx.load_verify_locations(cafile=ca)
        for cert in sorted(glob.glob(os.path.join(directory, "*.cert"))):
            key = cert[: -len(".cert")] + ".key"
            if os.path.exists(key):
                ctx.load_cert_chain(cert, key)
    return ctx


def speaks_tls(host: str, ctx: ssl.SSLContext, timeout: float = 3.0) -> bool | None:
    """Whether `host[:port]` completes a TLS handshake (with `ctx`): False when it answers
    something else (plain HTTP), None when nothing answers at all."""
    name, _, port = host.rpartition(":") if host.count(":") == 1 or host.startswith("[") else (host, "", "")
    name = name.strip("[]") or host
    try:
        raw = socket.create_connection((name, int(port) if port else 443), timeout=timeout)
    except (OSError, ValueError):
        return None
    try:
        with raw, ctx.wrap_socket(raw, server_hostname=name):
            return True
    except OSError:  # ssl.SSLError is an OSError
        return False
