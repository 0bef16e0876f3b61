"""berth.etcd against a real 3-member etcd on loopback: kv, txn, leases, watch, election, fail-over."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from berth.etcd import EtcdClient, EtcdError, LeaseKeeper
from berth.etcd.local import LocalEtcd, start_local_etcd


@pytest.fixture(scope="module")
def etcd3() -> Iterator[LocalEtcd]:
    cluster = start_local_etcd(tempfile.mkdtemp(prefix="bt-etcd-", dir="/tmp"), 3)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_kv_range_put_delete(etcd3: LocalEtcd) -> None:
    c = EtcdClient(etcd3.endpoints)
    c.put("/t/kv/a", "1")
    c.put("/t/kv/b", b"\x00\xff")
    c.put("/t/kw", "outside")
    assert c.get("/t/kv/a").value == b"1"  # type: ignore[union-attr]
    assert [kv.key for kv in c.get_prefix("/t/kv/")] == [b"/t/kv/a", b"/t/kv/b"]
    assert c.get_prefix("/t/kv/")[1].value == b"\x00\xff"
    assert c.delete("/t/kv/", prefix=True) == 2
    assert c.get("/t/kv/a") is None and c.get("/t/kw") is not None


def test_txn_create_and_compare_and_swap(etcd3: LocalEtcd) -> None:
    c = EtcdClient(etcd3.endpoints)
    assert c.create("/t/cas", "first")
    assert not c.create("/t/cas", "second")
    kv = c.get("/t/cas")
    assert kv is not None and kv.value == b"first"
    assert c.compare_and_swap("/t/cas", "third", kv.mod_revision)
    assert not c.compare_and_swap("/t/cas", "fourth", kv.mod_revision)  # stale revision loses
    assert c.get("/t/cas").value == b"third"  # type: ignore[union-attr]


def test_lease_expiry_removes_keys_and_keeper_renews(etcd3: LocalEtcd) -> None:
    c = EtcdClient(etcd3.endpoints)
    short = c.lease_grant(1)
    c.put("/t/lease/short", "x", lease=short)
    keeper = LeaseKeeper(c, 1, on_new_lease=lambda lease: c.put("/t/lease/kept", "y", lease=lease))
    keeper.start()
    try:
        time.sleep(2.5)
        assert c.get("/t/lease/short") is None
        assert c.lease_ttl(short) == -1
        assert c.get("/t/lease/kept") is not None
    finally:
        keeper.stop()
    assert c.get("/t/lease/kept") is None  # revoked on stop


def test_watch_streams_puts_and_deletes(etcd3: LocalEtcd) -> None:
    c = EtcdClient(etcd3.endpoints)
    stream, batches = c.watch("/t/w/", prefix=True)
    seen: list[tuple[str, bytes]] = []

    def read() -> None:
        for batch in batches:
            seen.extend((e.type, e.kv.key) for e in batch)
            if len(seen) >= 2:
                return

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.2)
    c.put("/t/w/1", "a")
    c.delete("/t/w/1")
    t.join(5)
    stream.close()
    assert seen == [("PUT", b"/t/w/1"), ("DELETE", b"/t/w/1")]


def test_election_campaign_leader_resign(etcd3: LocalEtcd) -> None:
    c = EtcdClient(etcd3.endpoints)
    l1, l2 = c.lease_grant(5), c.lease_grant(5)
    first = c.campaign("/t/elect", "one", l1)
    assert c.leader("/t/elect").value == b"one"  # type: ignore[union-attr]
    won: list[str] = []
    t = threading.Thread(target=lambda: won.append(c.campaign("/t/elect", "two", l2).key.decode()))
    t.start()
    time.sleep(0.3)
    assert not won  # blocked while "one" leads
    stream, leaders = c.observe("/t/elect")
    assert next(leaders).value == b"one"
    c.resign(first)
    t.join(5)
    assert won and c.leader("/t/elect").value == b"two"  # type: ignore[union-attr]
    assert next(leaders).value == b"two"
    stream.close()
    c.lease_revoke(l1)
    c.lease_revoke(l2)
    assert c.leader("/t/elect") is None


def test_fail_over_to_another_member(etcd3: LocalEtcd) -> None:
    # The first endpoint given is dead: requests move on to the live members.
    c = EtcdClient(["http://127.0.0.1:1", *etcd3.endpoints])
    c.put("/t/fo", "v")
    assert c.get("/t/fo").value == b"v"  # type: ignore[union-attr]
    down = etcd3.members[0]
    etcd3.stop_member(down)
    try:
        c2 = EtcdClient(etcd3.endpoints)
        c2.put("/t/fo", "w")  # quorum of 2 remains
        assert c2.get("/t/fo").value == b"w"  # type: ignore[union-attr]
    finally:
        etcd3.start_member(down, "existing")
        etcd3.wait_ready()


def test_unreachable_everywhere_fails_fast() -> None:
    c = EtcdClient(["http://127.0.0.1:1"], timeout=0.5)
    started = time.monotonic()
    with pytest.raises(EtcdError, match="unavailable"):
        c.get("/x")
    assert time.monotonic() - started < 3
