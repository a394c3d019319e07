"""The HTTP server's connections: one thread reads requests, a fixed pool of workers answers them.

A slow or idle client costs a socket and a buffer, never a thread: one selector thread accepts
connections, does the TLS handshakes and reads each request (head and body) without blocking, and
hands a worker only a request that is complete. A request that is not complete within
`Limits.request_seconds` of its connection is answered 408 and closed; one whose head or body is
too large, 431 or 413. Beyond `Limits.max_connections` open connections a new one gets a quick 503
(plain HTTP) or is closed (TLS). So the threads are the reader and `Limits.workers`, whatever comes.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("greenai.export")


@dataclass(frozen=True)
class Limits:
    """What one client may take from the server; times in seconds, sizes in bytes."""

    workers: int = 8
    """Threads that answer complete requests (rendering /metrics, reading the ledger); 0: the reader
    answers each request itself, for answers that take microseconds (the local socket's)."""
    max_connections: int = 512
    """Connections open at once, being read or waiting for a worker; more get a quick 503."""
    backlog: int = 128
    """Connections the kernel holds before the reader accepts them (listen backlog)."""
    request_seconds: float = 5.0
    """From accepting a connection to having its whole request (TLS handshake, head, body)."""
    write_seconds: float = 5.0
    """To send a reply to a client that does not read it."""
    max_head_bytes: int = 16384
    max_body_bytes: int = 4096


DRAIN_SECONDS = 1.0
"""How long an error answer waits for the client to close, reading and dropping what it sends."""

Answer = Callable[[socket.socket, tuple[str, int], bytes], None]
"""A worker's job: answer the complete request (head and body bytes) on the socket, blocking."""

_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections"
)


def _status(code: int, reason: str) -> bytes:
    body = f"{reason}\n".encode()
    return (
        f"HTTP/1.0 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@dataclass
class _Pending:
    """A connection whose request is still being read."""

    sock: socket.socket
    address: tuple[str, int]
    deadline: float
    handshaking: bool
    data: bytearray = field(default_factory=bytearray)
    head_end: int = -1
    body_length: int = 0
    draining: bool = False
    """Answered with an error: what the client still sends is read and dropped until it closes,
    so that closing does not reset the connection before the client has read the answer."""


class TooLarge(Exception):
    """The request's head or body is over its limit; args: (status, reason)."""


def body_length(head: bytes) -> int:
    """The Content-Length of a request head (0 when absent); ValueError when it is not a number."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            text = value.strip()
            if not text.isdigit():
                raise ValueError("bad Content-Length")
            return int(text)
    return 0


class Connections:
    """Accepts on `listener`, reads requests and passes complete ones to `answer` on a worker."""

    def __init__(
        self, listener: socket.socket, answer: Answer, limits: Limits, tls: ssl.SSLContext | None = None
    ) -> None:
        self._listener = listener
        self._answer = answer
        self._limits = limits
        self._tls = tls
        self._selector = selectors.DefaultSelector()
        self._pending: dict[socket.socket, _Pending] = {}
        self._open = 0  # being read, queued, or being answered
        self._open_lock = threading.Lock()
        self._ready: queue.Queue[tuple[socket.socket, tuple[str, int], bytes] | None] = queue.Queue()
        self._stopping = threading.Event()
        # stop() writes here to wake the reader: it sleeps without a timeout while nothing is pending.
        self._wake_r, self._wake_w = socket.socketpair()
        self._threads = [threading.Thread(target=self._read_loop, name="http-reader", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"http-{i}", daemon=True) for i in range(limits.workers)
        ]

    def start(self) -> None:
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop accepting and reading, let the workers finish what they answer, close everything."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        for _ in range(self._limits.workers):
            self._ready.put(None)
        for t in self._threads:
            t.join(self._limits.write_seconds + 1)
        self._wake_w.close()

    # ---- the reader thread ----

    def _read_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(timeout=self._timeout()):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is not self._wake_r:
                        self._readable(self._pending[key.fileobj])  # type: ignore[index]
                self._expire(time.monotonic())
        finally:
            for pending in list(self._pending.values()):
                self._close(pending, "the server stops")
            self._selector.close()
            self._wake_r.close()

    def _timeout(self) -> float | None:
        """Until the first pending connection's deadline; with none pending, no timeout (an idle agent
        does not wake this thread: stop() wakes it)."""
        if not self._pending:
            return None
        return max(0.0, min(p.deadline for p in self._pending.values()) - time.monotonic())

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, then back to the others
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors, or the peer gave up in the backlog
                log.warning("cannot accept a connection: %s", e)
                return
            if not isinstance(address, tuple):  # a Unix socket's peer has no address: name it
                address = ("local", 0)
            with self._open_lock:
                full = self._open >= self._limits.max_connections
                if not full:
                    self._open += 1
            if full:
                self._refuse(sock, address)
                continue
            sock.setblocking(False)
            handshaking = False
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                handshaking = True
            pending = _Pending(sock, address, time.monotonic() + self._limits.request_seconds, handshaking)
            self._pending[sock] = pending
            self._selector.register(sock, selectors.EVENT_READ)
            if handshaking:
                self._handshake(pending)
            elif self._limits.workers == 0:  # a local caller has usually sent its request already
                self._receive(pending)

    def _refuse(self, sock: socket.socket, address: tuple[str, int]) -> None:
        log.debug("%s: refused, %d connections open", address[0], self._limits.max_connections)
        if self._tls is None:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.send(_BUSY)
                sock.shutdown(socket.SHUT_WR)
                sock.recv(65536)  # what the client sent already: unread, closing would reset the 503
        sock.close()

    def _handshake(self, pending: _Pending) -> None:
        assert isinstance(pending.sock, ssl.SSLSocket)
        try:
            pending.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(pending.sock, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._selector.modify(pending.sock, selectors.EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as e:
            self._close(pending, f"TLS handshake failed: {e}")
            return
        pending.handshaking = False
        self._selector.modify(pending.sock, selectors.EVENT_READ)
        self._receive(pending)  # the client may have sent its request with the handshake's end

    def _readable(self, pending: _Pending) -> None:
        if pending.handshaking:
            self._handshake(pending)
        else:
            self._receive(pending)

    def _receive(self, pending: _Pending) -> None:
        while True:
            try:
                chunk = pending.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as e:
                self._close(pending, f"read failed: {e}")
                return
            if not chunk:
                why = "answered" if pending.draining else "the client closed it before its request was whole"
                self._close(pending, why)
                return
            if pending.draining:
                continue
            pending.data += chunk
            try:
                complete = self._complete(pending)
            except TooLarge as e:
                self._reply_and_close(pending, *e.args)
                return
            except ValueError as e:
                self._reply_and_close(pending, 400, f"Bad Request: {e}")
                return
            if complete:
                self._selector.unregister(pending.sock)
                del self._pending[pending.sock]
                if self._limits.workers == 0:  # answered here: quick answers to local callers
                    self._handle(pending.sock, pending.address, bytes(pending.data))
                else:
                    self._ready.put((pending.sock, pending.address, bytes(pending.data)))
                return

    def _complete(self, pending: _Pending) -> bool:
        """Whether the whole request is in; raises TooLarge or ValueError."""
        limits = self._limits
        if pending.head_end < 0:
            end = pending.data.find(b"\r\n\r\n")
            if end < 0:
                if len(pending.data) > limits.max_head_bytes:
                    raise TooLarge(431, "Request Header Fields Too Large")
                return False
            pending.head_end = end + 4
            if pending.head_end > limits.max_head_bytes:
                raise TooLarge(431, "Request Header Fields Too Large")
            pending.body_length = body_length(bytes(pending.data[:end]))
            if pending.body_length > limits.max_body_bytes:
                raise TooLarge(413, "Content Too Large")
        received = len(pending.data) - pending.head_end
        if received > pending.body_length:
            del pending.data[pending.head_end + pending.body_length :]  # HTTP/1.0: nothing may follow
        return received >= pending.body_length

    def _expire(self, now: float) -> None:
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            if pending.draining:
                self._close(pending, "answered")
            elif pending.handshaking:
                self._close(pending, "no TLS handshake in time")
            else:
                self._reply_and_close(pending, 408, "Request Timeout")

    def _reply_and_close(self, pending: _Pending, status: int, reason: str) -> None:
        log.debug("%s: %d %s", pending.address[0], status, reason)
        try:  # the reply is a courtesy; the connection closes either way
            pending.sock.send(_status(status, reason))
            pending.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(pending, "the client went away")
            return
        pending.draining = True
        pending.deadline = time.monotonic() + DRAIN_SECONDS

    def _close(self, pending: _Pending, why: str) -> None:
        log.debug("%s: connection closed: %s", pending.address[0], why)
        self._selector.unregister(pending.sock)
        del self._pending[pending.sock]
        pending.sock.close()
        self._closed()

    def _closed(self) -> None:
        with self._open_lock:
            self._open -= 1

    # ---- the workers ----

    def _work(self) -> None:
        while True:
            item = self._ready.get()
            if item is None:
                return
            self._handle(*item)

    def _handle(self, sock: socket.socket, address: tuple[str, int], request: bytes) -> None:
        """Answer one complete request and close its connection."""
        try:
            if self._stopping.is_set():
                return
            sock.settimeout(self._limits.write_seconds)  # blocking, within a time limit
            self._answer(sock, address, request)
        except (ConnectionError, TimeoutError) as e:
            log.debug("%s: client went away: %s", address[0], e)
        except Exception:  # a worker must outlive any one request
            log.exception("%s: answering a request failed", address[0])
        finally:
            _shut(sock)
            self._closed()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.close()
