"""A TCP relay to the apiserver that tests cut: every connection through it aborted mid-flight (a watch, a
request awaiting its answer), and new ones closed at once, until restored. TLS passes through untouched."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class Relay:
    """The relay on the running event loop; `start()` returns the URL to use instead of the apiserver's."""

    def __init__(self, port: int, latency: float = 0.0) -> None:
        self.port, self.latency, self.cut = port, latency, False
        self.writers: set[asyncio.StreamWriter] = set()
        self.aborted = 0  # connections cut while open

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers |= {writer, upstream_writer}
        pipes = _pipe(reader, upstream_writer), _pipe(upstream_reader, writer, self.latency)
        await asyncio.gather(*pipes, return_exceptions=True)
        self.writers -= {writer, upstream_writer}

    def drop(self) -> None:
        self.cut = True
        self.aborted += len(self.writers) // 2
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    def close(self) -> None:
        self.drop()
        self.server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float = 0.0) -> None:
    try:
        while data := await reader.read(65536):
            await asyncio.sleep(latency)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


class RelayThread:
    """A Relay on its own event loop in a thread, for a process under test (the operator) to connect through:
    `with RelayThread(port) as url: ...`. With `latency`, each answer waits that long: requests are in flight
    longer, so that a cut meets them."""

    def __init__(self, port: int, latency: float = 0.0) -> None:
        self.relay = Relay(port, latency)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="relay", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return str(asyncio.run_coroutine_threadsafe(self.relay.start(), self.loop).result(timeout=10))

    def __exit__(self, *_: object) -> None:
        self._on_loop(self.relay.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def drop(self) -> None:
        """Abort every open connection; new ones are closed at once until `restore()`."""
        self._on_loop(self.relay.drop)

    def restore(self) -> None:
        self._on_loop(lambda: setattr(self.relay, "cut", False))

    @property
    def aborted(self) -> int:
        return self.relay.aborted

    def _on_loop(self, function: Callable[[], object]) -> None:
        async def call() -> None:
            function()

        asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)
