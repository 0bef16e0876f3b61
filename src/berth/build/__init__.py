"""The Dockerfile frontend: parser, instructions, variable expansion, stage graph, .dockerignore.

Pure logic with BuildKit's semantics. It reads text and returns typed values; it never touches the
daemon, the image store or the filesystem beyond what a caller hands it, so the builder (which
runs steps and caches layers) and the CLI can both use it.
"""

from berth.build.errors import DockerfileError, ExpansionError

__all__ = ["DockerfileError", "ExpansionError"]
