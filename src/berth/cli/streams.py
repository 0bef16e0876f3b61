"""Copying container I/O between the hijacked connection and the terminal.

Threads, not asyncio: stdin is pumped on a thread while the main thread demultiplexes output.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import BinaryIO

from berth.client.stream import STDERR, Readable, iter_frames, iter_raw


def copy_output(
    reader: Readable, tty: bool, out: BinaryIO | None = None, err: BinaryIO | None = None
) -> None:
    """Write a container's output as it arrives: raw for a TTY, else split by the 8-byte frames."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    if tty:
        for chunk in iter_raw(reader):
            out.write(chunk)
            out.flush()
        return
    for stream, payload in iter_frames(reader):
        target = err if stream == STDERR else out
        target.write(payload)
        target.flush()


def pump_stdin(sock: socket.socket, fd: int | None = None) -> threading.Thread:
    """Send our stdin to the container until EOF, then half-close so the process sees EOF too."""
    src = sys.stdin.fileno() if fd is None else fd

    def run() -> None:
        try:
            while True:
                chunk = os.read(src, 65536)
                if not chunk:
                    break
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            # The container exited and the daemon closed the stream first: nothing left to feed.
            pass

    thread = threading.Thread(target=run, name="stdin", daemon=True)
    thread.start()
    return thread
