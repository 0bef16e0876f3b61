import pytest

from berth.common.errors import InvalidParameter
from berth.images.changes import apply_changes
from berth.runtime.logs import LogReader, docker_timestamp, parse_time


def test_changes() -> None:
    cfg = apply_changes({"Env": ["A=0"]}, ['CMD ["echo", "hi"]', "ENTRYPOINT /bin/run --x", "ENV A=1 B=2",
                                           "EXPOSE 80 53/udp", "LABEL a=b", "WORKDIR /w", "USER nobody"])
    assert cfg["Cmd"] == ["echo", "hi"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/run --x"]
    assert cfg["Env"] == ["A=1", "B=2"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert (cfg["Labels"], cfg["WorkingDir"], cfg["User"]) == ({"a": "b"}, "/w", "nobody")
    with pytest.raises(InvalidParameter):
        apply_changes({}, ["RUN echo no"])


def test_log_reader_partial_lines_tail_and_since(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "ctr.log"
    log.write_bytes(
        b"2026-01-01T00:00:01.000000001+00:00 stdout F one\n"
        b"2026-01-01T00:00:02.000000000+00:00 stderr P tw\n"
        b"2026-01-01T00:00:02.500000000+00:00 stderr F o\n"
        b"2026-01-01T00:00:03.000000000+00:00 stdout F three\n"
        b"2026-01-01T00:00:04.000000000+00:00 stdout F inc")  # still being written
    r = LogReader(str(log))
    records, offset = r.read()
    assert [(x.stream, x.data) for x in records] == [("stdout", b"one\n"), ("stderr", b"two\n"),
                                                     ("stdout", b"three\n")]
    assert offset == log.read_bytes().rindex(b"\n") + 1
    assert [x.data for x in r.read(tail=1)[0]] == [b"three\n"]
    since = parse_time("2026-01-01T00:00:02Z")
    assert [x.data for x in r.read(since=since, streams=("stdout",))[0]] == [b"three\n"]
    assert docker_timestamp(records[0].timestamp) == "2026-01-01T00:00:01.000000001Z"
