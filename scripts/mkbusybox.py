#!/usr/bin/env python3
"""Write a deterministic ``busybox`` image as a docker-archive tarball.

No registry is reachable from the machines berth is developed on, so tests and benchmarks build
their base image from the host's static busybox (Debian ``busybox-static``).  The archive uses the
layout ``docker save`` writes since docker 25: an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/...``) plus docker's own ``manifest.json`` and ``repositories`` pointing into the
same blobs, so both ``docker load`` (old and new daemons), skopeo and berth accept it.

Every timestamp, owner and ordering is fixed, so the same busybox binary gives byte-identical
output, and therefore the same image ID, on every machine.

Usage: mkbusybox.py [-t busybox:latest] [--busybox /usr/bin/busybox] [--alpine-compat] -o OUT.tar
       (``-o -`` writes to stdout; -t may be repeated)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# 2024-01-01T00:00:00Z: any constant works; it only has to be the same everywhere.
FIXED_EPOCH = 1704067200
FIXED_CREATED = "2024-01-01T00:00:00Z"

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# platform.machine() spelling -> (GOARCH, variant) as used in OCI image configs.
GO_ARCH: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
}

# Directories of the root filesystem: (path, mode).  /tmp is sticky and world-writable, /root is
# private, as on any distribution; the others are the usual mount points and PATH entries.
DIRECTORIES: list[tuple[str, int]] = [
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("var", 0o755),
    ("var/tmp", 0o1777),
]

ETC_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
ETC_GROUP = "root:x:0:\nnogroup:x:65534:\n"

# --alpine-compat: the accounts and directories of alpine's base image that test suites written
# against alpine rely on (docker-py's exec tests run `whoami` as postgres and `pwd` in /var/opt),
# so a busybox stand-in for alpine:3.10 fails only where an engine is wrong, not the image.
ALPINE_DIRECTORIES: list[tuple[str, int]] = [
    ("lib", 0o755),
    ("media", 0o755),
    ("mnt", 0o755),
    ("opt", 0o755),
    ("run", 0o755),
    ("sbin", 0o755),
    ("srv", 0o755),
    ("usr/lib", 0o755),
    ("usr/local", 0o755),
    ("usr/local/bin", 0o755),
    ("usr/share", 0o755),
    ("var/cache", 0o755),
    ("var/empty", 0o555),
    ("var/lib", 0o755),
    ("var/local", 0o755),
    ("var/log", 0o755),
    ("var/mail", 0o755),
    ("var/opt", 0o755),
    ("var/spool", 0o755),
]
ALPINE_PASSWD = (
    "root:x:0:0:root:/root:/bin/ash\n"
    "bin:x:1:1:bin:/bin:/sbin/nologin\n"
    "daemon:x:2:2:daemon:/sbin:/sbin/nologin\n"
    "mail:x:8:12:mail:/var/mail:/sbin/nologin\n"
    "operator:x:11:0:operator:/root:/sbin/nologin\n"
    "postgres:x:70:70::/var/lib/postgresql:/bin/sh\n"
    "guest:x:405:100:guest:/dev/null:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/:/sbin/nologin\n"
)
ALPINE_GROUP = (
    "root:x:0:root\n"
    "bin:x:1:root,bin,daemon\n"
    "daemon:x:2:root,bin,daemon\n"
    "mail:x:12:mail\n"
    "postgres:x:70:\n"
    "users:x:100:\n"
    "nogroup:x:65533:\n"
    "nobody:x:65534:\n"
)

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Blob:
    data: bytes

    @property
    def hex(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hex

    @property
    def path(self) -> str:
        return "blobs/sha256/" + self.hex

    def descriptor(self, media_type: str, **extra: Any) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": self.digest, "size": len(self.data), **extra}


def canonical_json(obj: Any) -> bytes:
    # Compact separators and insertion order: stable across Python versions, and the digest of
    # the config blob is the image ID, so it must never vary.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _info(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = FIXED_EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True).stdout
    names = {line.strip() for line in out.splitlines() if line.strip()}
    # A link called busybox would replace the binary itself; sh is added even if an odd build
    # lacks it because Cmd is ["sh"].
    names.discard("busybox")
    names.add("sh")
    return sorted(names)


def build_layer(busybox: Path, alpine_compat: bool = False) -> bytes:
    binary = busybox.read_bytes()
    passwd, group = (ALPINE_PASSWD, ALPINE_GROUP) if alpine_compat else (ETC_PASSWD, ETC_GROUP)
    files: dict[str, bytes] = {"etc/group": group.encode(), "etc/passwd": passwd.encode()}
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for path, mode in DIRECTORIES + (ALPINE_DIRECTORIES if alpine_compat else []):
        entries.append((_info(path, tarfile.DIRTYPE, mode), None))
    entries.append((_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary))
    for name in applets(busybox):
        entries.append((_info(f"bin/{name}", tarfile.SYMTYPE, 0o777, linkname="busybox"), None))
    for path, data in files.items():
        entries.append((_info(path, tarfile.REGTYPE, 0o644, len(data)), data))
    # Sorted by path so the order does not depend on the applet list order or dict order.
    entries.sort(key=lambda e: e[0].name)

    buf = io.BytesIO()
    # USTAR: no PAX headers (which could carry varying atime/ctime); every name here is short.
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, content in entries:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buf.getvalue()


def busybox_version(busybox: Path) -> str:
    proc = subprocess.run([str(busybox)], capture_output=True, text=True)
    first = (proc.stdout or proc.stderr).splitlines()[:1]
    # "BusyBox v1.35.0 (Debian ...) multi-call binary." -> "BusyBox v1.35.0 (Debian ...)"
    return first[0].strip().removesuffix("multi-call binary.").strip() if first else "BusyBox"


def split_reference(ref: str) -> tuple[str, str]:
    """Split ``name[:tag]`` into (name, tag); a colon before the last slash is a registry port."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def fully_qualified(name: str) -> str:
    # containerd's io.containerd.image.name annotation carries the normalized name, as docker
    # writes it: docker.io/library/busybox rather than busybox.
    first, _, rest = name.partition("/")
    if not rest:
        return "docker.io/library/" + name
    if "." in first or ":" in first or first == "localhost":
        return name
    return "docker.io/" + name


def build_image(busybox: Path, tags: list[str], alpine_compat: bool = False) -> list[tuple[str, bytes]]:
    """Return the archive members (path, content); directories are implied by the paths."""
    machine = platform.machine().lower()
    if machine not in GO_ARCH:
        raise SystemExit(f"mkbusybox: unknown machine {machine!r}; cannot name its Go architecture")
    arch, variant = GO_ARCH[machine]

    layer = Blob(build_layer(busybox, alpine_compat))
    what = "its applet links" + (" plus alpine's accounts and directories" if alpine_compat else "")
    config_obj: dict[str, Any] = {
        "architecture": arch,
        **({"variant": variant} if variant else {}),
        "os": "linux",
        "config": {"Env": [DEFAULT_PATH_ENV], "Cmd": ["sh"]},
        "created": FIXED_CREATED,
        "history": [
            {
                "created": FIXED_CREATED,
                "created_by": f"mkbusybox.py: /bin/busybox from {busybox_version(busybox)} and {what}",
            }
        ],
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    }
    config = Blob(canonical_json(config_obj))
    manifest = Blob(
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST,
                "config": config.descriptor(MEDIA_OCI_CONFIG),
                "layers": [layer.descriptor(MEDIA_OCI_LAYER)],
            }
        )
    )

    refs = [split_reference(t) for t in tags]
    index_manifests = [
        manifest.descriptor(
            MEDIA_OCI_MANIFEST,
            annotations={
                "io.containerd.image.name": f"{fully_qualified(name)}:{tag}",
                "org.opencontainers.image.ref.name": tag,
            },
        )
        for name, tag in refs
    ]
    if not index_manifests:
        index_manifests = [manifest.descriptor(MEDIA_OCI_MANIFEST)]
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index_manifests}

    docker_manifest = [
        {
            "Config": config.path,
            "RepoTags": [f"{name}:{tag}" for name, tag in refs],
            "Layers": [layer.path],
        }
    ]
    # The legacy "repositories" file maps each tag to the top layer's ID, which in the OCI-style
    # archive is the layer blob's hex digest.
    repositories: dict[str, dict[str, str]] = {}
    for name, tag in refs:
        repositories.setdefault(name, {})[tag] = layer.hex

    members = {
        layer.path: layer.data,
        config.path: config.data,
        manifest.path: manifest.data,
        "index.json": canonical_json(index),
        "manifest.json": canonical_json(docker_manifest),
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "repositories": canonical_json(repositories),
    }
    return sorted(members.items())


def write_archive(members: list[tuple[str, bytes]], out: IO[bytes]) -> None:
    # Stream mode ("w|") so writing to a pipe (-o -) works without seeking.
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_info("blobs", tarfile.DIRTYPE, 0o755))
        tar.addfile(_info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for path, data in members:
            tar.addfile(_info(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-t", "--tag", action="append", help="image reference (repeatable; default busybox:latest)"
    )
    parser.add_argument(
        "--busybox", type=Path, default=Path("/usr/bin/busybox"), help="static busybox binary"
    )
    parser.add_argument(
        "--alpine-compat",
        action="store_true",
        help="add alpine's base accounts (e.g. postgres) and directories (e.g. /var/opt): a stand-in for alpine",
    )
    parser.add_argument("-o", "--output", required=True, help="output tarball, or - for stdout")
    args = parser.parse_args(argv)

    if not args.busybox.is_file():
        parser.error(f"{args.busybox} not found (Debian: apt-get install busybox-static)")
    members = build_image(args.busybox, args.tag or ["busybox:latest"], args.alpine_compat)
    if args.output == "-":
        write_archive(members, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        # Write beside the target and rename, so a reader never sees half an archive.
        target = Path(args.output)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            write_archive(members, f)
        tmp.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
