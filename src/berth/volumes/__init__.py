"""Volumes: data that outlives containers. `driver` declares the interface, `local` implements
docker's `local` driver (a directory under the data root, or a filesystem mounted there)."""
