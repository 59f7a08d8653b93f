"""Artifact uploads reach MLflow's app in blocks of one S3 part, not in socket-sized pieces.

uvicorn hands a request body to the app in the pieces it read from the socket (at most
~64 KiB each), and every piece then passes through each of MLflow's BaseHTTPMiddleware
layers (workspace context, gateway timing, permission check), each of which starts an anyio
task group and a task to receive it. A py-spy profile of a worker during 1 GiB uploads had
26% of its samples there. This ASGI middleware, outside those layers, gathers an artifact
upload's pieces into blocks of exactly one S3 part (upload_stream.STREAM_BLOCK_BYTES), so
MLflow's layers see ~128 times fewer messages, and the upload hands each block to
s3transfer as it is (upload_stream.py). Headers, paths and permission checks are
untouched; a client that goes away mid-block is passed on at once as a disconnect, and a
slow client's block goes on short after STREAM_FLUSH_SECONDS rather than waiting for 8 MiB.
"""

import time

from mlflow_stack.upload_stream import STREAM_BLOCK_BYTES, STREAM_FLUSH_SECONDS

# MLflow's artifact upload route (mlflow/server/artifact_router.py), under /api and /ajax-api.
UPLOAD_PATH_PART = "/2.0/mlflow-artifacts/artifacts/"


class UploadBodyBlocks:
    def __init__(self, app, block_bytes: int = STREAM_BLOCK_BYTES):
        self.app = app
        self.block_bytes = block_bytes

    async def __call__(self, scope, receive, send):
        if (scope["type"] == "http" and scope["method"] == "PUT"
                and UPLOAD_PATH_PART in scope["path"]):
            receive = in_blocks(receive, self.block_bytes)
        await self.app(scope, receive, send)


def in_blocks(receive, size: int):
    """An ASGI receive that returns the body as blocks of exactly ``size`` bytes, each
    joined once from the pieces ``receive`` returns; shorter at the end, and when a slow
    client's block has gathered for STREAM_FLUSH_SECONDS."""
    leftover = memoryview(b"")
    body_done = False
    finished = False

    async def receive_block():
        nonlocal leftover, body_done, finished
        if finished:
            return await receive()  # after the body: the disconnect, when it comes
        parts = [leftover] if leftover else []
        count = len(leftover)
        leftover = memoryview(b"")
        started = time.monotonic()
        while not body_done and count < size:
            if parts and time.monotonic() - started >= STREAM_FLUSH_SECONDS:
                break
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client left: the request fails, its partial block too
            body = message.get("body", b"")
            body_done = not message.get("more_body", False)
            if body:
                # Views must not see a buffer the server reuses.
                parts.append(memoryview(body if isinstance(body, bytes) else bytes(body)))
                count += len(body)
        if count > size:
            last = parts[-1]
            cut = len(last) - (count - size)
            parts[-1], leftover = last[:cut], last[cut:]
        finished = body_done and not leftover
        return {"type": "http.request", "body": b"".join(parts), "more_body": not finished}

    return receive_block
