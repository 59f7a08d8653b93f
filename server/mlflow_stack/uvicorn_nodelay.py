"""TCP_NODELAY on the connections uvicorn accepts when it runs several workers.

Why: with ``--workers N`` (N > 1, as ``mlflow server`` runs it) uvicorn creates its
listening socket with ``socket.socket(family=...)``, so the socket's ``proto`` is 0.
Accepted sockets inherit that value, and asyncio only turns Nagle's algorithm off when
``proto == IPPROTO_TCP``. The server then writes a response's headers and body as two
segments, and Nagle holds the body until the client's delayed ACK (~40 ms): every call
on a kept-alive connection (every MLflow client call, every UI request) waits ~40 ms.

Upstream: https://github.com/Kludex/uvicorn/issues/3149 (fix PRs #3154 and #3155, not in
uvicorn 0.54.0). The fix here is the same idea, one level up: the listening socket is
re-wrapped with ``proto=IPPROTO_TCP`` (same file descriptor), so asyncio sets TCP_NODELAY
on every connection the workers accept. tests/e2e/test_05_uvicorn_nodelay.py fails when
this stops working, and when uvicorn no longer needs it (then delete this file and the
.pth line in server/Dockerfile).

A .pth file imports this module in every Python process of the image; it patches only the
process started as ``python -m uvicorn`` (MLflow's command), and only imports uvicorn
there. MLFLOW_STACK_UVICORN_NODELAY=0 turns it off (the test uses that to see the bug).
"""

import functools
import os
import socket
import sys

_MARK = "_mlflow_stack_nodelay"


def tcp_socket(sock: socket.socket) -> socket.socket:
    """The same listening socket, with proto=IPPROTO_TCP if it was left at 0."""
    if (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and sock.proto == 0
    ):
        return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


def install() -> None:
    from uvicorn.config import Config

    original = Config.bind_socket
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def bind_socket(self):
        return tcp_socket(original(self))

    setattr(bind_socket, _MARK, True)
    Config.bind_socket = bind_socket


def started_as_uvicorn() -> bool:
    return list(getattr(sys, "orig_argv", [])[1:3]) == ["-m", "uvicorn"]


if os.environ.get("MLFLOW_STACK_UVICORN_NODELAY", "1") != "0" and started_as_uvicorn():
    install()
