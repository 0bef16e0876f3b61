"""An OCI distribution-spec v1.1 registry (`berth registry serve`), in its own process.

Layers, bottom up: `names` and `manifests` (pure rules), `fsutil`/`blobs`/`uploads`/`repos`
(files on disk, written temp+rename), `service` (what the API means), `http`/`router`/`routes_*`
(wire shapes only), `app` and `main` (composition). The engine never imports any of it.
"""
