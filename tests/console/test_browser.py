"""The console in a real browser: Debian's Chromium driven by Playwright, against a real uvicorn server.

One server and one browser for the module; each test builds its own small world through the API. Every
page visited is checked for browser console errors, and every request the browser makes must stay on
the app's own origin. Screenshots of each page go to tests/artifacts/console/ (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from tests.conftest import ROOT, KeyMaker, Server, start_server, stop_server
from tests.factories import make_event
from tests.workflow.support import OPERATOR_RULE, STATION_RULE, write_rules

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
TREE = [("ZD", None), ("DD1", "ZD"), ("DD1-ZD1", "DD1"), ("DD2", "ZD")]


@pytest.fixture(scope="module")
def console_server(migrated: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("console")
    rules = write_rules(folder / "rules", OPERATOR_RULE + STATION_RULE)
    running = start_server(migrated, folder / "server.log", env={"SUPERVISION_RULES_DIR": str(rules)})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass
class Watch:
    """What the browser did: every request's URL, console errors, and requests that failed."""

    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Pages answered with an error status on purpose (a 404 page, a 412 page): the browser logs each as a
    # failed resource, which is expected for them and for nothing else.
    expected_failures: set[str] = field(default_factory=set)
    # A download ends its navigation as "aborted" in Chromium; a download we start is no failure.
    downloads: set[str] = field(default_factory=set)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} @ {message.location.get('url', '')}")

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_failed(self, request: Request) -> None:
        if request.url in self.downloads and request.failure == "net::ERR_ABORTED":
            return
        self.errors.append(f"request failed: {request.url} {request.failure}")

    def assert_clean(self) -> None:
        foreign = [
            url
            for url in self.requests
            if not url.startswith(self.origin + "/") and not url.startswith(("data:", "blob:"))
        ]
        assert foreign == [], f"requests left the app's origin: {foreign}"
        unexpected = [
            error
            for error in self.errors
            if not (
                error.startswith("Failed to load resource: the server responded with a status of")
                and error.split(" @ ")[-1] in self.expected_failures
            )
        ]
        assert unexpected == [], f"browser console errors: {unexpected}"


@pytest.fixture
def watch(console_server: Server) -> Watch:
    return Watch(origin=console_server.base_url)


def open_page(browser: Browser, watch: Watch) -> Page:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("console", watch.on_console)
    page.on("pageerror", lambda exc: watch.errors.append(f"page error: {exc}"))
    page.on("request", watch.on_request)
    page.on("requestfailed", watch.on_failed)
    page.set_default_timeout(15_000)
    return page


def api(server: Server, key: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(
        method, server.base_url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code < 300, response.text
    return response.json()


def build_world(server: Server, source_key: str, admin_key: str) -> dict[str, int]:
    """Units ZD > DD1 > DD1-ZD1 and ZD > DD2; OP-IN (in DD1-ZD1) and OP-OUT (in DD2) each trip t-count."""
    for unit_id, parent in TREE:
        api(
            server,
            admin_key,
            "PUT",
            f"/v1/units/{unit_id}",
            {"parent": parent, "label_zh": unit_id, "label_en": unit_id},
        )
    world: dict[str, int] = {}
    for name, operator, unit in (("in", "OP-IN", "DD1-ZD1"), ("out", "OP-OUT", "DD2")):
        for minute in range(4):
            result = api(server, source_key, "POST", "/v1/events", _registration(minute, operator, unit))
        world[f"alert_{name}"] = result["alerts"][0]
        world[f"breaker_{name}"] = result["breakers"][0]["id"]
    return world


def _registration(minute: int, operator: str, unit: str) -> dict[str, Any]:
    return make_event(
        operator={"id": operator, "kind": "police", "unit": unit, "responsible_officer": None},
        occurred_at=f"2026-11-21T09:{minute:02d}:00+08:00",
    )


def sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/console")
    page.fill("#key", key)
    page.click("button[type=submit]")
    expect(page.locator("#who")).to_be_visible()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# --- the tests ------------------------------------------------------------------------------------------


def test_keyboard_only_sign_in_shows_name_role_and_unit(
    browser: Browser, console_server: Server, watch: Watch, make_key: KeyMaker
) -> None:
    key = make_key("inspector", "纪检-王", unit=None)
    page = open_page(browser, watch)
    page.goto(f"{console_server.base_url}/console")
    shot(page, "signin")
    # The key field has the focus on arrival; Tab reaches the button; Enter presses it. No mouse.
    page.keyboard.type(key)
    page.keyboard.press("Tab")
    expect(page.locator("button[type=submit]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/alerts$"))
    expect(page.locator(".who-name")).to_have_text("纪检-王")
    expect(page.locator(".who-role")).to_have_text("纪检监察")
    expect(page.locator(".who-unit")).to_have_text("全部单位")
    page.click("text=退出")
    expect(page.locator("#key")).to_be_visible()
    watch.assert_clean()


def test_an_inspector_filters_opens_and_walks_an_alert_to_accountability_and_meets_a_stale_form(
    browser: Browser, console_server: Server, watch: Watch, make_key: KeyMaker, source_key: str, admin_key: str
) -> None:
    base = console_server.base_url
    world = build_world(console_server, source_key, admin_key)
    key = make_key("inspector", "inspector-li")
    page = open_page(browser, watch)
    sign_in(page, base, key)
    expect(page.locator(f'tr[data-alert="{world["alert_out"]}"]')).to_be_visible()

    # Filter the queue by unit through the form.
    page.fill("input[name=unit]", "DD1")
    page.select_option("select[name=stage]", "warning")
    page.click("#filters button[type=submit]")
    expect(page.locator(f'tr[data-alert="{world["alert_in"]}"]')).to_be_visible()
    expect(page.locator(f'tr[data-alert="{world["alert_out"]}"]')).to_have_count(0)
    expect(page.locator('[data-stage="warning"] b')).to_have_text("1")
    shot(page, "alerts")

    # Open the alert: value against the thresholds, the evidence, a form per next stage.
    page.click(f'tr[data-alert="{world["alert_in"]}"] a')
    expect(page.locator("#value")).to_contain_text("预警阈值 3")
    expect(page.locator("#evidence tbody tr")).to_have_count(4)
    expect(page.locator("#breaker")).to_contain_text(f"#{world['breaker_in']}")
    shot(page, "alert")

    # A second tab keeps the page as it is now: its forms will be stale.
    stale = page.context.new_page()
    stale.on("console", watch.on_console)
    stale.on("request", watch.on_request)
    stale.goto(page.url)

    # Supervision, interview and accountability, each with its form.
    form = page.locator("#move-supervision")
    form.locator("input[name=assignee_unit]").fill("DD1")
    form.locator("input[name=due_at]").fill("2099-12-01T18:00")
    form.locator("textarea[name=reason]").fill("批量上户，提级督办")
    form.locator("button").click()
    expect(page.locator("#stage-now")).to_have_attribute("data-stage", "supervision")
    form = page.locator("#move-interview")
    form.locator("input[name=interviewees]").fill("OP-IN, P1001")
    form.locator("select[name=level]").select_option("discipline")
    form.locator("input[name=held_at]").fill("2026-11-25T15:00")
    form.locator("textarea[name=summary]").fill("约谈民警，说明批量上户情况")
    form.locator("textarea[name=reason]").fill("警示约谈")
    form.locator("button").click()
    expect(page.locator("#stage-now")).to_have_attribute("data-stage", "interview")
    form = page.locator("#move-accountability")
    form.locator("select[name=outcome]").select_option("demerit")
    form.locator("textarea[name=reason]").fill("记过处分")
    form.locator("button").click()
    expect(page.locator("#stage-now")).to_have_attribute("data-stage", "accountability")
    expect(page.locator("#history li")).to_have_count(3)
    shot(page, "alert-accountability")

    # The stale tab tries to dismiss it: refused politely, with the new state shown.
    stale_form = stale.locator("#move-dismissed")
    stale_form.locator("textarea[name=reason]").fill("误报")
    watch.expected_failures.add(f"{base}/console/alerts/{world['alert_in']}/transitions")
    stale_form.locator("button").click()
    expect(stale.locator("#stale")).to_contain_text("已被他人修改")
    expect(stale.locator("#stage-now")).to_have_attribute("data-stage", "accountability")
    shot(stale, "alert-stale")
    watch.assert_clean()


def test_a_scoped_inspector_cannot_open_another_units_alert(
    browser: Browser, console_server: Server, watch: Watch, make_key: KeyMaker, source_key: str, admin_key: str
) -> None:
    base = console_server.base_url
    world = build_world(console_server, source_key, admin_key)
    page = open_page(browser, watch)
    sign_in(page, base, make_key("inspector", "dd1-inspector", unit="DD1"))
    expect(page.locator(".who-unit")).to_have_text("DD1")
    expect(page.locator(f'tr[data-alert="{world["alert_in"]}"]')).to_be_visible()
    expect(page.locator(f'tr[data-alert="{world["alert_out"]}"]')).to_have_count(0)
    url = f"{base}/console/alerts/{world['alert_out']}"
    watch.expected_failures.add(url)
    response = page.goto(url)
    assert response is not None
    assert response.status == 404
    expect(page.locator("#error-detail")).to_have_text(f"no alert with id {world['alert_out']}")
    shot(page, "not-found")
    watch.assert_clean()


def test_breakers_reports_audit_and_api_docs_pages(
    browser: Browser, console_server: Server, watch: Watch, make_key: KeyMaker, source_key: str, admin_key: str
) -> None:
    base = console_server.base_url
    world = build_world(console_server, source_key, admin_key)
    page = open_page(browser, watch)
    sign_in(page, base, make_key("inspector", "inspector-zhao"))

    page.click("nav.menu >> text=熔断")
    row = page.locator(f'tr[data-breaker="{world["breaker_in"]}"]')
    expect(row.locator(".state")).to_have_text("熔断中")
    shot(page, "breakers")
    row.locator("input[name=reason]").fill("核查无误，恢复业务")
    row.locator("button").click()
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator(f'tr[data-breaker="{world["breaker_in"]}"] .state')).to_have_text("观察期")

    page.click("nav.menu >> text=报表")
    page.fill("input[name=period]", "2026-11")
    page.click("#report-form button[type=submit]")
    expect(page.locator("svg.chart")).to_have_count(3)
    for chart in ("svg.by-month", "svg.by-domain", "svg.funnel"):
        widths = page.locator(f"{chart} rect.bar").evaluate_all("rects => rects.map(r => r.getBBox().width)")
        assert max(widths) > 0, chart
    expect(page.locator("#summary tfoot")).to_contain_text("2")
    shot(page, "reports")
    watch.downloads.add(f"{base}/console/reports.csv?period=2026-11&group_by=unit")
    with page.expect_download() as download:
        page.click("#csv")
    assert download.value.suggested_filename == "summary-2026-11-unit.csv"

    page.click("nav.menu >> text=审计")
    expect(page.locator("#verdict")).to_have_attribute("data-ok", "true")
    expect(page.locator("#entries tbody tr").first).to_be_visible()
    shot(page, "audit")

    page.click("text=English")
    expect(page.locator("#verdict")).to_contain_text("Audit chain verified")
    page.click("nav.menu >> text=Alerts")
    expect(page.locator("h1")).to_have_text("Alerts")

    page.goto(f"{base}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Supervision")
    shot(page, "docs")
    page.goto(f"{base}/redoc")
    expect(page.locator("h1").first).to_contain_text("Supervision")
    shot(page, "redoc")
    watch.assert_clean()


def test_an_inspector_decides_a_filed_exemption_on_the_exemptions_page(
    browser: Browser, console_server: Server, watch: Watch, make_key: KeyMaker, source_key: str, admin_key: str
) -> None:
    base = console_server.base_url
    build_world(console_server, source_key, admin_key)
    filed = []
    for operator, reference in (("OP-IN", "FLEET-2026-001"), ("OP-OUT", "EXAM-DAY-2026-11")):
        body = {
            "rule_id": "t-count",
            "subject_type": "operator",
            "subject_id": operator,
            "from": "2026-11-21T08:00:00+08:00",
            "to": "2026-12-19T12:00:00+08:00",
            "reason": "车队集中办理新能源汽车上户 fleet registration",
            "reference": reference,
        }
        filed.append(api(console_server, source_key, "POST", "/v1/exemptions", body)["id"])
    page = open_page(browser, watch)
    sign_in(page, base, make_key("inspector", "inspector-zhou"))

    page.click("nav.menu >> text=报备")
    expect(page.locator("h1")).to_have_text("报备（豁免）")
    row = page.locator(f'#requested tr[data-exemption="{filed[0]}"]')
    expect(row).to_contain_text("FLEET-2026-001")
    shot(page, "exemptions")
    row.locator("form.decide input[name=reason]").fill("已核对车队订单")
    row.locator("button.approve").click()
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator(f'#in-force tr[data-exemption="{filed[0]}"]')).to_contain_text("生效中")
    expect(page.locator(f'#requested tr[data-exemption="{filed[0]}"]')).to_have_count(0)

    # Its alert leaves the default queue; the exempted filter shows it, marked, with a link back to the filing.
    page.click("nav.menu >> text=预警")
    page.select_option("select[name=exempted]", "true")
    page.click("#filters button[type=submit]")
    mark = page.locator("#alerts a.badge.exempt")
    expect(mark).to_have_count(1)
    mark.click()
    expect(page).to_have_url(re.compile(rf"/console/exemptions#exemption-{filed[0]}$"))
    page.goto(f"{base}/console/exemptions?lang=en")
    expect(page.locator("h1")).to_have_text("Exemptions (filed bulk business)")
    shot(page, "exemptions-en")
    watch.assert_clean()
