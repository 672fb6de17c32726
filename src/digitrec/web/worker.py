"""The gunicorn worker `digitrec serve` runs by default: gunicorn's sync worker, made safe for
browsers that open connections ahead of need and for slow clients.

The app is CPU-bound, so one request per worker at a time (gunicorn's sync worker) keeps every
core busy and the latency tail tight, and a new connection goes to whichever worker is free
(docs/performance.md, section 4). But the plain sync worker reads a new connection's request
at once and blocks until it arrives: Chrome opens connections it may use later (preconnect),
and one such silent connection stalls a worker until it times out; so does a slow client —
a phone uploading a photo over a weak link, or an attacker sending a byte at a time
(slowloris). This worker parks a connection and reads its request as the bytes come, without
waiting for them, serving others meanwhile; once the whole request is in (headers, and a body
up to BODY_LIMIT bytes), gunicorn gets it as usual, from memory. A connection silent for
`keepalive` seconds is closed; one that sends nothing for IDLE_DEADLINE seconds once it has begun,
or whose request is not whole after REQUEST_DEADLINE seconds, goes to gunicorn as it is (which
answers it, or gives up reading the rest a second later).

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
from dataclasses import dataclass, field

from gunicorn import util
from gunicorn.workers import sync

FIRST_BYTES_WAIT = 0.005  # seconds to wait at accept for a request already on its way
IDLE_DEADLINE = 10.0  # seconds a client that has begun its request may send nothing
REQUEST_DEADLINE = 60.0  # seconds a client has to send its whole request once it has begun
BODY_LIMIT = 4 * 1024 * 1024 + 64 * 1024  # a body is read here up to this many bytes (the
# app's upload limit, and some): a longer one is handed on after its headers (the app says 413)
HEADER_LIMIT = 64 * 1024  # headers longer than this are handed on as they are (gunicorn: 431)
PARKED_LIMIT = 512  # connections one worker parks at most; more are served as they come
DRAIN_MARGIN = 1.0  # a stopping worker is done this many seconds before graceful_timeout
SILENT_GRACE = 0.2  # seconds a stopping worker waits for a silent connection to speak
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux's value


@dataclass
class Parked:
    """A connection waiting for its request: where it came from, what it sent so far."""

    listener: socket.socket
    address: object
    deadline: float  # closed at this time unless the request is whole
    received: bytearray = field(default_factory=bytearray)
    begun: float = 0.0  # time of its first byte (0: silent so far)


class BufferedSocket:
    """A client socket whose first bytes were already read: recv() returns them first, then
    reads on; everything else is the socket's."""

    def __init__(self, sock: socket.socket, received: bytes):
        self._sock = sock
        self._received = memoryview(received)

    def recv(self, size: int, flags: int = 0) -> bytes:
        """The bytes read ahead first, then the socket's."""
        if self._received:
            chunk, self._received = bytes(self._received[:size]), self._received[size:]
            return chunk
        return self._sock.recv(size, flags)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class SyncWorker(sync.SyncWorker):
    """gunicorn's sync worker that never blocks on a connection whose request is not whole."""

    def init_process(self) -> None:
        """Start with no parked connections."""
        self.parked: dict[socket.socket, Parked] = {}
        self.silent_wait = self.cfg.keepalive
        self.aborting = False
        super().init_process()

    def run(self) -> None:
        """Serve as gunicorn's sync worker does until told to stop; then drain."""
        super().run()
        if not self.aborting:
            self.drain()
            self.exit_now()

    def accept(self, listener: socket.socket) -> None:
        """Accept one connection: serve it if its whole request has arrived, else park it.
        Parked connections whose request has arrived meanwhile go first."""
        client, address = listener.accept()
        client.setblocking(True)
        util.close_on_exec(client)
        self.serve_parked()
        parked = Parked(listener, address, time.monotonic() + self.silent_wait)
        if len(self.parked) >= PARKED_LIMIT:  # under a flood, as gunicorn would
            self.handle(listener, client, address)
            return
        self.parked[client] = parked
        if _readable([client], FIRST_BYTES_WAIT):
            self.serve_parked([client])

    def wait(self, timeout: float):
        """Wait for the listeners (as gunicorn does) and for parked connections; read what
        they send, serve those whose request is whole, close those past their deadline."""
        if not self.parked:
            return super().wait(timeout)
        self.notify()
        soonest = min(p.deadline for p in self.parked.values())
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
        """Read what the parked connections in `ready` (else all that are readable now) have
        sent; serve those whose request is whole; at their deadline, close the silent ones and
        hand the others to gunicorn, which answers what it can read (or times out reading)."""
        if not self.parked:
            return
        if ready is None:
            ready = _readable(list(self.parked), 0.0)
        now = time.monotonic()
        for client in ready:
            parked = self.parked.get(client)
            if parked is None:
                continue
            ended = _read_available(client, parked.received)
            if ended or _request_whole(parked.received):
                self.hand_over(client)
            elif parked.received:
                parked.begun = parked.begun or now
                parked.deadline = min(parked.begun + REQUEST_DEADLINE, now + IDLE_DEADLINE)
        for client in [c for c, p in self.parked.items() if p.deadline <= now]:
            self.hand_over(client, read_timeout=1.0)

    def hand_over(self, client: socket.socket, read_timeout: float = IDLE_DEADLINE) -> None:
        """Unpark a connection and let gunicorn serve it from what it sent (reads of anything
        more time out after `read_timeout` s); one that sent nothing is closed."""
        parked = self.parked.pop(client)
        if not parked.received:
            util.close(client)
            return
        client.settimeout(read_timeout)
        self.handle(parked.listener, BufferedSocket(client, bytes(parked.received)),
                    parked.address)

    def drain(self) -> None:
        """Serve the connections already waiting (the listen queue and the parked ones) before
        the worker exits, so that no client that sent its request is cut off; stop when none
        are left, or DRAIN_MARGIN seconds before gunicorn's graceful_timeout."""
        deadline = time.monotonic() + max(0.0, self.cfg.graceful_timeout - DRAIN_MARGIN)
        self.silent_wait = SILENT_GRACE
        soon = time.monotonic() + SILENT_GRACE
        for parked in self.parked.values():
            parked.deadline = min(parked.deadline, deadline if parked.received else soon)
        while time.monotonic() < deadline:
            self.notify()
            waiting = self.accept_waiting()
            self.serve_parked()
            if not waiting:
                if not self.parked:
                    return
                self.serve_parked(_readable(list(self.parked), 0.05))
        for client in list(self.parked):
            self.hand_over(client, read_timeout=0.5)

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

    def handle_abort(self, sig, frame) -> None:
        """gunicorn's timeout (SIGABRT): exit at once, no draining (the master kills us next)."""
        self.aborting = True
        super().handle_abort(sig, frame)

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


def _read_available(client: socket.socket, received: bytearray) -> bool:
    """Append what the client has sent (without waiting) to `received`, up to what a whole
    request may take here; True when the peer closed its side or the socket failed."""
    room = HEADER_LIMIT + BODY_LIMIT - len(received)
    while room > 0:
        try:
            chunk = client.recv(min(room, 256 * 1024), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        if not chunk:
            return True
        received += chunk
        room -= len(chunk)
    return False


def _request_whole(received: bytes | bytearray) -> bool:
    """Whether `received` holds a whole request for gunicorn to read: its headers, and its body
    up to BODY_LIMIT bytes (or nothing more to wait for: a body the client sends only after
    "100 Continue", one longer than the limit, a bad length, headers over HEADER_LIMIT)."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        return len(received) >= HEADER_LIMIT
    headers = bytes(received[:end]).lower()
    body = len(received) - end - 4
    if b"\nexpect:" in headers and b"100-continue" in headers:
        return True
    if b"\ntransfer-encoding:" in headers and b"chunked" in headers:
        return body >= BODY_LIMIT or bytes(received[-5:]) == b"0\r\n\r\n"
    length = 0
    for line in headers.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return True  # gunicorn answers a bad length
    return body >= min(length, BODY_LIMIT) or length > BODY_LIMIT


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


def _readable(sockets: list[socket.socket], wait: float) -> list[socket.socket]:
    """The sockets with bytes to read (or a closed peer) within `wait` seconds."""
    try:
        return select.select(sockets, [], [], wait)[0]
    except (OSError, ValueError):
        return []
