"""Composition root of the registry process: storage, service, auth and routes, wired once."""

from __future__ import annotations

import os
from dataclasses import dataclass

from berth.registry.client import Credentials

from . import policy as policy_mod
from .auth import BasicAuthorizer, HtpasswdAuth, TokenAuthorizer
from .proxy import PullThrough
from .router import Authorizer, Router
from .routes_blobs import register as register_blobs
from .routes_manifests import register as register_manifests
from .routes_token import register as register_token
from .service import Config, Registry
from .tokens import Signer

ISSUER = "berth-registry"


@dataclass
class AuthConfig:
    htpasswd: str | None = None
    policy: str | None = None
    token: bool = False  # Bearer tokens from our /token endpoint instead of Basic on every request
    token_realm: str = ""  # the realm to advertise; default: this server's /token
    token_service: str = "berth-registry"
    token_key: str | None = None  # file holding the HMAC secret; default: a fresh one per process
    tls: bool = False
    proxy: str = ""  # upstream registry URL: run as its pull-through cache
    proxy_username: str = ""
    proxy_password: str = ""


def _token_key(path: str | None) -> bytes:
    if path is None:
        return os.urandom(32)
    with open(path, "rb") as f:
        return f.read().strip()


def build(config: Config, auth: AuthConfig | None = None) -> tuple[Registry, Router]:
    auth = auth or AuthConfig()
    registry = Registry(config)
    pol = policy_mod.PolicyFile(auth.policy) if auth.policy else None
    users = HtpasswdAuth(auth.htpasswd) if auth.htpasswd else None
    authorizer: Authorizer | None = None
    token_auth: TokenAuthorizer | None = None
    if auth.token:
        signer = Signer(_token_key(auth.token_key), ISSUER, auth.token_service)
        token_auth = TokenAuthorizer(signer, users, pol, auth.token_realm, auth.tls)
        authorizer = token_auth
    elif users is not None:
        authorizer = BasicAuthorizer(users, pol)
    elif pol is not None:
        raise ValueError("--policy needs --htpasswd (or --token): it names users")
    router = Router(authorizer)
    proxy = PullThrough(registry, auth.proxy, Credentials(auth.proxy_username, auth.proxy_password)) \
        if auth.proxy else None
    register_manifests(router, registry, proxy)
    register_blobs(router, registry, proxy)
    if token_auth is not None:
        register_token(router, token_auth)
    return registry, router
