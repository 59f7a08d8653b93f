"""The web UI in a real browser: Debian's chromium driven by Playwright.

The browser is the system's /usr/bin/chromium (scripts/install-test-browser installs it);
these tests never download one. Each test saves a screenshot to .test-screenshots/, or
to the folder STACK_SCREENSHOT_DIR names: `STACK_SCREENSHOT_DIR=docs/screenshots
scripts/test tests/e2e/test_70_browser.py` regenerates the pictures the README shows.
"""

import gzip
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from .stack import REPO
from .test_40_permissions import new_user

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
SCREENSHOTS = REPO / os.environ.get("STACK_SCREENSHOT_DIR", ".test-screenshots")
TIMEOUT_MS = 20_000
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM}; "
                    "install it with scripts/install-test-browser (as root)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the playwright package pinned in "
                    "tests/requirements.txt; run scripts/test to install it")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def open_ui(browser, stack):
    """open_ui(username, password) -> a page of a fresh browser context logged in with
    HTTP basic credentials, at the experiments list, in "Model training" mode."""
    contexts = []

    def open_page(username, password, path="/#/experiments"):
        context = browser.new_context(
            http_credentials={"username": username, "password": password},
            viewport=VIEWPORT, accept_downloads=True,
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        response = page.goto(stack.url + "/#/experiments")
        assert response is not None and response.status == 200, response and response.status
        tidy(page)
        if path != "/#/experiments":
            page.goto(stack.url + path)
        return page

    yield open_page
    for context in contexts:
        context.close()


def tidy(page):
    """Switch to the classic "Model training" navigation and close the assistant panel,
    which MLflow opens by default (it only makes screenshots narrower)."""
    from playwright.sync_api import expect

    training = page.get_by_role("button", name="Model training", exact=True)
    expect(training).to_be_visible()
    training.click()
    close = page.get_by_role("button", name="Close", exact=True)
    try:
        close.first.wait_for(state="visible", timeout=3000)
        close.first.click()
    except Exception:  # no assistant panel in this build: nothing to close
        pass


def screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)  # let charts finish their transition
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def suffix():
    return uuid.uuid4().hex[:6]


def test_ui_asks_for_a_login_and_lists_experiments(stack, admin, as_user, browser, open_ui):
    from mlflow import MlflowClient
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    r = requests.get(stack.url + "/", timeout=10)
    assert r.status_code == 401
    assert r.headers.get("WWW-Authenticate", "").lower().startswith("basic")
    # A browser with no login to offer gets the 401 challenge and gives up.
    anonymous = browser.new_context()
    try:
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            anonymous.new_page().goto(stack.url + "/")
    finally:
        anonymous.close()

    as_user(*admin)
    name = f"churn-model-{suffix()}"
    MlflowClient().create_experiment(name)

    page = open_ui(*admin)
    expect(page.get_by_role("heading", name="Experiments")).to_be_visible()
    expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"\badmin\b"))).to_be_visible()
    screenshot(page, "experiments")


def test_ui_files_arrive_gzip_compressed(stack, admin, browser):
    """A browser's first visit gets MLflow's UI gzip-compressed (compressed_static.py), and
    the UI works from it; a client that does not accept gzip gets the same bytes plain."""
    from playwright.sync_api import expect

    context = browser.new_context(
        http_credentials={"username": admin[0], "password": admin[1]}, viewport=VIEWPORT)
    try:
        page = context.new_page()
        files = []
        page.on("response", lambda r: files.append(r) if "/static-files/" in r.url
                and r.url.endswith((".js", ".css")) else None)
        page.goto(stack.url + "/#/experiments")
        expect(page.get_by_role("heading", name="Experiments")).to_be_visible(timeout=TIMEOUT_MS)
        sizes = [(r.url, r.all_headers().get("content-encoding"), len(r.body()),
                  r.request.sizes()["responseBodySize"]) for r in list(files)]
    finally:
        context.close()
    main = [url for url, *_ in sizes if re.search(r"/static/js/main\.\w+\.js$", url)]
    assert len(main) == 1, sizes
    uncompressed = [(url, encoding) for url, encoding, size, _ in sizes
                    if size >= 1024 and encoding != "gzip"]
    assert not uncompressed, f"sent uncompressed: {uncompressed}"
    decoded = sum(size for _, _, size, _ in sizes)
    received = sum(encoded for *_, encoded in sizes)
    assert received < 0.4 * decoded, (received, decoded)

    # Static files stay public, as MLflow has them: no login needed, none checked.
    packed = requests.get(main[0], headers={"Accept-Encoding": "gzip"}, stream=True, timeout=30)
    packed_bytes = packed.raw.read(decode_content=False)
    plain = requests.get(main[0], headers={"Accept-Encoding": "identity"}, timeout=30)
    assert (packed.status_code, plain.status_code) == (200, 200)
    assert packed.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    assert gzip.decompress(packed_bytes) == plain.content
    assert len(packed_bytes) < 0.4 * len(plain.content)
    for header in ("Content-Type", "Cache-Control"):
        assert packed.headers[header] == plain.headers[header], header
    for response in (packed, plain):
        assert "accept-encoding" in response.headers["Vary"].lower()


def test_run_page_shows_params_metric_chart_and_artifacts(stack, admin, as_user, open_ui):
    from mlflow import MlflowClient
    from playwright.sync_api import expect

    as_user(*admin)
    client = MlflowClient()
    experiment_id = client.create_experiment(f"ui-run-{suffix()}")
    run = client.create_run(experiment_id, run_name="depth-6")
    run_id = run.info.run_id
    client.log_param(run_id, "depth", "6")
    client.log_param(run_id, "learning_rate", "0.05")
    for step, auc in enumerate((0.71, 0.80, 0.86, 0.89, 0.91)):
        client.log_metric(run_id, "auc", auc, step=step)
    content = f"validation report {run_id}\nauc 0.91\n".encode()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "report.txt").write_bytes(content)
        client.log_artifact(run_id, str(Path(d) / "report.txt"))
    client.set_terminated(run_id)

    page = open_ui(*admin)
    presigned = []
    page.on("request", lambda req: presigned.append(req.url) if "presigned" in req.url else None)
    run_url = f"{stack.url}/#/experiments/{experiment_id}/runs/{run_id}"

    page.goto(run_url)
    expect(page.get_by_role("heading", name="depth-6")).to_be_visible()
    params = page.get_by_role("table").filter(has_text="learning_rate")
    expect(params.get_by_role("row").filter(has_text="depth")).to_contain_text("6")
    expect(params.get_by_role("row").filter(has_text="learning_rate")).to_contain_text("0.05")

    page.get_by_role("tab", name="Model metrics").click()
    chart = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has=page.get_by_role("heading", name="auc", exact=True))
    expect(chart).to_be_visible()
    expect(chart).to_contain_text("depth-6")
    # The plot is an SVG drawn after the card appears; icons are the only other SVGs.
    page.wait_for_function(
        "card => [...card.querySelectorAll('svg')].some(s => s.getBoundingClientRect().width > 100)",
        arg=chart.element_handle(), timeout=TIMEOUT_MS,
    )
    screenshot(page, "run-metrics")

    page.get_by_role("tab", name="Artifacts").click()
    node = page.get_by_test_id("artifact-tree-node").filter(has_text="report.txt")
    node.click()
    expect(page.get_by_text(f"validation report {run_id}")).to_be_visible()
    screenshot(page, "run-artifact")

    download_button = button_with_tooltip(
        page, page.locator('button[data-component-id*="artifactview"]'), "Download artifact")
    with page.expect_download(timeout=TIMEOUT_MS) as download:
        download_button.click()
    path = download.value.path()
    assert download.value.failure() is None
    assert Path(path).read_bytes() == content
    assert download.value.suggested_filename == "report.txt"
    assert presigned == [], f"the UI asked for presigned URLs: {presigned}"


def button_with_tooltip(page, candidates, tooltip):
    """Icon-only buttons have no accessible name; MLflow labels them with a tooltip."""
    from playwright.sync_api import expect

    expect(candidates.first).to_be_visible()
    seen = []
    for button in candidates.all():
        if not button.is_visible():
            continue
        button.hover()
        tip = page.get_by_role("tooltip").filter(has_text=tooltip)
        try:
            tip.wait_for(state="visible", timeout=3000)
            return button
        except Exception:
            seen.append([t.inner_text() for t in page.get_by_role("tooltip").all()])
    raise AssertionError(f"no button with the tooltip {tooltip!r}; tooltips seen: {seen}")


def test_registered_models_page_shows_the_champion_alias(stack, admin, as_user, open_ui):
    import mlflow
    from mlflow import MlflowClient
    from playwright.sync_api import expect

    class Identity(mlflow.pyfunc.PythonModel):  # the smallest model: returns its input
        def predict(self, context, model_input: list[str], params=None) -> list[str]:
            return model_input

    as_user(*admin)
    name = f"churn-classifier-{suffix()}"
    mlflow.set_experiment(f"ui-models-{suffix()}")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Identity(), registered_model_name=name,
            pip_requirements=[f"mlflow=={mlflow.__version__}"],
        )
    version = info.registered_model_version
    MlflowClient().set_registered_model_alias(name, "champion", version)

    page = open_ui(*admin, path="/#/models")
    announcement = page.get_by_role("dialog").filter(has_text="Model Registry UI")
    try:
        announcement.wait_for(state="visible", timeout=5000)
        announcement.get_by_role("button", name="Close").click()
        expect(announcement).to_be_hidden()
    except Exception as e:  # the announcement shows once per browser profile at most
        if announcement.is_visible():
            raise AssertionError("could not close the model registry announcement") from e
    expect(page.get_by_role("heading", name="Registered Models")).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
    expect(row).to_be_visible()
    expect(row).to_contain_text(re.compile(r"@\s*champion"))
    expect(row).to_contain_text(f"Version {version}")
    screenshot(page, "registered-models")


def test_read_only_user_sees_the_experiment_but_cannot_rename_it(stack, admin, as_user, open_ui):
    from mlflow import MlflowClient
    from playwright.sync_api import expect

    username, password = new_user(stack, f"reader{time.time_ns() % 10**8}")

    as_user(*admin)
    name = f"shared-{suffix()}"
    experiment_id = MlflowClient().create_experiment(name)

    page = open_ui(username, password)
    expect(page.get_by_role("button", name=re.compile(rf"\b{username}\b"))).to_be_visible()
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(re.compile(rf"#/experiments/{experiment_id}\b"))

    page.get_by_test_id("overflow-menu-trigger").click()
    page.get_by_role("menuitem", name="Edit experiment").click()
    dialog = page.get_by_role("dialog").filter(has_text="Edit experiment")
    expect(dialog).to_be_visible()
    dialog.get_by_placeholder("Enter experiment name").fill(f"{name}-renamed")
    with page.expect_response(re.compile(r"/experiments/update$")) as update:
        dialog.get_by_role("button", name="Save", exact=True).click()
    assert update.value.status == 403
    expect(dialog.get_by_role("alert")).to_contain_text("Permission denied")
    screenshot(page, "read-only-edit-denied")

    assert MlflowClient().get_experiment(experiment_id).name == name


def test_trace_opens_with_its_nested_spans(stack, admin, as_user, open_ui):
    import mlflow
    from playwright.sync_api import expect

    as_user(*admin)
    experiment_id = mlflow.set_experiment(f"ui-traces-{suffix()}").experiment_id
    question = f"why-{suffix()}"

    @mlflow.trace(name="retrieve", span_type="RETRIEVER")
    def retrieve(q):
        return [f"doc about {q}"]

    @mlflow.trace(name="answer", span_type="CHAIN")
    def answer(q):
        documents = retrieve(q)
        with mlflow.start_span("generate", span_type="LLM") as span:
            span.set_inputs({"documents": documents})
            span.set_outputs("forty-two")
        return "forty-two"

    answer(question)
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()

    page = open_ui(*admin, path=f"/#/experiments/{experiment_id}/traces")
    tip = page.get_by_role("button", name="Got it")  # a feature tip, once per browser profile
    try:
        tip.wait_for(state="visible", timeout=5000)
        tip.click()
    except Exception as e:
        if tip.is_visible():
            raise AssertionError("could not close the traces page's tip") from e
    page.get_by_text(question).first.click()
    page.wait_for_url(re.compile(rf"traceId={trace_id}\b"))
    panel = page.get_by_role("dialog").filter(has_text=trace_id.removeprefix("tr-")[:8])
    expect(panel).to_be_visible()
    for name in ("answer", "retrieve", "generate"):
        expect(panel.get_by_text(name, exact=True).first).to_be_visible()
    expect(panel.get_by_role("tabpanel")).to_contain_text(question)
    expect(panel.get_by_role("tabpanel")).to_contain_text("forty-two")
    panel.get_by_text("generate", exact=True).first.click()  # the nested span's own inputs
    expect(panel.get_by_role("tabpanel")).to_contain_text(f"doc about {question}")
    screenshot(page, "trace")
