"""ADD <url> naming and times (the download itself is tested against a local server in
tests/api/test_build_features.py)."""

from __future__ import annotations

import pytest

from berth.daemon import buildfetch
from berth.daemon.buildview import CopyError


def test_filename_from_disposition_then_path() -> None:
    assert buildfetch._filename("http://h/dl/a%20b.txt?x=1", "") == "a b.txt"
    assert buildfetch._filename("http://h/dl/x", 'attachment; filename="../../etc/passwd"') == "passwd"
    with pytest.raises(CopyError, match="cannot determine filename"):
        buildfetch._filename("http://h/", "")


def test_last_modified() -> None:
    assert buildfetch._last_modified("Thu, 02 Jan 2020 03:04:05 GMT") == 1577934245
    assert buildfetch._last_modified("") == 0
    assert buildfetch._last_modified("not a date") == 0


def test_bad_checksum_format_is_refused_before_any_download() -> None:
    with pytest.raises(CopyError, match="invalid checksum"):
        buildfetch.fetch("http://127.0.0.1:9/x", "/nonexistent-dir-never-made", "md5:abc")
