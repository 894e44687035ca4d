"""Running the REST Proxy inside an asyncio loop that is already running.

`josef serve` calls `serve_rest(...)` after its Kafka listener is up; `josef rest-proxy`
uses `RestServer` directly. uvicorn runs as a task of the caller's loop with no signal
handlers of its own (the caller owns SIGTERM/SIGINT) and no logging configuration of its
own. FastAPI and uvicorn are imported here and in josef.rest.app only, so a broker started
without REST never imports them.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from josef.rest.settings import Listener, RestSettings

log = logging.getLogger("josef.rest")


def _bind(listener: Listener) -> socket.socket:
    host = listener.host or "0.0.0.0"
    infos = socket.getaddrinfo(host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class RestServer:
    """The REST Proxy's HTTP server, Kafka clients and consumer instances, as one unit."""

    def __init__(self, settings: RestSettings, *, access_log: bool = False):
        self.settings = settings
        self.access_log = access_log
        self.sockets: list[socket.socket] = []
        self.bound: list[Listener] = []
        self._server = None
        self._task: asyncio.Task | None = None
        self._ctx = None

    @property
    def port(self) -> int:
        return self.bound[0].port if self.bound else 0

    @property
    def urls(self) -> list[str]:
        return [listener.url for listener in self.bound]

    async def start(self) -> "RestServer":
        import uvicorn

        from josef.rest.app import create_app
        from josef.rest.front_door import FrontDoor
        from josef.rest.consumers import ConsumerManager
        from josef.rest.kafka import KafkaBackend

        # bind first: a busy port fails here, before any Kafka client exists
        try:
            for listener in self.settings.listeners:
                sock = _bind(listener)
                self.sockets.append(sock)
                self.bound.append(Listener(listener.scheme, listener.host, sock.getsockname()[1]))
        except BaseException:
            for sock in self.sockets:
                sock.close()
            self.sockets, self.bound = [], []
            raise
        # librdkafka handles start their own threads; keep even that off the loop
        backend = await asyncio.to_thread(KafkaBackend, self.settings)
        consumers = ConsumerManager(self.settings)
        app = create_app(self.settings, backend, consumers)
        self._ctx = app.state.rest
        self._ctx.bound = list(self.bound)

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # the caller owns the signals
                yield

        # uvicorn's start/stop chatter at INFO is noise inside josef; its errors still show
        uv_log = logging.getLogger("uvicorn.error")
        if uv_log.level == logging.NOTSET:
            uv_log.setLevel(logging.WARNING)
        config = uvicorn.Config(FrontDoor(app, app.state.produce_at_front_door), lifespan="off", log_config=None, access_log=self.access_log,
                                server_header=False, timeout_graceful_shutdown=5)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=self.sockets), name="josef-rest")
        while not self._server.started:
            if self._task.done():
                exc = self._task.exception() if not self._task.cancelled() else None
                await self._close_clients()
                raise RuntimeError(f"REST Proxy failed to start: {exc!r}")
            await asyncio.sleep(0.005)
        for listener in self.bound:
            log.info("REST Proxy listening on %s (Kafka %s)", listener.url, self.settings.bootstrap_servers)
        return self

    async def wait(self) -> None:
        """Until the HTTP server stops (after stop(), or if it fails)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await asyncio.shield(self._task)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (requests in flight get their answers, bounded), then close every
        consumer instance and the shared producer (queued records are delivered, bounded)."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                self._server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
            except (asyncio.CancelledError, SystemExit):
                pass
            except Exception:
                log.exception("REST Proxy stopped with an error")
        self._server = None
        self._task = None
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        await self._close_clients()

    async def _close_clients(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            await asyncio.to_thread(ctx.consumers.close)
            await asyncio.to_thread(ctx.backend.close)


async def serve_rest(bootstrap: str, host: str, port: int, *, host_name: str | None = None,
                     settings: RestSettings | None = None) -> RestServer:
    """Start the REST Proxy on `host:port` (0 = any free port) as a client of `bootstrap`,
    inside the running loop. Returns the server; `await server.stop()` ends it."""
    props = dict(settings.props) if settings is not None else {}
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    props.update({"bootstrap.servers": bootstrap, "listeners": f"http://{shown}:{port}"})
    if host_name is not None:
        props["host.name"] = host_name
    return await RestServer(RestSettings(props)).start()
