"""The cluster manager: node registry, scheduling and cluster state.

Only `scheduler/` exists so far; it is pure (no I/O) and imports nothing but `berth.common`.
"""
