"""The web dashboard and the in-browser receipt checker, in a real headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, driven by Selenium) against a real
``llmring serve`` process, with one browser for the whole module.

What it promises: signing in with a project key shows the chart of the project's models
with per-day totals equal to the rollup API's; a receipt's page shows its certified count
and the witness that cosigned its checkpoint; a proof bundle downloaded from the page
verifies with the CLI; a wrong key gets a clear message; the checker, opened as a local
file, gives the CLI's verdict on good files and on a dozen edited ones; no API key ever
appears in a URL, the server's access log, cookies, localStorage, the console, or any
file the browser stored (its profile, the downloads).
Screenshots of every page at 1280×800 and 390×844 are written to
``.cache/dashboard-screenshots/`` (ignored by git) for a person to look at.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from click.testing import CliRunner

from ledger.cli import cli
from ledger.server.dashboard import STATIC
from ledger.tlog.signing import load_public_keys
from tests.integration.test_witness_processes import llmring
from tests.integration.test_witness_server import _bundle_from
from tests.support import serverproc
from tests.support.paths import REPO

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (.ci/run)")

SCREENSHOTS = REPO / ".cache" / "dashboard-screenshots"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
ZONE = "Europe/Paris"
FIRST_DAY = date(2025, 10, 1)
DAYS = 5
MODELS = ("gpt-4o-mini", "claude-3-5-haiku", "gemini-1.5-flash")
WITNESS = "witness.example/w1"


# -- the project: a week of calls, a receipt, a witness cosignature, a budget -------------
def _events() -> list[dict[str, Any]]:
    events = []
    for day in range(DAYS):
        for n, model in enumerate(MODELS):
            for k in range(1 + (day + n) % 3):
                ts = datetime(2025, 10, 1, 8 + k, 30, tzinfo=ZoneInfo(ZONE)) + timedelta(days=day)
                events.append({"event_id": f"d{day}-{model}-{k}", "provider": model.split("-")[0],
                               "model": model, "alias": f"alias-{n}",
                               "input_tokens": 1000 + 10 * day, "output_tokens": 200 + k,
                               "cost": f"0.00{day + 1}{n + 1}{k + 1}",
                               "timestamp": ts.isoformat(), "metadata": {"customer": f"c{k}"}})
    # late evening in Paris, the next day in UTC: the zone decides its day
    events.append({"event_id": "late", "provider": "openai", "model": MODELS[0],
                   "input_tokens": 5, "output_tokens": 5, "cost": "0.5",
                   "timestamp": "2025-10-02T23:30:00+02:00"})
    events.append({"event_id": "unpriced", "provider": "acme", "model": "no-such-model",
                   "input_tokens": 5, "output_tokens": 5,
                   "timestamp": "2025-10-03T12:00:00+02:00"})
    return events


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dashboard")
    wit = ("witness", "--dir", str(tmp / "witness"))
    llmring(*wit, "init", "--name", WITNESS)
    # the server's witness policy names it (with no URL: it is asked by hand below)
    (tmp / "data").mkdir()
    (tmp / "data" / "witnesses.policy").write_text(
        f"witness w1 {llmring(*wit, 'key').stdout.strip()}\nquorum w1\n")
    server = serverproc.start(tmp / "data", projects=("alpha",))
    try:
        c = httpx.Client(base_url=server.url, headers=server.headers("alpha"), timeout=60)
        assert c.post("/api/v1/log/batch", json={"events": _events()}).status_code == 200
        receipt = c.post("/api/v1/receipts/generate", json={
            "start_date": "2025-10-01", "end_date": "2025-10-03",
            "description": "October, first days"}).json()["receipt"]
        keys = tmp / "keys.json"
        keys.write_text(c.get("/api/v1/receipts/public-keys.json").text)
        checkpoint = c.get("/api/v1/log/checkpoint").json()  # the receipt is logged
        (tmp / "cp.note").write_text(receipt_note(c, receipt))
        llmring(*wit, "add-log", checkpoint["origin"], "--public-key", str(keys))
        llmring(*wit, "cosign", "--checkpoint", str(tmp / "cp.note"), "-o",
                str(tmp / "held.note"))
        assert c.post("/api/v1/log/cosignatures",
                      json={"note": (tmp / "held.note").read_text()}).status_code == 200
        # and again at the log's latest checkpoint, from the served consistency proof
        (tmp / "grow.json").write_text(json.dumps(_bundle_from(c, (tmp / "held.note")
                                                               .read_text())))
        llmring(*wit, "cosign", "--proof", str(tmp / "grow.json"), "-o",
                str(tmp / "held.note"))
        assert c.post("/api/v1/log/cosignatures",
                      json={"note": (tmp / "held.note").read_text()}).status_code == 200
        assert c.put("/api/v1/budgets/daily", json={"amount": "10", "period": "day",
                                                    "tz": ZONE}).status_code == 200
        yield {"server": server, "client": c, "receipt": receipt, "keys": keys, "tmp": tmp}
        c.close()
    finally:
        server.stop()


def receipt_note(c: httpx.Client, receipt: dict[str, Any]) -> str:
    """The signed note of the receipt's log checkpoint (as its proof bundles carry it)."""
    logs = c.get(f"/api/v1/receipts/{receipt['receipt_id']}/logs").json()["logs"]
    proof = c.get(f"/api/v1/receipts/{receipt['receipt_id']}/proof/{logs[0]['id']}").json()
    return str(proof["log_proof"]["checkpoint"])


@pytest.fixture(scope="module")
def browser(site: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Chromium for the module, with a profile of its own; once it has quit, no file
    it stored (profile, downloads) holds the API key."""
    downloads = tmp_path_factory.mktemp("downloads")
    profile = tmp_path_factory.mktemp("profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.add_argument(f"--user-data-dir={profile}")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,800", "--lang=en-US"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    driver.console = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
    key = site["server"].keys["alpha"].encode()
    for stored in (profile, downloads):
        holding = [p for p in stored.rglob("*") if p.is_file() and key in p.read_bytes()]
        assert not holding, f"the API key is stored in {holding}"


# -- helpers -------------------------------------------------------------------------------
def wait(driver: Any, condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """Poll ``condition`` until it is truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # the page is between states: look again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutException(f"timed out waiting for {what}")
        time.sleep(0.05)


def ready(driver: Any) -> None:
    wait(driver, lambda: driver.execute_script(
        "return document.body.dataset.ready === 'true' && "
        "window.ledgerDashboard && window.ledgerDashboard.state.loading === 0"), "the page")


def goto(driver: Any, url: str) -> None:
    driver.execute_script("document.body.dataset.ready = 'false'")
    driver.get(url)
    ready(driver)


def text(driver: Any, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def screenshots(driver: Any, name: str) -> None:
    """The page at both sizes, as a person would see it."""
    for size, (width, height) in SIZES.items():
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1,
            "mobile": size == "phone"})
        driver.execute_script("window.dispatchEvent(new Event('resize'))")
        time.sleep(0.3)  # plotly redraws on resize after a debounce: no event says when
        path = SCREENSHOTS / f"{name}-{size}-{width}x{height}.png"
        driver.save_screenshot(str(path))
        assert path.stat().st_size > 5000
        wide = driver.execute_script("return document.documentElement.scrollWidth")
        assert wide <= width, f"{name} is {wide}px wide at {width}px: it scrolls sideways"
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def collect_console(driver: Any) -> None:
    driver.console.extend(entry["message"] for entry in driver.get_log("browser"))


def sign_in(driver: Any, key: str) -> None:
    box = driver.find_element(By.ID, "api-key")
    assert box.get_attribute("type") == "password"
    assert box.get_attribute("autocomplete") == "off"
    box.send_keys(key)
    driver.find_element(By.ID, "sign-in").click()


# -- the dashboard -------------------------------------------------------------------------
def test_the_dashboard(site: dict[str, Any], browser: Any) -> None:
    server, c, receipt = site["server"], site["client"], site["receipt"]
    key = server.keys["alpha"]
    goto(browser, server.url + "/")
    screenshots(browser, "signin")

    # a wrong key: a clear message, nothing signed in
    sign_in(browser, "llmr_not-a-key-of-this-server")
    wait(browser, lambda: browser.find_element(By.ID, "signin-error").is_displayed(),
         "the sign-in error")
    assert "not accepted" in text(browser, "signin-error")
    assert not browser.find_element(By.ID, "nav").is_displayed()
    sign_in(browser, "two words")  # not a key at all: said before anything is sent
    wait(browser, lambda: "printable ASCII" in text(browser, "signin-error"), "the refusal")

    sign_in(browser, key)
    wait(browser, lambda: browser.execute_script("return document.body.dataset.view")
         == "overview", "the overview")
    ready(browser)
    assert "alpha" in text(browser, "project-name")

    # the period and zone, chosen as a user does, then the chart
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    browser.execute_script(
        "document.getElementById('from').value = arguments[0];"
        "document.getElementById('to').value = arguments[1];", FIRST_DAY.isoformat(),
        last.isoformat())
    zone = browser.find_element(By.ID, "tz")
    zone.clear()
    zone.send_keys(ZONE)
    browser.find_element(By.ID, "apply").click()
    wait(browser, lambda: browser.execute_script(
        "return window.ledgerDashboard.state.chart.tz") == ZONE, "the chart in the zone")
    ready(browser)
    chart = browser.execute_script("return window.ledgerDashboard.state.chart")
    plotted = browser.execute_script(
        "return document.getElementById('chart').data.map(t => [t.name, t.x, t.y])")

    start = datetime.combine(FIRST_DAY, datetime.min.time(), ZoneInfo(ZONE))
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), ZoneInfo(ZONE))
    rows = c.get("/api/v1/usage/rollup", params={
        "by": "day,model", "tz": ZONE, "start": start.isoformat(),
        "end": end.isoformat()}).json()["rows"]
    per_day: dict[str, int] = {}
    for row in rows:
        per_day[row["day"][:10]] = per_day.get(row["day"][:10], 0) + row["cost_nanos"]
    assert chart["dayTotals"] == per_day
    assert set(chart["series"]) == {*MODELS, "no-such-model"} == {r["model"] for r in rows}
    assert {name for name, _, _ in plotted} == set(chart["series"])
    for name, days, costs in plotted:  # the bars drawn are the API's figures
        for day, cost in zip(days, costs, strict=True):
            want = sum(r["cost_nanos"] for r in rows if r["model"] == name
                       and r["day"][:10] == day)
            assert round(cost * 1e9) == want
    assert "1" in text(browser, "unpriced-calls")
    assert browser.find_element(By.ID, "unpriced-warning").is_displayed()
    assert "daily" in text(browser, "budgets")
    uncertified = c.get("/api/v1/receipts/uncertified", params={"limit": 1}).json()
    assert f"{uncertified['total']} calls" in text(browser, "uncertified-count")
    screenshots(browser, "overview")

    # another dimension, passed through to the rollup as ?by=
    browser.find_element(By.CSS_SELECTOR, "#dimension option[value=provider]").click()
    browser.find_element(By.ID, "apply").click()
    wait(browser, lambda: browser.execute_script(
        "return window.ledgerDashboard.state.chart.by") == "provider", "the provider chart")
    assert set(browser.execute_script(
        "return Object.keys(window.ledgerDashboard.state.chart.series)")) == {
        "gpt", "claude", "gemini", "openai", "acme"}

    # a metadata key goes to the rollup as by=day,meta.<key>: the chart by customer, its
    # days' totals the rollup's
    browser.find_element(By.CSS_SELECTOR, "#dimension option[value=meta]").click()
    browser.find_element(By.ID, "meta-key").send_keys("customer")
    browser.find_element(By.ID, "apply").click()
    answer = c.get("/api/v1/usage/rollup", params={"by": "day,meta.customer", "tz": ZONE})
    assert answer.status_code == 200, answer.text
    wait(browser, lambda: browser.execute_script(
        "return window.ledgerDashboard.state.chart.by") == "meta.customer",
        "the chart by customer")
    chart = browser.execute_script("return window.ledgerDashboard.state.chart")
    assert {"c0", "c1", "c2"} <= set(chart["series"])
    expected = {name: [0] * len(chart["days"]) for name in chart["series"]}
    for row in answer.json()["rows"]:
        name = "(none)" if row["meta.customer"] is None else row["meta.customer"]
        if row["day"] in chart["days"]:
            expected[name][chart["days"].index(row["day"])] += row["cost_nanos"]
    assert chart["series"] == expected

    # receipts: the list, then one receipt with its witness and its proof bundles
    goto(browser, server.url + "/#/receipts")
    assert receipt["receipt_id"] in text(browser, "receipts")
    screenshots(browser, "receipts")
    browser.find_element(By.LINK_TEXT, receipt["receipt_id"]).click()
    wait(browser, lambda: (browser.execute_script(
        "return window.ledgerDashboard.state.receipt") or {}).get("id")
        == receipt["receipt_id"], "the receipt page")
    ready(browser)
    assert text(browser, "receipt-certified") == str(receipt["certified_count"])
    assert WITNESS in text(browser, "receipt-witnesses")
    assert "gpt-4o-mini" in text(browser, "receipt-breakdowns")
    screenshots(browser, "receipt")
    button = browser.find_elements(By.CSS_SELECTOR, "#receipt-logs button[data-log]")[1]
    log_id = button.get_attribute("data-log")
    button.click()
    bundle = browser.downloads / f"proof-{log_id}.json"
    wait(browser, bundle.exists, "the downloaded proof bundle")
    wait(browser, lambda: json.loads(bundle.read_text()), "the whole bundle")
    verdict = CliRunner().invoke(cli, ["receipts", "verify", str(bundle), "--public-key",
                                       str(site["keys"])])
    assert verdict.exit_code == 0, verdict.output
    assert verdict.output.startswith("OK: the proof bundle verifies")

    # the log: its checkpoint and the witness's cosignature time
    goto(browser, server.url + "/#/log")
    latest = c.get("/api/v1/log/checkpoint").json()
    assert text(browser, "log-size") == f"{latest['size']:,}"
    assert WITNESS in latest["cosigned_note"]
    assert WITNESS in text(browser, "log-witnesses")
    assert "cosigned at 20" in text(browser, "log-witnesses")
    # the policy's witnesses, each with its state, as GET /api/v1/log/witnesses has them
    status = c.get("/api/v1/log/witnesses").json()
    wait(browser, lambda: browser.execute_script(
        "return window.ledgerDashboard.state.log.policy") is not None, "the witness policy")
    assert browser.execute_script("return window.ledgerDashboard.state.log.policy") == {
        "quorum": status["quorum"], "quorum_met": status["quorum_met"],
        "witnesses": [{"name": "w1", "state": status["witnesses"][0]["state"]}]}
    assert "w1" in text(browser, "log-policy") and status["quorum"] in text(browser,
                                                                            "log-quorum")
    assert status["witnesses"][0]["cosigned_latest"] and status["quorum_met"]
    assert "cosigned the latest checkpoint" in text(browser, "log-policy")
    screenshots(browser, "log")
    screenshots(browser, "log")

    # the key: sent as a header only, kept in sessionStorage only
    collect_console(browser)
    storage = browser.execute_script(
        "return {local: JSON.stringify(Object.assign({}, localStorage)),"
        " session: JSON.stringify(Object.assign({}, sessionStorage)),"
        " cookie: document.cookie, urls: performance.getEntries().map(e => e.name),"
        " here: location.href}")
    assert key in storage["session"]
    for where in ("local", "cookie", "here"):
        assert key not in storage[where], where
    assert not [u for u in storage["urls"] if key in u]
    assert not browser.get_cookies()
    assert not [m for m in browser.console if key in m]

    # a reload in the tab stays signed in; signing out forgets the key
    goto(browser, server.url + "/#/overview")
    assert "alpha" in text(browser, "project-name")
    browser.find_element(By.ID, "sign-out").click()
    assert key not in browser.execute_script(
        "return JSON.stringify(Object.assign({}, sessionStorage))")
    assert browser.find_element(By.ID, "api-key").is_displayed()

    # the server's access log has every request, and no key
    log = serverproc.log_text(server.data, int(server.url.rsplit(":", 1)[1]))
    assert "access GET / 200" in log and "access GET /api/v1/project 401" in log
    assert key not in log and "llmr_not-a-key-of-this-server" not in log

    collect_console(browser)
    assert not [m for m in browser.console if key in m]
    # nothing went wrong in the pages (no script error, no refused script or style) but
    # the refusal asked for: the wrong key's 401
    expected = ("/api/v1/project - Failed to load resource: the server responded with a "
                "status of 401",)
    assert [m for m in browser.console if not any(e in m for e in expected)] == []


# -- the receipt checker, opened as a local file ------------------------------------------
def _edits(bundle: dict[str, Any], receipt: dict[str, Any]
           ) -> dict[str, tuple[str, dict[str, Any]]]:
    """Named documents: the good ones, and each with one field edited."""

    def edit(doc: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        change(doc)
        return doc

    def flip_hex(h: str) -> str:
        return ("0" if h[0] != "0" else "1") + h[1:]

    def flip_sig(s: str) -> str:
        return s[:20] + ("A" if s[20] != "A" else "B") + s[21:]

    def note_root(b: dict[str, Any]) -> None:
        lines = b["log_proof"]["checkpoint"].split("\n")
        lines[2] = ("A" if lines[2][0] != "A" else "B") + lines[2][1:]
        b["log_proof"]["checkpoint"] = "\n".join(lines)

    def set_(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
        def change(doc: dict[str, Any]) -> None:
            node = doc
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = value(node[path[-1]]) if callable(value) else value
        return change

    b, r = bundle, receipt
    return {
        "good bundle": ("keys", b),
        "good receipt": ("keys", r),
        "good receipt, vkey": ("vkey", r),
        "event cost": ("keys", edit(b, set_(("event", "cost_nanos"), lambda v: v + 1))),
        "event tokens": ("keys", edit(b, set_(("event", "input_tokens"), lambda v: v + 1))),
        "leaf hash": ("keys", edit(b, set_(("leaf_hash",), flip_hex))),
        "event cost, no leaf hash": ("keys", edit(b, lambda d: (
            d.pop("leaf_hash"), d["event"].update(cost_nanos=d["event"]["cost_nanos"] + 1)))),
        "a path hash": ("keys", edit(b, set_(("audit_path", 0), flip_hex))),
        "tree size": ("keys", edit(b, set_(("tree_size",), lambda v: v + 1))),
        "bundle signature": ("keys", edit(b, set_(("receipt", "signature"), flip_sig))),
        "receipt cost": ("keys", edit(r, set_(("total_cost_nanos",), lambda v: v + 1))),
        "receipt root": ("keys", edit(r, set_(("merkle_root",), flip_hex))),
        "receipt key id": ("keys", edit(r, set_(("key_id",), lambda v: "00000000"))),
        "checkpoint root": ("keys", edit(b, note_root)),
        "log path hash": ("keys", edit(b, set_(("log_proof", "audit_path", 0), flip_hex))),
        "bundle format": ("keys", edit(b, set_(("format",), "ledger-proof/v0"))),
        "receipt field gone": ("keys", edit(r, lambda d: d.pop("tenant"))),
    }


def test_the_checker_gives_the_clis_verdicts(site: dict[str, Any], browser: Any) -> None:
    c, receipt, tmp = site["client"], site["receipt"], site["tmp"]
    logs = c.get(f"/api/v1/receipts/{receipt['receipt_id']}/logs").json()["logs"]
    bundle = c.get(f"/api/v1/receipts/{receipt['receipt_id']}/proof/{logs[2]['id']}").json()
    assert bundle["audit_path"] and bundle["log_proof"]["audit_path"]
    keys = {"keys": site["keys"], "vkey": tmp / "vkey.txt"}
    keys["vkey"].write_text("".join(k.vkey() + "\n" for k in load_public_keys(site["keys"])))

    browser.get((STATIC / "checker.html").as_uri())  # a local file: no server at all
    wait(browser, lambda: browser.execute_script("return !!window.LedgerVerify"),
         "the checker")
    screenshots(browser, "checker")
    verdicts = {}
    for n, (name, (key_kind, doc)) in enumerate(_edits(bundle, receipt).items()):
        path = tmp / f"case-{n}.json"
        path.write_text(json.dumps(doc))
        cli_result = CliRunner().invoke(cli, ["receipts", "verify", str(path), "--public-key",
                                              str(keys[key_kind]), "--json"])
        want = json.loads(cli_result.output)
        browser.execute_script(  # a fresh page's inputs: empty, no file chosen
            "for (const id of ['doc-text', 'keys-text', 'doc-file', 'keys-file'])"
            " document.getElementById(id).value = '';")
        browser.find_element(By.ID, "doc-file").send_keys(str(path))
        browser.find_element(By.ID, "keys-file").send_keys(str(keys[key_kind]))
        browser.find_element(By.ID, "check").click()
        got = wait(browser, lambda: browser.execute_script(
            "const v = document.getElementById('verdict');"
            "return ['valid', 'invalid', 'error'].includes(v.dataset.state)"
            " ? {state: v.dataset.state, failed: v.dataset.failed, text: v.textContent}"
            " : null"), f"the verdict on {name}")
        verdicts[name] = (got["state"], got["failed"] or None)
        assert (got["state"] == "valid") == want["valid"], (name, got, want)
        assert (got["failed"] or None) == want["failed"], (name, got, want)
        if name == "a path hash":
            screenshots(browser, "checker-invalid")
    assert sum(state == "invalid" for state, _ in verdicts.values()) >= 8
    assert {f for _, f in verdicts.values()} >= {None, "leaf", "path", "signature", "key",
                                                 "log_proof", "format"}
    assert not browser.get_log("browser")  # no script error, nothing refused
