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

import collections

from mlflow_stack.upload_stream import STREAM_BLOCK_BYTES, BlockGatherer

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
    """An ASGI receive that returns the body as blocks of exactly ``size`` bytes
    (upload_stream.BlockGatherer); shorter at the end, and when a slow client's block has
    gathered for STREAM_FLUSH_SECONDS."""
    gatherer = BlockGatherer(size)
    ready = collections.deque()
    body_done = False

    async def receive_block():
        nonlocal body_done
        if body_done and not ready:
            return await receive()  # after the body: the disconnect, when it comes
        while not ready and not body_done:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client left: the request fails, its partial block too
            ready.extend(gatherer.add(message.get("body", b"")))
            body_done = not message.get("more_body", False)
            if body_done or gatherer.overdue():
                if block := gatherer.rest():
                    ready.append(block)
        block = ready.popleft() if ready else b""  # b"": the body was empty
        return {"type": "http.request", "body": block, "more_body": not (body_done and not ready)}

    return receive_block
