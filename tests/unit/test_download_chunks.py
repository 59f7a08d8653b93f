"""The download route's chunks (mlflow_stack/download_stream.py): a small first
chunk, then large ones, every byte in order, and a failing read passed on. (In the server
the body is botocore's StreamingBody, whose read() checks the length at the end; this
test runner, a laptop, has no botocore, so a file object stands in for it.)"""

import io
import os

import pytest

from mlflow_stack import download_stream
from mlflow_stack.download_stream import growing_chunks


@pytest.mark.parametrize("total", [0, 1, 99, 100, 101, 899, 900, 901, 1000, 12345])
def test_first_chunk_then_large_ones_keep_every_byte(total):
    data = os.urandom(total)
    chunks = list(growing_chunks(io.BytesIO(data), 100, 800))
    assert b"".join(chunks) == data
    expected, rest, size = [], total, 100
    while rest:
        expected.append(min(size, rest))
        rest, size = rest - expected[-1], 800
    assert [len(c) for c in chunks] == expected


def test_a_failing_read_is_passed_on_after_the_chunks_before_it():
    class CutOff(io.BytesIO):
        def read(self, size=-1):
            if self.tell() >= 900:
                raise ConnectionResetError("S3 went away")
            return super().read(size)

    chunks = growing_chunks(CutOff(b"x" * 2000), 100, 800)
    assert [len(next(chunks)), len(next(chunks))] == [100, 800]
    with pytest.raises(ConnectionResetError):
        next(chunks)


def test_the_route_sends_a_small_first_chunk_and_large_ones_after():
    # The first byte leaves once the first chunk has arrived from S3; later chunks are
    # large because each one costs a thread hop and three middleware passes.
    assert download_stream.STREAM_FIRST_CHUNK_BYTES <= 1 << 20
    assert download_stream.STREAM_CHUNK_BYTES >= 4 * download_stream.STREAM_FIRST_CHUNK_BYTES
