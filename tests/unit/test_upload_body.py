"""Upload bodies gathered into blocks of one S3 part before MLflow's middleware
(mlflow_stack/upload_body.py): the same bytes in the same order, a disconnect passed on at
once, and every other request left alone."""

import asyncio
import os
import random

import pytest

from mlflow_stack import upload_stream
from mlflow_stack.upload_body import UploadBodyBlocks, in_blocks

UPLOAD = "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model.bin"


def _server(messages):
    """An ASGI receive that returns ``messages``, then waits for the disconnect forever."""
    queue = list(messages)

    async def receive():
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)

    return receive


def _body(data, sizes):
    messages, at = [], 0
    for size in sizes:
        messages.append({"type": "http.request", "body": data[at:at + size], "more_body": True})
        at += size
    messages.append({"type": "http.request", "body": data[at:], "more_body": False})
    return messages


def _received(receive):
    async def collect():
        out = []
        while True:
            message = await receive()
            out.append(message)
            if message["type"] != "http.request" or not message["more_body"]:
                return out

    return asyncio.run(collect())


@pytest.mark.parametrize("total", [0, 1, 99, 100, 101, 250, 1000, 4321])
def test_blocks_are_exactly_one_size_and_keep_every_byte(total):
    rng = random.Random(total)
    data = os.urandom(total)
    sizes, left = [], total
    while left > 0:
        sizes.append(min(left, rng.choice([0, 1, 7, 64, 100, 250])))
        left -= sizes[-1]
    messages = _received(in_blocks(_server(_body(data, sizes)), 100))
    bodies = [m["body"] for m in messages]
    assert b"".join(bodies) == data
    assert all(len(body) == 100 for body in bodies[:-1])
    assert [m["more_body"] for m in messages] == [True] * (len(messages) - 1) + [False]
    assert all(type(body) is bytes for body in bodies)


def test_a_disconnect_mid_block_is_passed_on_at_once():
    messages = [{"type": "http.request", "body": b"x" * 30, "more_body": True},
                {"type": "http.disconnect"}]
    received = _received(in_blocks(_server(messages), 100))
    assert received == [{"type": "http.disconnect"}]


def test_after_the_body_the_servers_messages_come_through():
    messages = _body(b"y" * 150, [150]) + [{"type": "http.disconnect"}]
    receive = in_blocks(_server(messages), 100)

    async def run():
        return [await receive() for _ in range(3)]

    got = asyncio.run(run())
    assert [(m["body"], m["more_body"]) for m in got[:2]] == [(b"y" * 100, True),
                                                              (b"y" * 50, False)]
    assert got[2] == {"type": "http.disconnect"}


@pytest.mark.parametrize("method, path, wrapped", [
    ("PUT", UPLOAD, True),
    ("PUT", "/ajax-api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/a.txt", True),
    ("GET", UPLOAD, False),
    ("POST", "/api/2.0/mlflow/runs/log-batch", False),
])
def test_only_artifact_uploads_are_gathered(method, path, wrapped):
    seen = {}

    async def app(scope, receive, send):
        seen["receive"] = receive

    original = _server([])
    asyncio.run(UploadBodyBlocks(app, 100)({"type": "http", "method": method, "path": path},
                                           original, None))
    assert (seen["receive"] is not original) == wrapped


class _Clock:
    """Seconds that pass only when the test's client sends a piece."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


def test_a_slow_clients_blocks_go_on_short_instead_of_waiting_for_a_whole_part(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(upload_stream, "time", clock)  # BlockGatherer's clock
    data = os.urandom(95)
    pieces = [{"type": "http.request", "body": data[at:at + 10], "more_body": at + 10 < 95}
              for at in range(0, 95, 10)]

    async def receive():  # a piece every 2 s
        clock.now += 2
        return pieces.pop(0)

    bodies = [m["body"] for m in _received(in_blocks(receive, 100))]
    assert b"".join(bodies) == data
    assert len(bodies) > 1 and all(len(body) < 100 for body in bodies), [len(b) for b in bodies]
