"""Keep a lease alive from a thread; re-grant it when it was lost (e.g. after a partition)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from berth.etcd.client import EtcdClient, EtcdError

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews `lease` every ttl/3 seconds while `healthy()` says so.

    When renewal fails past the TTL, or the lease is found gone, a fresh one is granted and
    `on_new_lease(lease_id)` is called so the owner can put its keys again.
    """

    def __init__(self, etcd: EtcdClient, ttl: int, on_new_lease: Callable[[int], None] | None = None,
                 healthy: Callable[[], bool] | None = None) -> None:
        self.etcd = etcd
        self.ttl = ttl
        self.on_new_lease = on_new_lease
        self.healthy = healthy or (lambda: True)
        self.lease = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        self._renew_or_regrant()
        self._thread = threading.Thread(target=self._run, name="etcd-lease", daemon=True)
        self._thread.start()
        return self.lease

    def _renew_or_regrant(self) -> None:
        if self.lease and self.etcd.lease_keepalive(self.lease) > 0:
            return
        self.lease = self.etcd.lease_grant(self.ttl)
        if self.on_new_lease:
            self.on_new_lease(self.lease)

    def _run(self) -> None:
        while not self._stop.wait(max(self.ttl / 3, 0.2)):
            try:
                if not self.healthy():
                    continue  # let the lease run out: what it stands for is not there
                self._renew_or_regrant()
            except EtcdError as e:
                log.warning("lease renewal failed: %s", e)
            except Exception:  # noqa: BLE001 - the keeper must outlive a callback's fault
                log.exception("lease callback failed")

    def stop(self, revoke: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if revoke and self.lease:
            try:
                self.etcd.lease_revoke(self.lease)
            except EtcdError:
                pass
