"""The gunicorn worker `digitrec serve` runs by default: gunicorn's sync worker, made safe for
browsers that open connections ahead of need.

The app is CPU-bound, so one request per worker at a time (gunicorn's sync worker) keeps every
core busy and the latency tail tight, and a new connection goes to whichever worker is free
(docs/performance.md, section 4). But the plain sync worker reads a new connection's request
at once and blocks until it arrives, and Chrome opens connections it may use later (preconnect):
one such silent connection stalls a worker until it times out, and so does a slow client
that sends its request a few bytes at a time (slowloris). This worker parks a connection until
its whole request has arrived — looking at the bytes without reading them (MSG_PEEK): the
headers, and the body up to BODY_PEEK bytes — serves others meanwhile, then hands it to
gunicorn as usual. A connection silent for `keepalive` seconds, or whose request is not complete
after REQUEST_DEADLINE seconds, is closed.

Stopping loses no request a client has sent: told to stop (SIGTERM, or gunicorn's max-requests),
the worker first serves every connection already waiting — in the listen queue, accepted by the
kernel but by no worker yet, and parked here — within gunicorn's graceful_timeout, where the
plain sync worker exits and the kernel resets them. A request cut short by gunicorn's timeout
gets a 503 JSON answer with Retry-After (the plain worker: an HTML 500).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import select
import socket
import struct
import sys
import time

from gunicorn import util
from gunicorn.workers import sync

FIRST_BYTES_WAIT = 0.005  # seconds to wait at accept for a request already on its way
REQUEST_DEADLINE = 10.0  # seconds a client has to send its whole request once it has begun
BODY_PEEK = 32 * 1024  # a body is waited for up to this many bytes (then read as usual); well
# under a socket's receive buffer, which must hold what MSG_PEEK looks at
PARTIAL_POLL = 0.05  # seconds between looks at requests that have begun but are incomplete
DRAIN_MARGIN = 1.0  # a stopping worker is done this many seconds before graceful_timeout
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux's value
SILENT_GRACE = 0.2  # seconds a stopping worker waits for a silent connection to speak


class SyncWorker(sync.SyncWorker):
    """gunicorn's sync worker that never blocks on a connection with no request bytes yet."""

    def init_process(self) -> None:
        """Start with no parked connections (sockets → (listener, address, deadline)), and
        none whose request has begun (sockets → bytes seen so far)."""
        self.parked: dict[socket.socket, tuple[socket.socket, object, float]] = {}
        self.begun: dict[socket.socket, int] = {}
        self.silent_wait = self.cfg.keepalive
        self.aborting = False
        super().init_process()

    def run(self) -> None:
        """Serve as gunicorn's sync worker does until told to stop; then drain."""
        super().run()
        if not self.aborting:
            self.drain()
            self.exit_now()

    def exit_now(self) -> None:
        """Exit as gunicorn would after a graceful stop (status 0, its log line, the heartbeat
        file closed), minus the interpreter's teardown: seconds of garbage collection over the
        models' objects, which delayed every stop and restart. Only without a worker_exit hook,
        which this way would not run."""
        if self.cfg.settings["worker_exit"].value is not self.cfg.settings["worker_exit"].default:
            return
        self.log.info("Worker exiting (pid: %s)", self.pid)
        self.tmp.close()
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(0)

    def handle_abort(self, sig, frame) -> None:
        """gunicorn's timeout (SIGABRT): exit at once, no draining (the master kills us next)."""
        self.aborting = True
        super().handle_abort(sig, frame)

    def drain(self) -> None:
        """Serve the connections already waiting (the listen queue and the parked ones) before
        the worker exits, so that no client that sent its request is cut off; stop when none
        are left, or DRAIN_MARGIN seconds before gunicorn's graceful_timeout."""
        deadline = time.monotonic() + max(0.0, self.cfg.graceful_timeout - DRAIN_MARGIN)
        self.silent_wait = SILENT_GRACE
        soon = time.monotonic() + SILENT_GRACE
        for client, (listener, address, until) in list(self.parked.items()):
            cap = deadline if client in self.begun else min(deadline, soon)
            self.parked[client] = (listener, address, min(until, cap))
        while time.monotonic() < deadline:
            self.notify()
            waiting = self.accept_waiting()
            self.serve_parked()
            if not waiting:
                if not self.parked:
                    return
                _readable(list(self.parked), PARTIAL_POLL)
        for client in list(self.parked):
            util.close(client)
        self.parked.clear()
        self.begun.clear()

    def accept_waiting(self) -> int:
        """Accept (and serve or park) every connection in the listen queues; how many."""
        accepted = 0
        for listener in self.sockets:
            while True:
                try:
                    self.accept(listener)
                except OSError as exc:
                    if exc.errno == errno.ECONNABORTED:
                        continue  # one the peer dropped before it was accepted
                    break  # none waiting (EAGAIN), or no file descriptor left
                accepted += 1
        return accepted

    def handle_error(self, req, client, addr, exc) -> None:
        """A request cut short by gunicorn's timeout (SystemExit from its SIGABRT) gets a 503
        JSON answer that says to send it again; other errors as gunicorn answers them."""
        if not isinstance(exc, SystemExit):
            return super().handle_error(req, client, addr, exc)
        body = json.dumps({"error": "the server took too long and restarted; send it again"})
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n")
        try:
            client.sendall((head + body).encode())
        except OSError:
            pass

    def accept(self, listener: socket.socket) -> None:
        """Accept one connection: serve it if its whole request has arrived, else park it.
        Parked connections whose request has arrived meanwhile go first."""
        client, address = listener.accept()
        client.setblocking(True)
        util.close_on_exec(client)
        self.serve_parked()
        _readable([client], FIRST_BYTES_WAIT)
        if _request_complete(client) is True:
            self.handle(listener, client, address)
        else:
            self.parked[client] = (listener, address, time.monotonic() + self.silent_wait)

    def wait(self, timeout: float):
        """Wait for the listeners (as gunicorn does) and for parked connections; serve those
        whose request is complete, close those past their deadline."""
        if not self.parked:
            return super().wait(timeout)
        self.notify()
        soonest = min(deadline for _, _, deadline in self.parked.values())
        limit = max(0.0, min(timeout, soonest - time.monotonic()))
        if self.begun:  # readable but incomplete: select would wake at once, so poll them
            limit = min(limit, PARTIAL_POLL)
        silent = [s for s in self.parked if s not in self.begun]
        try:
            ready = select.select(self.wait_fds + silent, [], [], limit)[0]
        except OSError:  # interrupted, or a socket went bad: let gunicorn's wait() decide
            return super().wait(0.0)
        self.serve_parked([s for s in ready if s in self.parked] + list(self.begun))
        if self.PIPE[0] in ready:
            os.read(self.PIPE[0], 1)  # a signal's wake-up byte, as gunicorn's wait() reads it
        return [s for s in ready if s in self.wait_fds]

    def serve_parked(self, ready: list | None = None) -> None:
        """Serve the parked connections (those in `ready`, else all that are readable now)
        whose request is complete; close the ones past their deadline."""
        if not self.parked:
            return
        if ready is None:
            ready = _readable(list(self.parked), 0.0) + list(self.begun)
        now = time.monotonic()
        for client in dict.fromkeys(ready):
            if client not in self.parked:
                continue
            complete = _request_complete(client)
            if complete is True:
                listener, address, _ = self.parked.pop(client)
                self.begun.pop(client, None)
                self.handle(listener, client, address)
            elif complete and client not in self.begun:  # begun, not whole: from now on
                self.begun[client] = complete  # polled, with a deadline for the whole request
                listener, address, _ = self.parked[client]
                self.parked[client] = (listener, address, now + REQUEST_DEADLINE)
        for client in [c for c, (_, _, deadline) in self.parked.items() if deadline <= now]:
            del self.parked[client]
            self.begun.pop(client, None)
            util.close(client)


def refuse_new_connections(listener: socket.socket) -> bool:
    """Make a listening socket drop every packet that reaches it (a classic BPF filter that
    returns 0), so that it completes no new handshake while the connections already queued can
    still be accepted and served: a new client's connect then fails cleanly, before it sent
    anything (refused once the socket is closed), instead of being reset after sending its
    request. Linux only; False where the filter cannot be attached."""
    drop_all = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET|BPF_K
    program = struct.pack("HP", 1, ctypes.addressof(drop_all))  # struct sock_fprog
    try:
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
    except OSError:
        return False
    return True


def _request_complete(client: socket.socket) -> bool | int | None:
    """True when the connection's request has arrived whole (its headers, and its body up to
    BODY_PEEK bytes), or the peer closed, or the socket failed (gunicorn then reads it and
    answers or drops it as usual); else the number of bytes seen so far (0: none)."""
    try:
        seen = client.recv(BODY_PEEK + 16384, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return 0
    except OSError:
        return True
    if not seen:
        return True  # closed by the peer
    end = seen.find(b"\r\n\r\n")
    if end < 0:
        return True if len(seen) >= BODY_PEEK else len(seen)  # huge headers: gunicorn refuses
    headers = seen[:end].lower()
    body = len(seen) - end - 4
    if b"\ntransfer-encoding:" in headers and b"chunked" in headers:
        return True if body >= BODY_PEEK or seen.endswith(b"0\r\n\r\n") else len(seen)
    length = 0
    for line in headers.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return True  # gunicorn answers a bad length
    return True if body >= min(length, BODY_PEEK) else len(seen)


def _readable(sockets: list[socket.socket], wait: float) -> list[socket.socket]:
    """The sockets with bytes to read (or a closed peer) within `wait` seconds."""
    try:
        return select.select(sockets, [], [], wait)[0]
    except (OSError, ValueError):
        return []
