"""The UI's files sent gzip-compressed to browsers that accept it.

MLflow serves its UI (26 MB; main.js alone is 4.4 MB) uncompressed, and nothing in front
of it compresses: a browser's first visit to a runs page received 8.7 MB, 1.4 s of
transfer alone at 50 Mbit/s, more over a VPN (docs/performance.md). Upstream the request
was closed with a CDN as the answer (mlflow/mlflow#4040; for API responses, #1936).

Run as a script, as the image does at build time, this writes ``<file>.gz`` beside each
text file of MLflow's UI in this environment (26.1 MB to 7.2 MB). Imported, ``install``
makes MLflow's static route send the ``.gz`` to a request that accepts gzip: the same
visit receives 2.6 MB. It is MLflow's own view that sends the file, so the path checks and
the cache lifetime stay MLflow's; werkzeug derives the type and ``Content-Encoding: gzip``
from the file name. Nothing is compressed per request, which would cost CPU on a server
whose workers share two cores with PostgreSQL.
"""

import gzip
import logging
import os
import sys
from pathlib import Path

# Formats that are not compressed already (woff2, png and the like gain nothing).
COMPRESSIBLE_SUFFIXES = {".js", ".mjs", ".cjs", ".css", ".html", ".json", ".svg", ".ttf",
                         ".eot", ".ico", ".map", ".txt"}
MIN_BYTES = 1024  # below a TCP segment or so, compressing saves no time
MIN_SAVING = 0.1  # keep a .gz only if it is at least this much smaller

logger = logging.getLogger(__name__)


def compress_folder(folder: Path) -> tuple[int, int, int]:
    """Write ``<file>.gz`` beside each compressible file of ``folder`` that it shrinks enough.
    Deterministic (no time or name in the gzip header): a rebuild writes the same bytes.
    Returns (files compressed, bytes before, bytes after)."""
    count = before = after = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix not in COMPRESSIBLE_SUFFIXES:
            continue
        data = path.read_bytes()
        if len(data) < MIN_BYTES:
            continue
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        if len(packed) > len(data) * (1 - MIN_SAVING):
            continue
        path.with_name(path.name + ".gz").write_bytes(packed)
        count, before, after = count + 1, before + len(data), after + len(packed)
    return count, before, after


def compressed_files(folder: str) -> frozenset[str]:
    """The paths, relative to ``folder`` and with '/' as MLflow's route receives them, of
    the files that have a ``.gz`` beside them."""
    found = set()
    for directory, _, names in os.walk(folder):
        present = set(names)
        for name in names:
            if name.endswith(".gz") and name[:-3] in present:
                relative = os.path.relpath(os.path.join(directory, name[:-3]), folder)
                found.add(relative.replace(os.sep, "/"))
    return frozenset(found)


def install(flask_app) -> int:
    """Make MLflow's static route prefer the ``.gz`` of a file when the request accepts
    gzip. Returns how many files can be sent compressed (0: the route is left as it is)."""
    view = flask_app.view_functions.get("serve_static_file")
    if view is None or not flask_app.static_folder:
        logger.warning("MLflow's static route was not found: the UI is sent uncompressed "
                       "(mlflow_stack/compressed_static.py)")
        return 0
    compressed = compressed_files(flask_app.static_folder)
    if not compressed:
        return 0
    from flask import request

    def serve_static_file(path):
        if path not in compressed:
            return view(path)
        response = None
        if request.accept_encodings["gzip"]:
            response = view(path + ".gz")
            if response.headers.get("Content-Encoding") != "gzip":
                response.close()  # werkzeug no longer derives it from the name: play safe
                response = None
        if response is None:
            response = view(path)
        # The same URL answers differently by Accept-Encoding: caches must keep both apart.
        response.vary.add("Accept-Encoding")
        return response

    flask_app.view_functions["serve_static_file"] = serve_static_file
    return len(compressed)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) > 1:
        folder = Path(sys.argv[1])
    else:  # mlflow/server/__init__.py: Flask(static_folder="js/build"), found without importing it
        from importlib.util import find_spec

        folder = Path(find_spec("mlflow").submodule_search_locations[0], "server", "js", "build")
    if not folder.is_dir():
        sys.exit(f"compressed_static: {folder} is not a directory; MLflow's UI is missing "
                 "from this installation")
    count, before, after = compress_folder(folder)
    logger.info("compressed_static: %d files of MLflow's UI, %.1f MB -> %.1f MB gzip",
                count, before / 1e6, after / 1e6)


if __name__ == "__main__":
    main()
