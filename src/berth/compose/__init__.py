"""Compose: multi-container applications from compose files, spoken to the engine through berth.client.

The loader is a pipeline of small stages (`yamlfile` -> `envfile` -> `interpolate` -> `validate` ->
`merge`/`extends`/`include` -> `normalize` -> `model`), each testable alone; `planner` and
`executor` turn a model into networks, volumes and containers through the Engine API client,
with the daemon's `com.docker.compose.*` labels as the only state. This package never imports
the engine (checked by import-linter).
"""
