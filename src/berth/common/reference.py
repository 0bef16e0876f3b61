"""Docker image references: parse, normalise (docker.io/library/...), and show in familiar form."""

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_PREFIX = "library/"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_NAME_RE = re.compile(rf"^(?:({_DOMAIN})/)?({_COMPONENT}(?:/{_COMPONENT})*)$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


class InvalidReference(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name, e.g. docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Repository as docker shows it, e.g. busybox or quay.io/x/y."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith(OFFICIAL_PREFIX) and "/" not in self.path[len(OFFICIAL_PREFIX):]:
                return self.path[len(OFFICIAL_PREFIX):]
            return self.path
        return self.name

    def __str__(self) -> str:
        out = self.familiar_name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_default_tag(self) -> "Reference":
        if self.tag or self.digest:
            return self
        return Reference(self.domain, self.path, "latest", None)


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    if i == -1:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    first = name[:i]
    if "." not in first and ":" not in first and first != "localhost" and first.lower() == first:
        return DEFAULT_DOMAIN, name
    domain, rest = first, name[i + 1:]
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_PREFIX + rest
    return domain, rest


def parse(ref: str) -> Reference:
    """Parse a reference as docker's ParseNormalizedNamed does (no implicit tag)."""
    if not ref or ref != ref.strip():
        raise InvalidReference(f"invalid reference format: {ref!r}")
    name, digest = ref, None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidReference(f"invalid reference format: {ref}")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"invalid reference format: {ref}")
    if re.fullmatch(r"[a-f0-9]{64}", name):
        raise InvalidReference(
            f"invalid repository name ({name}), cannot specify 64-byte hexadecimal strings")
    domain, path = _split_domain(name)
    if path.lower() != path:
        raise InvalidReference(f"invalid reference format: repository name ({path}) must be lowercase")
    if not _NAME_RE.match(f"{domain}/{path}") or len(f"{domain}/{path}") > 255:
        raise InvalidReference(f"invalid reference format: {ref}")
    return Reference(domain, path, tag, digest)


def normalize(ref: str) -> str:
    """Canonical stored form with default tag: 'busybox' -> 'docker.io/library/busybox:latest'."""
    r = parse(ref).with_default_tag()
    out = r.name
    if r.tag:
        out += ":" + r.tag
    if r.digest:
        out += "@" + r.digest
    return out


def familiar(stored: str) -> str:
    """Stored canonical form back to what docker prints: 'busybox:latest'."""
    return str(parse(stored))
