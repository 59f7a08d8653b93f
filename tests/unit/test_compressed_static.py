"""compressed_static.py: the .gz files written at build time, and MLflow's own static route
(mlflow.server.app, pointed at a temporary folder) sending them."""

import gzip
import os

import pytest

from mlflow_stack import compressed_static

SCRIPT = b"function answer(){return 42}\n" * 2000  # compresses well
FONT = os.urandom(20_000)  # as a woff2 is: already compressed


@pytest.fixture
def ui_folder(tmp_path):
    folder = tmp_path / "build"
    (folder / "static" / "js").mkdir(parents=True)
    (folder / "static" / "media").mkdir()
    (folder / "static" / "js" / "main.abc123.js").write_bytes(SCRIPT)
    (folder / "static" / "js" / "tiny.js").write_bytes(b"x=1")
    (folder / "static" / "media" / "font.woff2").write_bytes(FONT)
    (folder / "static" / "media" / "noise.svg").write_bytes(FONT)
    return folder


def test_compress_folder_writes_gz_only_where_it_saves(ui_folder):
    count, before, after = compressed_static.compress_folder(ui_folder)
    script = ui_folder / "static" / "js" / "main.abc123.js"
    assert (count, before) == (1, len(SCRIPT))
    assert gzip.decompress((script.parent / (script.name + ".gz")).read_bytes()) == SCRIPT
    assert after < len(SCRIPT) / 10
    assert not (ui_folder / "static" / "js" / "tiny.js.gz").exists()  # too small to matter
    assert not (ui_folder / "static" / "media" / "font.woff2.gz").exists()  # not a text format
    assert not (ui_folder / "static" / "media" / "noise.svg.gz").exists()  # would not shrink
    assert compressed_static.compressed_files(str(ui_folder)) == {"static/js/main.abc123.js"}


def test_compress_folder_is_deterministic(ui_folder):
    gz = ui_folder / "static" / "js" / "main.abc123.js.gz"
    compressed_static.compress_folder(ui_folder)
    first = gz.read_bytes()
    os.utime(ui_folder / "static" / "js" / "main.abc123.js", (1, 1))
    compressed_static.compress_folder(ui_folder)
    assert gz.read_bytes() == first


@pytest.fixture
def mlflow_static_route(ui_folder, monkeypatch):
    """MLflow's Flask app with its static folder at ui_folder; the view restored after."""
    from mlflow.server import app

    monkeypatch.setattr(app, "static_folder", str(ui_folder))
    view = app.view_functions["serve_static_file"]
    yield app
    app.view_functions["serve_static_file"] = view


def get(app, path, **headers):
    return app.test_client().get("/static-files/" + path, headers=headers)


def test_mlflow_still_sends_its_ui_uncompressed(ui_folder, mlflow_static_route):
    # If this fails, MLflow compresses its UI itself and compressed_static.py can go.
    compressed_static.compress_folder(ui_folder)
    response = get(mlflow_static_route, "static/js/main.abc123.js", **{"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.data == SCRIPT


def test_static_route_sends_the_gz_to_who_accepts_it(ui_folder, mlflow_static_route):
    app = mlflow_static_route
    plain = get(app, "static/js/main.abc123.js")
    compressed_static.compress_folder(ui_folder)
    assert compressed_static.install(app) == 1

    packed = get(app, "static/js/main.abc123.js", **{"Accept-Encoding": "gzip, deflate, br"})
    assert packed.status_code == 200
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == SCRIPT
    assert len(packed.data) < len(SCRIPT) / 10
    for header in ("Content-Type", "Cache-Control"):  # MLflow's type and 28-day lifetime
        assert packed.headers[header] == plain.headers[header], header
    assert packed.headers["ETag"] != plain.headers["ETag"]  # another representation
    assert "accept-encoding" in packed.headers["Vary"].lower()

    for refused in ({}, {"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip;q=0, br"}):
        response = get(app, "static/js/main.abc123.js", **refused)
        assert response.status_code == 200, refused
        assert "Content-Encoding" not in response.headers, refused
        assert response.data == SCRIPT, refused
        assert "accept-encoding" in response.headers["Vary"].lower(), refused

    # A browser revalidating its cached copy: MLflow's conditional answer, for the .gz.
    again = get(app, "static/js/main.abc123.js",
                **{"Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]})
    assert (again.status_code, again.data) == (304, b"")
    assert "accept-encoding" in again.headers["Vary"].lower()

    font = get(app, "static/media/font.woff2", **{"Accept-Encoding": "gzip"})
    assert (font.status_code, font.data) == (200, FONT)
    assert "Content-Encoding" not in font.headers and "Vary" not in font.headers


def test_static_route_keeps_mlflows_answers_for_bad_paths(ui_folder, mlflow_static_route):
    app = mlflow_static_route
    compressed_static.compress_folder(ui_folder)
    (ui_folder.parent / "secret.js").write_bytes(SCRIPT)
    (ui_folder.parent / "secret.js.gz").write_bytes(gzip.compress(SCRIPT))
    before = [get(app, path, **{"Accept-Encoding": "gzip"}).status_code
              for path in ("../secret.js", "static/js/missing.js", "static/js/")]
    compressed_static.install(app)
    after = [get(app, path, **{"Accept-Encoding": "gzip"}).status_code
             for path in ("../secret.js", "static/js/missing.js", "static/js/")]
    assert after == before
    assert all(status == 404 for status in after)


def test_install_leaves_a_folder_without_gz_alone(ui_folder, mlflow_static_route):
    view = mlflow_static_route.view_functions["serve_static_file"]
    assert compressed_static.install(mlflow_static_route) == 0
    assert mlflow_static_route.view_functions["serve_static_file"] is view
