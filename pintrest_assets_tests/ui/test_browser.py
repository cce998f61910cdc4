"""The Dagster UI in a real browser: `pintrest dev` on a temporary home, driven by headless Chromium.

Needs Debian's chromium (`sudo make test-system` installs it); screenshots go to test-artifacts/.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pintrest_assets.database.seed import seed
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.net import free_port, is_listening

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.slow


def _wait_for(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "pintrest dev exited early"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer within {timeout}s")


def _location_name() -> str:
    """The code location's name in the UI, as workspace.yaml gives it."""
    [entry] = yaml.safe_load((Path(__file__).resolve().parents[2] / "workspace.yaml").read_text())["load_from"]
    module = entry["python_module"]
    return module.get("location_name") or module["module_name"]


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    """`pintrest dev` (gateway + Dagster UI) on a temporary home with a small sample database."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed: run `sudo make test-system`")
    home = tmp_path_factory.mktemp("home")
    seed(f"sqlite:///{home / 'pintrest.db'}", rows=500)
    ui_port, gateway_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
        "PINTREST_HOME": str(home),
        "PINTREST_REST_PROXY_URL": f"http://127.0.0.1:{gateway_port}",
        # The gateway serves the Kinesis proxy too, in front of its own kinesalite.
        "PINTREST_KINESIS_PROXY_URL": f"http://127.0.0.1:{gateway_port}",
        "PINTREST_KINESIS_LOCAL_PORT": str(free_port()),
    }
    log = open(home / "dev.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pintrest_assets.cli", "dev", "--port", str(ui_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(f"http://127.0.0.1:{ui_port}/server_info", process, timeout=240)
        yield {"url": f"http://127.0.0.1:{ui_port}", "home": home, "process": process, "gateway_port": gateway_port}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def page(dev_server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(dev_server["url"] + "/asset-groups")
        # A first visit asks to join the community: skip it if it shows.
        skip = page.get_by_role("button", name="Skip")
        try:
            skip.click(timeout=15_000)
        except Exception:
            pass
        yield page
        browser.close()


@pytest.mark.parametrize("spec", TOPICS, ids=[spec.name for spec in TOPICS])
def test_lineage_shows_source_table_to_dataframe(dev_server, page, spec):
    page.goto(f"{dev_server['url']}/assets/{spec.dataframe}?view=lineage&lineageScope=upstream&lineageDepth=5")
    chain = [spec.table, spec.topic_asset, spec.raw_asset, spec.dataframe]
    for name in chain:
        page.get_by_text(name, exact=True).first.wait_for(state="visible")
    body = page.inner_text("body")
    others = [s for s in TOPICS if s is not spec]
    # Upstream of this DataFrame are exactly its own topic's assets.
    assert not [o.table for o in others if re.search(rf"\b{o.table}\b", body)]
    assert not [o.topic_asset for o in others if o.topic_asset in body]
    page.screenshot(path=ARTIFACTS / f"lineage-{spec.dataframe}.png")


def test_stream_group_lineage_runs_from_source_tables_through_streams_to_stream_tables(dev_server, page):
    page.goto(f"{dev_server['url']}/locations/{_location_name()}/asset-groups/stream")
    for spec in TOPICS:
        # The source tables show as links to their group, upstream of the streams.
        for name in (spec.table, spec.kinesis_asset, spec.stream_table_asset):
            page.get_by_text(name, exact=True).first.wait_for(state="visible")
    page.screenshot(path=ARTIFACTS / "lineage-stream-group.png")
    for spec in TOPICS:
        page.goto(
            f"{dev_server['url']}/assets/{spec.stream_table_asset}?view=lineage&lineageScope=upstream&lineageDepth=5"
        )
        for name in (spec.table, spec.kinesis_asset, spec.stream_table_asset):
            page.get_by_text(name, exact=True).first.wait_for(state="visible")
        body = page.inner_text("body")
        # Upstream of a stream table are its own source table and stream only: not the batch path's topic.
        assert spec.topic_asset not in body and spec.dataframe not in body
        assert not [o.kinesis_asset for o in TOPICS if o is not spec and o.kinesis_asset in body]
        page.screenshot(path=ARTIFACTS / f"lineage-{spec.stream_table_asset}.png")


def test_materialise_all_by_clicking_succeeds(dev_server, page):
    page.goto(dev_server["url"] + "/asset-groups")
    page.get_by_role("button", name=re.compile(r"Materialize all")).first.click()
    page.screenshot(path=ARTIFACTS / "materialize-clicked.png")

    with dg.DagsterInstance.from_config(str(dev_server["home"] / "dagster")) as instance:
        deadline = time.monotonic() + 420
        while True:
            # The sensor may launch refreshes for the objects the click lands: find the click's run.
            clicked = [r for r in instance.get_runs() if "dagster/sensor_name" not in r.tags]
            if clicked and clicked[0].is_finished:
                break
            assert time.monotonic() < deadline, f"the run did not finish: {clicked[:1]}"
            time.sleep(2)
        run = clicked[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS, (dev_server["home"] / "dev.log").read_text()[-3000:]
        # It refreshed the stream tables too: a local session, beside pintrest dev's Spark Connect server.
        assert _spark_of(instance, run) == "local[*], a JVM in this process"
        for spec in TOPICS:
            event = instance.get_latest_materialization_event(dg.AssetKey(spec.dataframe))
            assert event is not None
            assert event.asset_materialization.metadata["dagster/row_count"].value > 0

        # The objects that run landed wake the sensor: refresh runs follow without a click, on
        # the warm Spark Connect server pintrest dev started, not a JVM of their own.
        deadline = time.monotonic() + 240
        while True:
            refreshes = [r for r in instance.get_runs() if r.tags.get("dagster/sensor_name") == "new_objects_sensor"]
            if refreshes and refreshes[-1].is_finished:
                break
            assert time.monotonic() < deadline, f"no refresh run from new_objects_sensor finished: {refreshes[-1:]}"
            time.sleep(2)
        assert refreshes[-1].status == dg.DagsterRunStatus.SUCCESS
        assert _spark_of(instance, refreshes[-1]) == f"the Spark Connect server at {_spark_remote(dev_server)}"

    # The UI shows the run as a success too.
    page.goto(f"{dev_server['url']}/runs/{run.run_id}")
    page.get_by_text("Success").first.wait_for(state="visible")
    page.goto(f"{dev_server['url']}/assets/df_pin?view=lineage&lineageScope=upstream&lineageDepth=5")
    page.get_by_text("pinterest_data", exact=True).first.wait_for(state="visible")
    page.wait_for_timeout(2000)
    page.screenshot(path=ARTIFACTS / "lineage-after-run.png")


def _spark_of(instance, run) -> str:
    """The Spark a run said it used."""
    said = {e.message for e in instance.all_logs(run.run_id) if (e.message or "").startswith("Spark for this run: ")}
    assert len(said) == 1, said
    return said.pop().removeprefix("Spark for this run: ")


def _spark_remote(dev_server) -> str:
    """The Spark Connect server's URL, as pintrest dev printed it."""
    log = (dev_server["home"] / "dev.log").read_text()
    found = re.search(r"Spark Connect server started on (sc://127\.0\.0\.1:\d+)", log)
    assert found, log[-3000:]
    return found.group(1)


def test_ctrl_c_stops_the_ui_the_stream_service_the_spark_server_and_the_gateway(dev_server):
    from pintrest_assets.stream.service import WriterLock

    # The stream service holds the stream tables while it runs.
    lock = WriterLock(dev_server["home"] / "warehouse")
    deadline = time.monotonic() + 120
    while lock.service_running() is None:
        assert time.monotonic() < deadline, (dev_server["home"] / "dev.log").read_text()[-3000:]
        time.sleep(1)
    spark_port = int(_spark_remote(dev_server).rsplit(":", 1)[1])
    assert is_listening(spark_port)
    process = dev_server["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 0
    for port in (int(dev_server["url"].rsplit(":", 1)[1]), dev_server["gateway_port"], spark_port):
        assert not is_listening(port), f"port {port} still answers"
    assert not lock.held_by_another(), "the stream service outlived pintrest dev"
