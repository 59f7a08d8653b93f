"""A webhook receiver for the tests, run on a NetworkMachine: python receiver.py SECRET PORT.

Records every POST (path, headers, body, whether MLflow's signature verified) as one JSON
line in /tmp/deliveries.jsonl, and answers 200 if the signature verified, else 401.
Also plays a tiny OpenAI-compatible provider: POST .../chat/completions is recorded (with
its Authorization header) and answered with a fixed chat completion.
Signature (mlflow/webhooks/delivery.py): X-MLflow-Signature = "v1," + base64(HMAC-SHA256(
secret, f"{X-MLflow-Delivery-Id}.{X-MLflow-Timestamp}.{body}")).
"""

import base64
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET, PORT = sys.argv[1], int(sys.argv[2])
LOG = "/tmp/deliveries.jsonl"


def verified(headers, body: bytes) -> bool:
    signature = headers.get("X-MLflow-Signature", "")
    delivery, timestamp = headers.get("X-MLflow-Delivery-Id", ""), headers.get("X-MLflow-Timestamp", "")
    signed = f"{delivery}.{timestamp}.{body.decode()}".encode()
    expected = "v1," + base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()).decode()
    return bool(signature) and hmac.compare_digest(signature, expected)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = verified(self.headers, body)
        record = {"path": self.path, "headers": dict(self.headers), "body": body.decode(),
                  "verified": ok}
        with open(LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.path.endswith("/chat/completions"):
            answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                      "model": "fake", "choices": [{"index": 0, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": "pong"}}],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            data, status = json.dumps(answer).encode(), 200
        else:
            data, status = b'{"ok": %s}' % (b"true" if ok else b"false"), (200 if ok else 401)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
