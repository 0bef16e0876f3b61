"""The API's DistributionBackend: pull, push and the login check, over the registry client.

Credentials come per request (`X-Registry-Auth`, or the `/auth` body) and are never stored by
the daemon: the CLI keeps them in ~/.docker/config.json, as docker does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from berth.common import reference
from berth.common.errors import InvalidParameter, Unauthorized
from berth.images.store import ImageStore
from berth.registry.client import RegistryError, decode_registry_auth
from berth.registry.client.auth import credentials_from_json
from berth.registry.client.endpoint import normalize_server

from .distribution import BlobSources, Emit, RegistrySettings, run_with_progress
from .events import EventBus
from .pull import Puller, parse_pull_ref, wants_all_tags
from .push import Pusher


class DistributionAPI:
    def __init__(self, store: ImageStore, events: EventBus, settings: RegistrySettings, tmp_dir: str) -> None:
        self.store = store
        self.events = events
        self.settings = settings
        sources = BlobSources(store.db)
        self.puller = Puller(store, sources, settings)
        self.pusher = Pusher(store, sources, settings, tmp_dir)

    def pull(self, image: str, tag: str, platform: str, auth: str | None) -> AsyncIterator[dict[str, Any]]:
        ref = parse_pull_ref(image, tag)
        creds = decode_registry_auth(auth)
        if wants_all_tags(image, tag):
            untagged = reference.Reference(ref.domain, ref.path, None, None)

            def work_all(emit: Emit) -> None:
                self.puller.pull_all_tags(untagged, platform, creds, emit)
                self.events.publish("image", "pull", untagged.name, {"name": untagged.name})

            return run_with_progress(work_all)

        def work(emit: Emit) -> None:
            image_id = self.puller.pull(ref, platform, creds, emit)
            self.events.publish("image", "pull", image_id, {"name": str(ref)})

        return run_with_progress(work)

    async def inspect(self, name: str, auth: str | None) -> dict[str, Any]:
        ref = parse_pull_ref(name, "")
        return await asyncio.to_thread(self.puller.inspect, ref, decode_registry_auth(auth))

    def push(self, name: str, tag: str, auth: str | None) -> AsyncIterator[dict[str, Any]]:
        creds = decode_registry_auth(auth)

        def work(emit: Emit) -> None:
            self.pusher.push(name, tag, creds, emit)
            shown = reference.familiar(reference.normalize(f"{name}:{tag}" if tag else name))
            self.events.publish("image", "push", shown, {"name": shown})

        return run_with_progress(work)

    async def login(self, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._login, body)

    def _login(self, body: dict[str, Any]) -> dict[str, Any]:
        creds = credentials_from_json(body)
        server = normalize_server(str(body.get("serveraddress") or ""))
        endpoint = self.settings.endpoint(server)
        if not creds.username and not creds.identity_token:
            raise InvalidParameter("Error: Non-null Username Required")
        session = self.settings.session(endpoint, creds)
        url = f"{endpoint.base}/v2/"
        try:
            resp = session.request("GET", "/v2/", ok=(200,))
            resp.read()
        except RegistryError as e:
            if e.http_status == 401:
                if "Get " in e.message:
                    raise Unauthorized(e.message) from None
                raise Unauthorized(f"login attempt to {url} failed with status: 401 Unauthorized") from None
            raise
        finally:
            session.close()
        return {"Status": "Login Succeeded", "IdentityToken": ""}
