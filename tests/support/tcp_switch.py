"""A TCP forwarder on a local port that a test can cut and restore: while cut, the port refuses
new connections and open ones are reset, as when a service's host goes away; restored, the same
port forwards again. For faults of services that lose their state when stopped (moto keeps its
queues in memory), so stopping the service itself would test a different thing."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

_CHUNK = 65536


class TcpSwitch:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._accepting: threading.Thread | None = None
        self.connections = 0  # accepted so far, cut or not

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Forward again, on the same port."""
        with self._lock:
            if self._accepting is not None:
                return
            self._listener.listen()
            self._accepting = threading.Thread(
                target=self._accept, args=(self._listener,), daemon=True
            )
            self._accepting.start()

    def cut(self) -> None:
        """Refuse connections and reset the open ones."""
        with self._lock:
            listener, accepting = self._listener, self._accepting
            # A bound socket that does not listen refuses connections and keeps the port ours.
            self._listener = socket.socket()
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._accepting = None
            open_sockets, self._open = self._open, []
        _close(listener)  # ends the accept loop
        if accepting is not None:
            accepting.join(5)
        self._listener.bind(("127.0.0.1", self.port))
        for sock in open_sockets:
            _close(sock)

    def close(self) -> None:
        self.cut()
        _close(self._listener)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(upstream)
                    return
                self.connections += 1
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextlib.contextmanager
def tcp_switch(target: tuple[str, int]) -> Iterator[TcpSwitch]:
    """A switch forwarding to `target`, closed at the end of the block."""
    switch = TcpSwitch(target)
    switch.restore()
    try:
        yield switch
    finally:
        switch.close()
