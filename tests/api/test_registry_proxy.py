"""`berth registry serve --proxy URL`: a pull-through cache in front of another registry."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import Daemon, busybox_tar

from .test_registry_server import Registry, make_registry, needs_skopeo, skopeo  # noqa: F401 - fixture


@needs_skopeo
def test_pull_through_cache(berthd: Daemon, make_registry: Callable[..., Registry]) -> None:  # noqa: F811
    origin = make_registry()
    r = skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{busybox_tar()}",
               f"docker://{origin.host}/library/busybox:1")
    assert r.returncode == 0, r.stderr
    cache = make_registry("--proxy", f"http://{origin.host}")
    ref = f"{cache.host}/library/busybox:1"
    status, out = berthd.request("POST", f"/images/create?fromImage={cache.host}/library/busybox&tag=1", timeout=120)
    assert status == 200 and b"Downloaded newer image" in out and b"errorDetail" not in out, out
    image_id = berthd.json("GET", f"/images/{ref}/json")["Id"]  # type: ignore[index]
    assert cache.request("GET", "/v2/_catalog").json() == {"repositories": ["library/busybox"]}
    missing = cache.request("GET", "/v2/library/busybox/manifests/nope")
    assert missing.status == 404 and missing.code == "MANIFEST_UNKNOWN"

    # upstream gone: what was pulled once is still served
    origin.stop()
    berthd.request("DELETE", f"/images/{ref}")
    status, out = berthd.request("POST", f"/images/create?fromImage={cache.host}/library/busybox&tag=1", timeout=120)
    assert status == 200 and b"errorDetail" not in out, out
    assert berthd.json("GET", f"/images/{ref}/json")["Id"] == image_id  # type: ignore[index]

    # a cache takes no pushes
    r = cache.request("POST", "/v2/library/busybox/blobs/uploads/")
    assert r.status == 405 and r.code == "UNSUPPORTED"
    status, out = berthd.request("POST", f"/images/{cache.host}/library/busybox/push?tag=1")
    assert b"pull-through cache" in out, out
    berthd.request("DELETE", f"/images/{ref}")
