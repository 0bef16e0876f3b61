"""Image distribution: `server/` is an OCI distribution-spec registry that runs as its own process.

Nothing in the engine imports this package; the registry shares only `common` and the HTTP core.
"""
