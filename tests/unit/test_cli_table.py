"""Column layout (tabwriter rules) and the `ps`/`images` rows docker prints."""

from __future__ import annotations

from typing import Any

from berth.cli.format.render import header_row, render_rows
from berth.cli.format.table import align
from berth.cli.format.views import (
    IMAGE_HEADERS,
    IMAGES_DIGESTS_TABLE,
    IMAGES_TABLE,
    PS_HEADERS,
    PS_TABLE,
    container_row,
    ellipsis,
    format_ports,
    go_quote,
    image_rows,
)

NOW = 1_795_926_600.0
CID = "8169b98c7db6ff759cabd324ea5ed1b58bb03db30a67f93570176d1011d40b11"
IID = "sha256:cfe80fcfb2154d330ecb2e724f0a2be46ca23456ab1ba4076fb15ba0965b5ce7"


def test_align_pads_to_min_width_and_leaves_last_cell() -> None:
    assert align("A\tBB\tC\nxxxxxxxxxx\ty\tz") == "A            BB        C\nxxxxxxxxxx   y         z"


def test_align_blocks_are_per_run_of_lines() -> None:
    # The middle line has no tab: the columns above and below it are sized separately.
    text = "aaaaaaaaaaaaaaa\tb\nplain\nc\td"
    assert align(text) == "aaaaaaaaaaaaaaa   b\nplain\nc         d"


def _container(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "Id": CID,
        "Names": ["/clitest-a"],
        "Image": "busybox",
        "ImageID": IID,
        "Command": "sh -c 'echo out; echo err >&2'",
        "Created": NOW - 75,
        "Ports": [],
        "Labels": {"b": "2", "a": "1"},
        "State": "running",
        "Status": "Up About a minute",
        "NetworkSettings": {"Networks": {"bridge": {}}},
        "Mounts": [],
    }
    c.update(over)
    return c


def test_ps_table_matches_docker_layout() -> None:
    out = render_rows("", [container_row(_container(), NOW)], header_row(PS_HEADERS, ["Label"]), PS_TABLE)
    assert out == (
        "CONTAINER ID   IMAGE     COMMAND                  CREATED              STATUS              PORTS     NAMES\n"
        '8169b98c7db6   busybox   "sh -c \'echo out; ec…"   About a minute ago   Up About a minute             clitest-a\n'
    )


def test_ps_no_trunc_and_fields() -> None:
    row = container_row(_container(Names=["/a", "/b/link"]), NOW, trunc=False)
    assert row["ID"] == CID
    assert row["Names"] == "a,b/link"
    assert row["Command"] == "\"sh -c 'echo out; echo err >&2'\""
    assert row["Labels"] == "a=1,b=2"
    assert row["Networks"] == "bridge"
    assert row["RunningFor"] == "About a minute ago"
    assert container_row(_container(Names=["/a", "/b/link"]), NOW)["Names"] == "a"


def test_ps_quiet_and_custom_formats() -> None:
    rows = [container_row(_container(), NOW)]
    headers = header_row(PS_HEADERS, ["Label"])
    assert render_rows("{{.ID}}", rows, headers, PS_TABLE) == "8169b98c7db6\n"
    assert render_rows('{{.Names}}\\t{{.Label "a"}}', rows, headers, PS_TABLE) == "clitest-a\t1\n"
    assert render_rows("table {{.Names}}\\t{{.State}}", rows, headers, PS_TABLE) == (
        "NAMES       STATE\nclitest-a   running\n"
    )
    assert render_rows('table {{.Label "a"}}', rows, headers, PS_TABLE) == "a\n1\n"
    json_line = render_rows("json", rows, headers, PS_TABLE)
    assert json_line.startswith('{"Command":') and '"Names":"clitest-a"' in json_line


def test_ps_image_shows_short_id_for_id_references() -> None:
    assert container_row(_container(Image=IID), NOW)["Image"] == "cfe80fcfb215"
    assert container_row(_container(Image="busybox@sha256:" + "a" * 64), NOW)["Image"] == "busybox"
    assert container_row(_container(Image=""), NOW)["Image"] == "<no image>"


def test_ps_size() -> None:
    row = container_row(_container(SizeRw=0, SizeRootFs=1984234), NOW)
    assert row["Size"] == "0B (virtual 1.98MB)"


def test_ports() -> None:
    ports = [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 81, "PublicPort": 8081, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
    ]
    assert format_ports(ports) == "443/tcp, [::]:5353->53/udp, 0.0.0.0:8080->80/tcp, 0.0.0.0:8081->81/tcp"
    assert format_ports(None) == ""


def test_quote_and_ellipsis() -> None:
    assert go_quote('a "b"\n') == '"a \\"b\\"\\n"'
    assert ellipsis("abcdefghij", 5) == "abcd…"
    assert ellipsis("abc", 5) == "abc"


def _image(**over: Any) -> dict[str, Any]:
    img: dict[str, Any] = {
        "Id": IID,
        "RepoTags": ["busybox:latest", "busybox:1", "alpine:3"],
        "RepoDigests": [],
        "Created": NOW - 3 * 3600,
        "Size": 1984234,
        "SharedSize": -1,
        "Containers": -1,
    }
    img.update(over)
    return img


def test_images_rows_and_table() -> None:
    rows = image_rows(_image(), NOW)
    assert [(r["Repository"], r["Tag"]) for r in rows] == [
        ("busybox", "latest"),
        ("busybox", "1"),
        ("alpine", "3"),
    ]
    out = render_rows("", rows[:1], header_row(IMAGE_HEADERS), IMAGES_TABLE)
    assert out == (
        "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n"
        "busybox      latest    cfe80fcfb215   3 hours ago   1.98MB\n"
    )


def test_images_dangling_and_digests() -> None:
    (row,) = image_rows(_image(RepoTags=["<none>:<none>"], RepoDigests=["<none>@<none>"]), NOW)
    assert (row["Repository"], row["Tag"], row["Digest"]) == ("<none>", "<none>", "<none>")
    digest = "sha256:" + "b" * 64
    img = _image(RepoTags=["busybox:latest"], RepoDigests=[f"busybox@{digest}", f"other@{digest}"])
    with_digests = image_rows(img, NOW, digests=True)
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in with_digests] == [
        ("busybox", "latest", digest),
        ("other", "<none>", digest),
    ]
    without = image_rows(img, NOW)
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in without] == [
        ("busybox", "latest", "<none>"),
        ("other", "<none>", "<none>"),
    ]
    out = render_rows("", with_digests[:1], header_row(IMAGE_HEADERS), IMAGES_DIGESTS_TABLE)
    assert out.splitlines()[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]


def test_images_json_is_sorted_and_escaped() -> None:
    (row,) = image_rows(_image(RepoTags=[]), NOW)
    line = render_rows("{{json .}}", [row], header_row(IMAGE_HEADERS), IMAGES_TABLE)
    assert line.startswith('{"Containers":"N/A","CreatedAt":')
    assert '"Repository":"\\u003cnone\\u003e"' in line
    assert '"VirtualSize":"1.984MB"' in line
