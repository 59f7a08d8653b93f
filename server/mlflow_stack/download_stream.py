"""The chunks an artifact download is sent in (the streaming route in app.py, reading
from S3 in proxied_s3.py).

Each chunk takes a thread hop and crosses MLflow's three BaseHTTPMiddleware layers (an
anyio task and memory stream each). With 1 MiB chunks that machinery held about a third
of a worker's GIL samples during downloads, and 8 MiB chunks cut the mlflow container's
CPU per GiB by 15-20%. The first chunk stays small, so the first byte does not wait for
8 MiB to arrive from S3.
"""

from collections.abc import Iterator

STREAM_FIRST_CHUNK_BYTES = 1 << 20
STREAM_CHUNK_BYTES = 8 << 20


def growing_chunks(body, first_chunk_bytes: int = STREAM_FIRST_CHUNK_BYTES,
                   chunk_bytes: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
    """botocore's ``StreamingBody.iter_chunks`` with a first chunk of another size. Its
    ``read`` still raises ``IncompleteReadError`` when the body ends short."""
    size = first_chunk_bytes
    while chunk := body.read(size):
        yield chunk
        size = chunk_bytes
