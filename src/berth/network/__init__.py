"""Container networking: IPAM, network namespaces, the bridge driver, iptables rules, published ports.

`model` holds the data types and the `NetworkDriver` protocol; `ipam`, `ports` and `iptables` are
pure or subprocess-only; `netns` uses ctypes. Only `links` (through `bridge`) imports pyroute2, which
costs ~200 ms: the CLI and the API layer may import anything here except `bridge` and `links`.
This package imports nothing of berth but `berth.common`.
"""
