"""The chunks an artifact download is sent in (the streaming route in app.py, reading
from S3 in proxied_s3.py).

Each chunk takes a thread hop and crosses MLflow's three BaseHTTPMiddleware layers (an
anyio task and memory stream each). With 1 MiB chunks that machinery held about a third
of a worker's GIL samples during downloads. In alternating rounds (docs/performance.md)
4 MiB chunks took the mlflow container's CPU per GiB from 0.84 to 0.73 s, and 8 MiB to
0.69 s at about twice the memory per download (a few chunks are in flight at once), so 4.
The first chunk stays small, so the first byte does not wait for more to arrive from S3.
"""

from collections.abc import Iterator

STREAM_FIRST_CHUNK_BYTES = 1 << 20
STREAM_CHUNK_BYTES = 4 << 20


def growing_chunks(body, first_chunk_bytes: int = STREAM_FIRST_CHUNK_BYTES,
                   chunk_bytes: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
    """botocore's ``StreamingBody.iter_chunks`` with a first chunk of another size. Its
    ``read`` still raises ``IncompleteReadError`` when the body ends short."""
    size = first_chunk_bytes
    while chunk := body.read(size):
        yield chunk
        size = chunk_bytes
