"""The gunicorn worker `digitrec serve` runs by default: gunicorn's sync worker, made safe for
browsers that open connections ahead of need.

The app is CPU-bound, so one request per worker at a time (gunicorn's sync worker) keeps every
core busy and the latency tail tight, and a new connection goes to whichever worker is free
(docs/performance.md, section 4). But the plain sync worker reads a new connection's request
at once and blocks until it arrives, and Chrome opens connections it may use later (preconnect):
one such silent connection stalls a worker until it times out. This worker parks a connection
that has sent nothing yet, serves others meanwhile, and reads the parked one when its request
arrives (or closes it after `keepalive` seconds of silence).
"""

from __future__ import annotations

import os
import select
import socket
import time

from gunicorn import util
from gunicorn.workers import sync

FIRST_BYTES_WAIT = 0.005  # seconds to wait at accept for a request already on its way


class SyncWorker(sync.SyncWorker):
    """gunicorn's sync worker that never blocks on a connection with no request bytes yet."""

    def init_process(self) -> None:
        """Start with no parked connections (sockets → (listener, address, deadline))."""
        self.parked: dict[socket.socket, tuple[socket.socket, object, float]] = {}
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        """Accept one connection: serve it if its request has arrived, else park it. Parked
        connections whose request has arrived meanwhile go first."""
        client, address = listener.accept()
        client.setblocking(True)
        util.close_on_exec(client)
        self.serve_parked()
        if _readable([client], FIRST_BYTES_WAIT):
            self.handle(listener, client, address)
        else:
            self.parked[client] = (listener, address, time.monotonic() + self.cfg.keepalive)

    def wait(self, timeout: float):
        """Wait for the listeners (as gunicorn does) and for parked connections; serve those
        that became readable, close those silent past their deadline."""
        if not self.parked:
            return super().wait(timeout)
        self.notify()
        soonest = min(deadline for _, _, deadline in self.parked.values())
        limit = max(0.0, min(timeout, soonest - time.monotonic()))
        try:
            ready = select.select(self.wait_fds + list(self.parked), [], [], limit)[0]
        except OSError:  # interrupted, or a socket went bad: let gunicorn's wait() decide
            return super().wait(0.0)
        self.serve_parked([s for s in ready if s in self.parked])
        if self.PIPE[0] in ready:
            os.read(self.PIPE[0], 1)  # a signal's wake-up byte, as gunicorn's wait() reads it
        return [s for s in ready if s in self.wait_fds]

    def serve_parked(self, ready: list | None = None) -> None:
        """Serve the parked connections that are readable now (or those in `ready`), and
        close the ones that stayed silent past their deadline."""
        if not self.parked:
            return
        if ready is None:
            ready = _readable(list(self.parked), 0.0)
        for client in ready:
            listener, address, _ = self.parked.pop(client)
            self.handle(listener, client, address)
        now = time.monotonic()
        for client in [c for c, (_, _, deadline) in self.parked.items() if deadline <= now]:
            del self.parked[client]
            util.close(client)


def _readable(sockets: list[socket.socket], wait: float) -> list[socket.socket]:
    """The sockets with bytes to read (or a closed peer) within `wait` seconds."""
    try:
        return select.select(sockets, [], [], wait)[0]
    except (OSError, ValueError):
        return []
