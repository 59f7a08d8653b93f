"""ASGI app for test_05: answers whether the connection it is serving has TCP_NODELAY.

Run in the server image exactly as `mlflow server` runs uvicorn (`python -m uvicorn
--workers N`). ASGI gives an app no socket, so it finds the transport of its own client
connection among the live objects.
"""

import asyncio
import gc
import json
import os
import socket


def _nodelay_of(client: tuple[str, int]) -> int | None:
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Transport) and not obj.is_closing():
            sock = obj.get_extra_info("socket")
            try:
                peer = sock.getpeername() if sock is not None else None
            except OSError:
                continue
            if peer is not None and tuple(peer[:2]) == tuple(client):
                return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return None


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps({"nodelay": _nodelay_of(scope["client"]), "pid": os.getpid()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
