"""Distribution (registry v2 / OCI distribution) client: pure protocol, no engine.

It speaks HTTP to a registry: the auth challenge (Basic, or Bearer tokens from the realm),
manifests and indexes by tag or digest, blobs (HEAD, GET with digest verification by the caller's
sink, cross-repository mount, monolithic upload) and manifest PUT. It never touches the image or
content stores: the daemon's pull/push orchestration owns that, and hands bytes in and out.
"""

from .auth import Credentials, decode_registry_auth
from .endpoint import Endpoint, resolve
from .errors import RegistryError
from .repository import Repository

__all__ = ["Credentials", "Endpoint", "RegistryError", "Repository", "decode_registry_auth", "resolve"]
