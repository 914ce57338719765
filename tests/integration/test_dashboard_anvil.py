"""`perpdex dashboard` in a real headless browser: a seeded devnet on Anvil (as `perpdex
devnet --seed-accounts 3` makes it), the dashboard as its own process, its page opened in
Debian's Chromium through Selenium (chromedriver from the `chromium-driver` package: nothing
downloaded). The page shows the markets and the seeded accounts; a price crash makes one
liquidatable, which the page flags; its liquidation appears on the page within 2 blocks."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from ape import accounts, chain

from perpdex.chain import DEVNET, connect
from perpdex.deploy import deploy_system
from perpdex.devnet import free_port, record_deployment, seed
from perpdex.model import WAD
from perpdex.processes import Devnet, dashboard_process, wait_until
from perpdex.sdk import Exchange, feed_prices

pytestmark = pytest.mark.anvil

SEEDED = 3  # traders: test accounts 2 (ETH long 2x), 3 (BTC short 3x), 4 (ETH long 4x)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
INSTALL = ("install Debian's chromium and chromium-driver: `sudo apt-get install chromium chromium-driver` "
           "(`./run test` installs them itself when run as root or with sudo)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium driven by Debian's chromedriver. Missing, it is a failure that says
    how to install it, not a skip: the page is part of what this suite checks."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail(f"the dashboard's browser test needs headless Chromium and chromedriver, not found on PATH: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium  # both paths given: Selenium Manager never downloads a browser or driver
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    web = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield web
    finally:
        web.quit()


def seeded_devnet(devnet: Devnet, tmp_path: Path) -> tuple[Exchange, Path]:
    """Deploy, record the deployment file, then seed (the order `perpdex devnet` has: the
    file's block comes before the seeded trades, whose events the dashboard reads)."""
    x = Exchange(deploy_system(accounts.test_accounts[0]))
    path = record_deployment(x, chain.provider, tmp_path / "devnet.json", rpc_url=devnet.url)
    seed(x, SEEDED, accounts.test_accounts)
    return x, path


def table_rows(web: Any, table: str) -> list[tuple[str, str, str, str]]:
    """(owner, text, class, data-block) of every row of `table`, read in one script: the page
    re-renders its rows every block, so an element handle can go stale between two reads."""
    return [tuple(r) for r in web.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map("
        "r => [r.dataset.owner, r.innerText, r.className, r.dataset.block || ''])",
        f"#{table} tbody tr[data-owner]")]


def row_read(web: Any, table: str, owner: str) -> tuple[str, str, str, str] | None:
    return next((r for r in table_rows(web, table) if r[0] == owner.lower()), None)


def shown_block(web: Any) -> int:
    block = web.find_element("tag name", "body").get_attribute("data-block")
    return int(block) if block else -1


def test_dashboard__page_shows_the_seeded_devnet__and_a_liquidation_within_2_blocks(browser, devnet, tmp_path):
    started = time.monotonic()
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = seeded_devnet(devnet, tmp_path)
        traders = [str(accounts.test_accounts[2 + i].address) for i in range(SEEDED)]
        http_port = free_port()
        board = dashboard_process(devnet.port, deployment, http_port)
        try:
            board.wait_for(f"dashboard on http://127.0.0.1:{http_port}/", timeout=60)
            browser.get(f"http://127.0.0.1:{http_port}/")
            head = int(chain.blocks.head.number)
            wait_until(lambda: shown_block(browser) >= head, 20, "the page to render the head block", board)

            markets = {r.get_attribute("data-market") for r in browser.find_elements("css selector", "#markets tbody tr")}
            assert markets == {"ETH-USD", "BTC-USD"}
            accounts_shown = table_rows(browser, "accounts")
            shown = [r[0] for r in accounts_shown]
            assert sorted(shown) == sorted(t.lower() for t in traders)
            # the 4x ETH long is the closest to liquidation: listed first, with its liquidation price
            bold = traders[2]
            assert shown[0] == bold.lower() and "ETH-USD +" in accounts_shown[0][1] and "liq. 2," in accounts_shown[0][1]
            assert "no liquidation yet" in browser.find_element("id", "liquidations").text
            assert browser.find_element("id", "adl-note").text == "no market side owes ADL now"  # nothing went to ADL

            # ETH falls 25%: the 4x long (liquidation price about 2,310) is under water, the 2x one is not
            feed_prices(x, {0: 2_250 * WAD})
            assert x.d.keeper.health(bold, 0).liquidatable
            wait_until(lambda: (r := row_read(browser, "accounts", bold)) is not None and "liquidatable" in r[2],
                       10, "the page to flag the account liquidatable", board)

            receipt = x.d.keeper.liquidate(bold, 0, sender=accounts.test_accounts[10])
            at = int(receipt.block_number)
            # blocks go on coming (one a second, as under a feeder); the row must be there by block at + 2
            while row_read(browser, "liquidations", bold) is None:
                assert int(chain.blocks.head.number) < at + 2, f"no liquidation on the page by block {at + 2} (it is in block {at})"
                time.sleep(1.0)
                if row_read(browser, "liquidations", bold) is None:
                    chain.mine(1)
            assert at <= shown_block(browser) <= at + 2
            row = row_read(browser, "liquidations", bold)
            assert row is not None and row[3] == str(at)
            after = row_read(browser, "accounts", bold)
            assert after is None or "liquidatable" not in after[2]
            keepers = browser.find_element("id", "keepers").text
            assert f"liquidator 1 {at}" in keepers, keepers
        finally:
            output = board.stop()
    assert "Traceback" not in output, output
    assert time.monotonic() - started < 60  # the browser test stays small (about 9 s on a 2-core machine)
