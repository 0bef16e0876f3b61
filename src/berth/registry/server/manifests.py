"""What a pushed manifest means: its media type, what it references, its subject (pure logic).

A registry must refuse a manifest whose blobs or child manifests it does not hold; this module
says which those are, the service checks them against storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import manifest_invalid
from .names import DIGEST_RE

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass
class ParsedManifest:
    media_type: str
    blobs: list[str] = field(default_factory=list)  # must be in the repository
    children: list[str] = field(default_factory=list)  # manifests that must be in the repository
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    def referrer_descriptor(self, digest: str, size: int) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": digest, "size": size}
        if self.artifact_type:
            desc["artifactType"] = self.artifact_type
        if self.annotations:
            desc["annotations"] = self.annotations
        return desc


def _media_type_of(doc: dict[str, Any], content_type: str | None) -> str:
    body_type = doc.get("mediaType")
    header = (content_type or "").split(";", 1)[0].strip()
    if header in ("", "application/json", "application/octet-stream"):
        header = ""
    if body_type is not None and not isinstance(body_type, str):
        raise manifest_invalid("mediaType must be a string")
    if body_type and header and body_type != header:
        raise manifest_invalid(f"Content-Type {header} does not match the manifest's mediaType {body_type}")
    if body_type or header:
        return body_type or header
    # No declared type (allowed for OCI): the shape decides.
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc:
        return OCI_MANIFEST
    raise manifest_invalid("cannot tell the manifest's media type")


def _descriptor(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise manifest_invalid(f"{where}: descriptor must be an object")
    digest = obj.get("digest")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise manifest_invalid(f"{where}: invalid digest {digest!r}")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise manifest_invalid(f"{where}: invalid size {size!r}")
    if not isinstance(obj.get("mediaType", ""), str):
        raise manifest_invalid(f"{where}: mediaType must be a string")
    return obj


def parse(body: bytes, content_type: str | None) -> ParsedManifest:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise manifest_invalid(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise manifest_invalid("manifest must be a JSON object")
    if doc.get("schemaVersion") != 2:
        raise manifest_invalid("only schemaVersion 2 manifests are supported")
    media_type = _media_type_of(doc, content_type)
    out = ParsedManifest(media_type)
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise manifest_invalid("artifactType must be a string")
    annotations = doc.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise manifest_invalid("annotations must be an object")
    out.annotations = annotations
    if media_type in IMAGE_TYPES:
        config = _descriptor(doc.get("config"), "config")
        out.blobs.append(config["digest"])
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise manifest_invalid("layers must be a list")
        for i, layer in enumerate(layers):
            layer = _descriptor(layer, f"layers[{i}]")
            # Non-distributable (foreign) layers live elsewhere, at their `urls`.
            if not layer.get("urls"):
                out.blobs.append(layer["digest"])
        out.artifact_type = artifact_type or config.get("mediaType")
    elif media_type in INDEX_TYPES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise manifest_invalid("manifests must be a list")
        for i, child in enumerate(manifests):
            out.children.append(_descriptor(child, f"manifests[{i}]")["digest"])
        out.artifact_type = artifact_type
    else:
        raise manifest_invalid(f"unsupported manifest media type: {media_type}")
    if doc.get("subject") is not None:
        out.subject = _descriptor(doc["subject"], "subject")["digest"]
    return out
