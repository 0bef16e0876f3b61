"""A small client for etcd's v3 HTTP/JSON gateway (no gRPC): kv, transactions, leases, watch, election.

Synchronous (stdlib http.client); callers on an event loop run it in threads. Several endpoints
may be given: a request that cannot reach one member moves on to the next.
"""

from berth.etcd.client import (
           EtcdClient,
           EtcdError,
           EtcdUnavailable,
           KeyValue,
           LeaderKey,
           WatchEvent,
           prefix_end,
)
from berth.etcd.lease import LeaseKeeper

__all__ = ["EtcdClient", "EtcdError", "EtcdUnavailable", "KeyValue", "LeaderKey", "LeaseKeeper", "WatchEvent",
           "prefix_end"]
