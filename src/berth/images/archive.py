"""Image archive formats, in and out: what `docker load` reads and `docker save` writes.

Reads a docker-archive (`manifest.json`: the classic `<id>/layer.tar` form or the docker 25+ form
pointing into `blobs/sha256/`) or an OCI image layout (`oci-layout` + `index.json`), possibly
compressed as a whole. Writes the docker 25+ combined form, which both kinds of reader accept.

This module knows file formats only: it never touches the image or layer stores, and it never
loads a layer into memory (layers are streamed to and from the caller).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, cast

from berth.common import reference
from berth.common.digest import is_digest, sha256_bytes
from berth.common.digest import split as split_digest
from berth.common.errors import InvalidParameter, SystemError_
from berth.common.paths import EscapingPath, clean_relative
from berth.snapshots.decompress import open_decompressed
from berth.snapshots.tarwrite import TarWriter

__all__ = ["Archive", "ArchiveImage", "SaveImage", "SaveLayer", "open_archive", "write_archive"]

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
_MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

# JSON documents (manifests, indexes, configs) are read whole; layers never are
_MAX_JSON = 32 << 20
_MAX_LINK_HOPS = 16
_MAX_INDEX_DEPTH = 8
_COPY_CHUNK = 1 << 20


@dataclass
class ArchiveImage:
    config: bytes  # raw config JSON; the image ID is its sha256
    layers: list[str]  # archive member names of the layer blobs, bottom layer first
    repo_tags: list[str] = field(default_factory=list)  # familiar form: "busybox:latest"

    @property
    def id(self) -> str:
        return sha256_bytes(self.config)


@dataclass(frozen=True)
class SaveLayer:
    diff_id: str
    size: int  # bytes of the uncompressed tar
    open: Callable[[], BinaryIO]  # an uncompressed tar stream of exactly `size` bytes


@dataclass(frozen=True)
class SaveImage:
    config: bytes
    repo_tags: list[str]  # familiar form: "busybox:latest"
    layers: list[SaveLayer]


# --- reading -------------------------------------------------------------------------------------


def _member_parts(name: str, what: str) -> tuple[str, ...]:
    """Components of an archive path; refuses absolute paths and `..` that climbs out."""
    if not isinstance(name, str) or not name:
        raise InvalidParameter(f"invalid archive: {what} is not a path: {name!r}")
    try:
        parts = clean_relative(name)
    except EscapingPath:
        why = "is an absolute path" if name.startswith("/") else "points outside the archive"
        raise InvalidParameter(f"invalid archive: {what} {name!r} {why}") from None
    if not parts:
        raise InvalidParameter(f"invalid archive: {what} {name!r} is not a file")
    return parts


def _host_platform() -> tuple[str, str | None]:
    """(GOARCH-style architecture, variant) of this machine."""
    machine = platform.machine().lower()
    table: dict[str, tuple[str, str | None]] = {
        "x86_64": ("amd64", None), "amd64": ("amd64", None),
        "aarch64": ("arm64", None), "arm64": ("arm64", None),
        "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
        "i386": ("386", None), "i686": ("386", None),
        "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None),
    }
    return table.get(machine, (machine, None))


def _platform_score(desc: dict[str, Any], arch: str, variant: str | None) -> int:
    """How well a descriptor's platform fits this host: 0 = not at all."""
    plat = desc.get("platform")
    if not isinstance(plat, dict):
        return 0
    if plat.get("os") != "linux" or plat.get("architecture") != arch:
        return 0
    want = plat.get("variant")
    if want in (None, "", variant) or (arch == "arm64" and want == "v8"):
        return 2
    return 1  # right architecture, other variant: usable if nothing better is there


def _familiar_tag(name: str) -> str | None:
    """`name` as a docker RepoTag (familiar, with a tag), or None for a digest-only reference."""
    try:
        ref = reference.parse(name).with_default_tag()
    except reference.InvalidReference as e:
        raise InvalidParameter(f"invalid archive: bad image name {name!r}: {e}") from None
    if not ref.tag:
        return None
    return f"{ref.familiar_name}:{ref.tag}"


def _names_from_annotations(annotations: object) -> list[str]:
    if not isinstance(annotations, dict):
        return []
    full = annotations.get(ANNOTATION_IMAGE_NAME)
    if isinstance(full, str) and full:
        tag = _familiar_tag(full)
        return [tag] if tag else []
    ref_name = annotations.get(ANNOTATION_REF_NAME)
    # The OCI annotation is usually a bare tag ("latest"), which names no repository; a value
    # with a slash or colon is a full reference (skopeo and podman write "busybox:latest").
    if isinstance(ref_name, str) and ("/" in ref_name or ":" in ref_name):
        try:
            tag = _familiar_tag(ref_name)
        except InvalidParameter:
            return []
        return [tag] if tag else []
    return []


class Archive:
    """An opened image archive. `images` is known after opening; layer members are read with
    `open_member` as streams. Close it (or use `with`) to release the file."""

    def __init__(self, fileobj: IO[bytes], tar: tarfile.TarFile) -> None:
        self._file = fileobj
        self._tar = tar
        self._members: dict[tuple[str, ...], tarfile.TarInfo] = {}
        for info in tar:
            try:
                parts = _member_parts(info.name, "member")
            except InvalidParameter:
                continue  # never referenced: a path we would refuse to look up anyway
            self._members[parts] = info  # a later member of the same name wins, as in tar
        self.images: list[ArchiveImage] = []

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tar.close()
        self._file.close()

    def has(self, name: str) -> bool:
        return tuple(p for p in name.split("/") if p not in ("", ".")) in self._members

    def _resolve(self, name: str, what: str) -> tarfile.TarInfo:
        """The regular-file member `name` refers to, following in-archive links (docker's classic
        format symlinks a shared layer to its first copy) but never out of the archive."""
        parts = _member_parts(name, what)
        for _ in range(_MAX_LINK_HOPS):
            info = self._members.get(parts)
            if info is None:
                raise InvalidParameter(f"invalid archive: {what} {name!r} is missing from the archive")
            if info.isreg():
                return info
            if info.issym():
                if info.linkname.startswith("/"):
                    raise InvalidParameter(f"invalid archive: {what} {name!r} links outside the archive")
                parts = _member_parts("/".join(parts[:-1] + (info.linkname,)), what)
            elif info.islnk():
                parts = _member_parts(info.linkname, what)
            else:
                raise InvalidParameter(f"invalid archive: {what} {name!r} is not a file")
        raise InvalidParameter(f"invalid archive: {what} {name!r}: too many levels of links")

    def open_member(self, name: str) -> BinaryIO:
        """A streaming reader of one member (a layer may be compressed: this does not undo it)."""
        reader = self._tar.extractfile(self._resolve(name, "member"))
        assert reader is not None  # _resolve only returns regular files
        return cast(BinaryIO, reader)

    def _read_json_bytes(self, name: str, what: str) -> bytes:
        info = self._resolve(name, what)
        if info.size > _MAX_JSON:
            raise InvalidParameter(f"invalid archive: {what} {name!r} is too large ({info.size} bytes)")
        with self.open_member(name) as f:
            return f.read()

    @staticmethod
    def _parse_json(raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidParameter(f"invalid archive: {what} is not valid JSON: {e}") from None

    # -- docker-archive --

    def _load_docker(self) -> None:
        doc = self._parse_json(self._read_json_bytes("manifest.json", "manifest.json"), "manifest.json")
        if not isinstance(doc, list):
            raise InvalidParameter("invalid archive: manifest.json is not a list")
        by_id: dict[str, ArchiveImage] = {}
        for n, entry in enumerate(doc):
            if not isinstance(entry, dict):
                raise InvalidParameter(f"invalid archive: manifest.json entry {n} is not an object")
            config_name = entry.get("Config")
            layers = entry.get("Layers")
            tags = entry.get("RepoTags") or []
            if not isinstance(config_name, str):
                raise InvalidParameter(f"invalid archive: manifest.json entry {n} has no Config")
            if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
                raise InvalidParameter(f"invalid archive: manifest.json entry {n} has no Layers list")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise InvalidParameter(f"invalid archive: manifest.json entry {n}: RepoTags is not a list")
            config = self._read_json_bytes(config_name, "config")
            names = [t for t in (_familiar_tag(t) for t in tags) if t]
            self._add(by_id, config, [self._layer(x) for x in layers], names, config_name)

    def _layer(self, name: str) -> str:
        self._resolve(name, "layer")
        return "/".join(_member_parts(name, "layer"))

    def _add(self, by_id: dict[str, ArchiveImage], config: bytes, layers: list[str],
             tags: list[str], where: str) -> None:
        doc = self._parse_json(config, f"image config {where!r}")
        rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) and is_digest(d) for d in diff_ids):
            raise InvalidParameter(f"invalid archive: image config {where!r} has no valid rootfs.diff_ids")
        if len(diff_ids) != len(layers):
            raise InvalidParameter(
                f"invalid archive: image config {where!r} lists {len(diff_ids)} layers in rootfs.diff_ids "
                f"but the manifest has {len(layers)}")
        image_id = sha256_bytes(config)
        known = by_id.get(image_id)
        if known is None:
            known = by_id[image_id] = ArchiveImage(config=config, layers=layers, repo_tags=[])
            self.images.append(known)
        for tag in tags:
            if tag not in known.repo_tags:
                known.repo_tags.append(tag)

    # -- OCI image layout --

    def _blob_name(self, desc: object, what: str) -> str:
        digest = desc.get("digest") if isinstance(desc, dict) else None
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidParameter(f"invalid archive: {what} descriptor has no valid digest")
        algo, hexpart = split_digest(digest)
        return f"blobs/{algo}/{hexpart}"

    def _blob_json(self, desc: dict[str, Any], what: str) -> tuple[bytes, Any]:
        name = self._blob_name(desc, what)
        raw = self._read_json_bytes(name, what)
        algo, hexpart = split_digest(desc["digest"])
        if hashlib.new(algo, raw).hexdigest() != hexpart:
            raise InvalidParameter(f"invalid archive: {what} {name!r} does not match its digest")
        return raw, self._parse_json(raw, f"{what} {name!r}")

    def _find_manifest(self, desc: dict[str, Any], depth: int) -> dict[str, Any] | None:
        """Follow `desc` through indexes to the manifest for this host; None if there is none."""
        if depth > _MAX_INDEX_DEPTH:
            raise InvalidParameter("invalid archive: image indexes are nested too deeply")
        _raw, doc = self._blob_json(desc, "manifest")
        if not isinstance(doc, dict):
            raise InvalidParameter("invalid archive: a manifest is not a JSON object")
        media = desc.get("mediaType") or doc.get("mediaType")
        if media in _INDEX_TYPES or (not media and "manifests" in doc):
            children = doc.get("manifests")
            if not isinstance(children, list):
                raise InvalidParameter("invalid archive: an image index has no manifests list")
            child = self._pick_platform([c for c in children if isinstance(c, dict)])
            return None if child is None else self._find_manifest(child, depth + 1)
        if media in _MANIFEST_TYPES or (not media and "layers" in doc):
            return doc
        raise InvalidParameter(f"invalid archive: unsupported manifest media type {media!r}")

    @staticmethod
    def _pick_platform(children: list[dict[str, Any]]) -> dict[str, Any] | None:
        arch, variant = _host_platform()
        # attestations (buildkit provenance/SBOM) ride along as manifests of platform unknown/unknown
        images = [c for c in children
                  if (c.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"]
        best, best_score = None, 0
        for child in images:
            score = _platform_score(child, arch, variant)
            if score > best_score:
                best, best_score = child, score
        if best is None and len(images) == 1 and "platform" not in images[0]:
            return images[0]  # a single-image index that does not state a platform
        return best

    def _load_oci(self) -> None:
        index = self._parse_json(self._read_json_bytes("index.json", "index.json"), "index.json")
        descs = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(descs, list):
            raise InvalidParameter("invalid archive: index.json has no manifests list")
        arch, variant = _host_platform()
        by_id: dict[str, ArchiveImage] = {}
        for desc in descs:
            if not isinstance(desc, dict):
                raise InvalidParameter("invalid archive: index.json has a descriptor that is not an object")
            if "platform" in desc and desc.get("mediaType") not in _INDEX_TYPES \
                    and _platform_score(desc, arch, variant) == 0:
                continue  # an image for another platform
            manifest = self._find_manifest(desc, 0)
            if manifest is None:
                continue
            config_desc = manifest.get("config")
            layer_descs = manifest.get("layers")
            if not isinstance(config_desc, dict) or not isinstance(layer_descs, list):
                raise InvalidParameter("invalid archive: a manifest has no config or layers")
            config, _doc = self._blob_json(config_desc, "config")
            layers = [self._layer(self._blob_name(d, "layer")) for d in layer_descs]
            self._add(by_id, config, layers, _names_from_annotations(desc.get("annotations")),
                      self._blob_name(config_desc, "config"))
        if descs and not self.images:
            raise InvalidParameter(f"invalid archive: no image for linux/{arch} in the archive")

    def load(self) -> None:
        if self.has("manifest.json"):
            self._load_docker()
        elif self.has("index.json"):
            self._load_oci()
        else:
            raise InvalidParameter(
                "invalid archive: neither manifest.json (docker) nor index.json (OCI layout) found")


def _spool_decompressed(src: IO[bytes], directory: str) -> IO[bytes]:
    # tarfile needs to seek between members; seeking backwards in a compressed stream means
    # decompressing from the start again, so the archive is decompressed once to a temporary
    # file next to it (unlinked: it disappears when closed)
    tmp = tempfile.TemporaryFile(dir=directory)
    try:
        shutil.copyfileobj(open_decompressed(cast(BinaryIO, src)), tmp, _COPY_CHUNK)
        tmp.seek(0)
    except BaseException:
        tmp.close()
        raise
    return tmp


def open_archive(path: str) -> Archive:
    """Open a `docker save` or OCI image layout tar (plain or compressed as a whole) and read its
    image list. Raises InvalidParameter for anything malformed or unsafe."""
    f: IO[bytes] = open(path, "rb")
    try:
        head = f.read(6)
        f.seek(0)
        if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd" or head == b"\xfd7zXZ\x00" \
                or (head[:3] == b"BZh" and head[3:4].isdigit()):
            spooled = _spool_decompressed(f, os.path.dirname(os.path.abspath(path)))
            f.close()
            f = spooled
        try:
            tar = tarfile.open(fileobj=f, mode="r:", encoding="utf-8", errors="surrogateescape")
        except tarfile.TarError as e:
            raise InvalidParameter(f"invalid archive: not a tar file: {e}") from None
        archive = Archive(f, tar)
        archive.load()
        return archive
    except tarfile.TarError as e:
        f.close()
        raise InvalidParameter(f"invalid archive: {e}") from None
    except BaseException:
        f.close()
        raise


# --- writing -------------------------------------------------------------------------------------


def _json(doc: object) -> bytes:
    # compact, in insertion order: the same input gives the same bytes (and digests)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class _CheckedReader:
    """Hashes a layer while it is copied so a store that hands out wrong bytes is caught."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self.hash.update(data)
        return data


def write_archive(out: BinaryIO, images: list[SaveImage]) -> None:
    """Write `images` as a docker 25+ save archive (an OCI image layout that also carries docker's
    manifest.json and repositories) to `out`, which may be a pipe. Layers are stored uncompressed
    under their DiffID, each once. The same input always gives the same bytes."""
    blobs: dict[str, bytes | SaveLayer] = {}  # hex digest -> contents
    index_descs: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}

    for image in images:
        config_hex = hashlib.sha256(image.config).hexdigest()
        blobs[config_hex] = image.config
        layer_descs = []
        for layer in image.layers:
            if not is_digest(layer.diff_id) or not layer.diff_id.startswith("sha256:"):
                raise InvalidParameter(f"cannot save layer with DiffID {layer.diff_id!r}")
            hexpart = layer.diff_id.split(":", 1)[1]
            known = blobs.setdefault(hexpart, layer)
            if isinstance(known, SaveLayer) and known.size != layer.size:
                raise InvalidParameter(f"layer {layer.diff_id} given with two sizes")
            layer_descs.append({"mediaType": MEDIA_OCI_LAYER, "digest": layer.diff_id, "size": layer.size})
        manifest = _json({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": "sha256:" + config_hex,
                       "size": len(image.config)},
            "layers": layer_descs,
        })
        manifest_hex = hashlib.sha256(manifest).hexdigest()
        blobs[manifest_hex] = manifest
        desc = {"mediaType": MEDIA_OCI_MANIFEST, "digest": "sha256:" + manifest_hex, "size": len(manifest)}
        tags = []
        for tag in image.repo_tags:
            try:
                ref = reference.parse(tag).with_default_tag()
            except reference.InvalidReference as e:
                raise InvalidParameter(f"cannot save {tag!r}: {e}") from None
            if not ref.tag:
                continue  # a digest reference is not a tag
            tags.append(f"{ref.familiar_name}:{ref.tag}")
            # one descriptor per tag: an annotation can carry only one name
            index_descs.append(dict(desc, annotations={
                ANNOTATION_IMAGE_NAME: f"{ref.name}:{ref.tag}",
                ANNOTATION_REF_NAME: ref.tag,
            }))
            if image.layers:
                top = image.layers[-1].diff_id.split(":", 1)[1]
                repositories.setdefault(ref.familiar_name, {})[ref.tag] = top
        if not tags:
            index_descs.append(desc)
        docker_manifest.append({
            "Config": f"blobs/sha256/{config_hex}",
            "RepoTags": tags,
            "Layers": [f"blobs/sha256/{layer.diff_id.split(':', 1)[1]}" for layer in image.layers],
        })

    index = _json({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index_descs})
    tw = TarWriter(out, digest=False)
    tw.add_dir("blobs/")
    tw.add_dir("blobs/sha256/")
    for hexpart in sorted(blobs):
        blob = blobs[hexpart]
        if isinstance(blob, bytes):
            tw.add_bytes(f"blobs/sha256/{hexpart}", blob)
        else:
            _write_layer_blob(tw, hexpart, blob)
    tw.add_bytes("index.json", index)
    tw.add_bytes("manifest.json", _json(docker_manifest))
    tw.add_bytes("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
    if repositories:
        tw.add_bytes("repositories", _json(
            {repo: dict(sorted(tags.items())) for repo, tags in sorted(repositories.items())}))
    tw.close()


def _write_layer_blob(tw: TarWriter, hexpart: str, layer: SaveLayer) -> None:
    info = tarfile.TarInfo(f"blobs/sha256/{hexpart}")
    info.size = layer.size
    info.mode = 0o644
    info.mtime = 0
    with layer.open() as src:
        checked = _CheckedReader(src)
        tw.add(info, cast(BinaryIO, checked))
        if src.read(1):
            raise SystemError_(f"layer {layer.diff_id} is longer than its recorded size {layer.size}")
    if checked.hash.hexdigest() != hexpart:
        # the header is out already: the stream is broken, and the error says why
        raise SystemError_(f"layer {layer.diff_id} does not match its content while saving")
