"""The upload route's hand-over from the event loop to boto3 (mlflow_stack/upload_stream.py):
every byte arrives once and in order, blocks are exactly one part, and a whole block
reaches s3transfer as the object that was put, not a copy."""

import asyncio
import os
import random
import threading

import pytest
from mlflow.exceptions import MlflowException

from mlflow_stack import upload_stream
from mlflow_stack.upload_stream import BlockPipe, UploadAborted, blocks_of


async def _chunks(items):
    for item in items:
        yield item


def _blocks(items, size):
    async def collect():
        return [block async for block in blocks_of(_chunks(items), size)]

    return asyncio.run(collect())


@pytest.mark.parametrize("total", [0, 1, 99, 100, 101, 1000, 12345])
def test_blocks_are_exactly_one_size_and_keep_every_byte(total):
    rng = random.Random(total)
    data = os.urandom(total)
    chunks, at = [], 0
    while at < total:
        step = rng.choice([1, 7, 64, 100, 250])
        chunks.append(data[at:at + step])
        at += step
    blocks = _blocks(chunks, 100)
    assert b"".join(blocks) == data
    assert all(len(block) == 100 for block in blocks[:-1])
    assert all(0 < len(block) <= 100 for block in blocks)
    assert all(type(block) is bytes for block in blocks)


def test_a_reused_buffer_does_not_change_blocks_already_started():
    buffer = bytearray(b"ab")

    async def chunks():
        yield buffer
        buffer[:] = b"XY"  # what a server reusing its receive buffer would do
        yield buffer

    async def collect():
        return [block async for block in blocks_of(chunks(), 3)]

    assert asyncio.run(collect()) == [b"abX", b"Y"]


def _reader(pipe, sizes, out):
    def run():
        try:
            for size in sizes:
                out.append(pipe.read(size))
        except BaseException as e:  # handed to the test's thread
            out.append(e)
        finally:
            pipe.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_whole_block_is_read_without_a_copy():
    first, second = os.urandom(100), os.urandom(100)
    pipe, out = BlockPipe(), []
    thread = _reader(pipe, [100, 100, 100], out)
    pipe.put(first)
    pipe.put(second)
    pipe.finish()
    thread.join(10)
    assert out[0] is first and out[1] is second
    assert out[2] == b""


def test_reads_across_blocks_and_to_the_end():
    blocks = [os.urandom(100) for _ in range(3)]
    pipe, out = BlockPipe(), []
    thread = _reader(pipe, [30, 150, -1, 10], out)
    for block in blocks:
        pipe.put(block)
    pipe.finish()
    thread.join(10)
    assert out == [blocks[0][:30], blocks[0][30:] + blocks[1][:80], blocks[1][80:] + blocks[2],
                   b""]


def test_a_failed_request_fails_the_upload():
    pipe, out = BlockPipe(), []
    thread = _reader(pipe, [100, 100], out)
    pipe.put(b"x" * 100)
    pipe.finish(MlflowException("upload of 'f' interrupted"))
    thread.join(10)
    assert out[0] == b"x" * 100
    assert isinstance(out[1], MlflowException)


def test_a_failed_upload_stops_the_request():
    pipe = BlockPipe()
    pipe.close()  # what the upload thread does when S3 fails
    with pytest.raises(UploadAborted):
        pipe.put(b"x")


def test_a_slow_clients_blocks_go_on_short(monkeypatch):
    """The pipe's idle limit must count from the client's last bytes, not its last part."""
    class Clock:
        now = 0.0

        def monotonic(self):
            return self.now

    clock = Clock()
    monkeypatch.setattr(upload_stream, "time", clock)
    data = os.urandom(95)

    async def slow():  # 10 bytes every 2 s
        for at in range(0, 95, 10):
            clock.now += 2
            yield data[at:at + 10]

    async def collect():
        return [block async for block in blocks_of(slow(), 100)]

    blocks = asyncio.run(collect())
    assert b"".join(blocks) == data
    assert len(blocks) > 1 and all(len(block) < 100 for block in blocks), [len(b) for b in blocks]
