"""The public pages, the feedback form and the technician page driven in real
headless Chromium (Debian's ``chromium`` and ``chromedriver``; nothing is
downloaded) at a phone's size, against the API served by uvicorn over a real
SQLite store and a real influxd. Screenshots go to ``test-artifacts/screenshots``.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from api.app import create_app
from api.links import links_for, ticket_link
from api.qr import feedback_url
from campus.influx import InfluxClient
from campus.settings import Settings
from campus.stack import Influxd, free_port
from tests.conftest import CONFIG, ROOT
from tickets.cli import open_tickets
from tickets.models import Source, Technician
from tickets.outbox import Channels, Dispatcher
from tickets.service import Alert, Tickets, utcnow

from .webhook import WebhookReceiver

pytestmark = pytest.mark.integration

SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = (390, 844)

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):  # pragma: no cover
    pytest.fail(
        "Debian's chromium and chromium-driver are needed: make test-deps installs them",
        pytrace=False,
    )


@dataclass
class Site:
    url: str
    settings: Settings
    tickets: Tickets
    ticket_id: int
    paged: list[dict[str, Any]]  # the notices the technicians' channel received


def tiny_png(width: int = 8, height: int = 6) -> bytes:
    """A small valid PNG (a red block), as a phone's photo stands in for here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xd0\x30\x30" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def site(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The API on a free port: a dormitory with hot rooms on floors 2-4, with a
    day of readings of one room in InfluxDB for the evidence plot."""
    import uvicorn

    port = free_port()
    settings = Settings(
        var_dir=tmp_path_factory.mktemp("pages"),
        config_dir=CONFIG,
        influx_url=influxd.url,
        influx_db="pages_browser",
        api_port=port,
        public_url=f"http://127.0.0.1:{port}",
        api_secret="browser-test-key",
        language="zh",
    )
    influx = InfluxClient.from_settings(settings)
    influx.create_database()
    now_ms = int(time.time() * 1000)
    influx.write(
        [
            f"dorm,building=dorm-3,device=dorm-3-r402,floor=4,room=402 "
            f"temp_c={24 + 12 * (i / 96):.2f} {now_ms - (96 - i) * 15 * 60_000}"
            for i in range(97)
        ]
    )
    influx.close()
    receiver = WebhookReceiver()
    tickets = open_tickets(settings)
    # the technicians' own channel only: the on-call primary is paged with a link
    tickets.channels = Channels({"wecom": {"type": "webhook", "url": receiver.url}})
    now = datetime.now(UTC)
    ids = []
    for room in ("dorm-3-r201", "dorm-3-r305", "dorm-3-r402"):
        raised = tickets.raise_alert(
            Alert(
                dedup_key=f"room_too_hot:{room}",
                source=Source.rule,
                severity="P2",
                building="dorm-3",
                trade="hvac",
                title=f"Room too hot ({room})",
                at=now,
                device=room,
                rule="room_too_hot",
            )
        )
        ids.append(raised.ticket_id)
    dispatcher = Dispatcher(tickets.store, tickets.channels, utcnow, link=ticket_link(settings))
    assert dispatcher.dispatch() == 3
    dispatcher.close()
    receiver.close()
    app = create_app(settings, tickets)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    paged = [body for _, body in receiver.got]
    yield Site(f"http://127.0.0.1:{port}", settings, tickets, ids[-1], paged)
    server.should_exit = True
    thread.join(10)
    tickets.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium at a phone's size for the module."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={PHONE[0]},{PHONE[1]}",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(*PHONE)
    driver.set_page_load_timeout(20)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def after_click(driver: WebDriver, element_id: str) -> WebElement:
    """The element ``element_id`` of the page a click led to (waited for)."""
    found: WebElement = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, element_id))
    return found


def shot(driver: WebDriver, name: str) -> None:
    """Save a screenshot of the whole page (as tall as it is) as ``name.png``."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(PHONE[0], max(PHONE[1], min(int(height) + 120, 4000)))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(*PHONE)


def test_board_in_both_languages_at_phone_size(site: Site, browser: WebDriver) -> None:
    d = browser
    d.get(site.url + "/")
    html = d.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("lang") == "zh-Hans"  # the campus default
    notice = d.find_element(By.CSS_SELECTOR, "#notice-list .text").text
    assert "2-4层" in notice and "空调" in notice, notice
    state = d.find_element(By.ID, "b-dorm-3").get_attribute("data-state")
    assert state == "fault"
    width = d.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0], "the board scrolls sideways on a phone"
    shot(d, "board-zh")
    d.find_element(By.ID, "lang-switch").click()
    WebDriverWait(d, 10).until(
        lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    )
    notice = d.find_element(By.CSS_SELECTOR, "#notice-list .text").text
    assert notice.startswith("Heating/cooling off in Dormitory 3, floors 2-4"), notice
    shot(d, "board-en")
    d.get(site.url + "/")  # the choice is kept
    assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    page = d.page_source
    with site.tickets.store.session() as s:
        people = [(t.id, t.name) for t in s.scalars(select(Technician))]
    assert people and "dorm-3-r402" not in page
    for person in people:
        assert person[0] not in page and person[1] not in page


def test_feedback_from_a_qr_code_to_its_receipt(
    site: Site, browser: WebDriver, tmp_path: Path
) -> None:
    d = browser
    d.get(feedback_url(site.url, "dorm-3", "402") + "&lang=zh")
    assert (
        Select(d.find_element(By.ID, "building")).first_selected_option.get_attribute("value")
        == "dorm-3"
    )
    assert d.find_element(By.ID, "room").get_attribute("value") == "402"
    assert "IP" in d.find_element(By.ID, "privacy").text
    Select(d.find_element(By.ID, "category")).select_by_value("too_hot")
    d.find_element(By.ID, "text").send_keys("房间太热了，空调不制冷 — too hot to sleep")  # noqa: RUF001
    photo = tmp_path / "photo.png"
    photo.write_bytes(tiny_png())
    d.find_element(By.ID, "photo").send_keys(str(photo))
    shot(d, "feedback-form-zh")
    d.find_element(By.ID, "submit").click()
    token = after_click(d, "receipt-token").text
    assert re.fullmatch(r"fb_[A-Za-z0-9_-]{32}", token), token
    shot(d, "feedback-receipt-zh")
    d.find_element(By.ID, "case-link").click()
    status = after_click(d, "case-status")
    assert d.current_url.endswith(f"/feedback/r/{token}")
    # the report joins the open HVAC ticket of the same dormitory
    assert status.get_attribute("data-status") == "linked"
    shot(d, "feedback-case-zh")
    photos = list((site.settings.var_dir / "feedback").iterdir())
    assert len(photos) == 1 and photos[0].read_bytes().startswith(b"\x89PNG")


def test_technician_link_acknowledges_from_a_phone(site: Site, browser: WebDriver) -> None:
    d = browser
    (notice,) = [n for n in site.paged if n["ticket_id"] == site.ticket_id]
    url = notice["data"]["url"]  # the link in the on-call technician's alert
    assert url in notice["body"] and url.startswith(f"{site.url}/t/{site.ticket_id}?k=")
    technician = links_for(site.settings).check(url.split("?k=")[1], site.ticket_id).technician
    d.get(url + "&lang=zh")
    assert d.find_element(By.ID, "ticket-state").get_attribute("data-state") == "open"
    plot = d.find_element(By.ID, "evidence")
    assert plot.get_attribute("src").startswith("data:image/png;base64,")
    assert d.execute_script("return arguments[0].naturalWidth", plot) > 100
    shot(d, "technician-zh-open")
    d.find_element(By.ID, "btn-acknowledge").click()
    assert after_click(d, "flash-ok").text == "已接单。"
    assert d.find_element(By.ID, "ticket-state").get_attribute("data-state") == "acknowledged"
    shot(d, "technician-zh-acknowledged")
    ticket = site.tickets.get(site.ticket_id)
    assert ticket.state == "acknowledged" and ticket.events[-1].actor == technician
    d.get(url.replace("?k=", "?k=x"))  # a changed link
    assert d.find_element(By.ID, "message-title").text in ("链接无效", "Link not valid")
    shot(d, "technician-link-refused")
