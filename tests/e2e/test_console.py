"""The console (GET /console) in a real browser: Playwright drives Debian's chromium against `make
run`. A user signs in with a key, makes and revokes a key, streams a chat in the playground and
sees its usage; an operator suspends a user, whose next call is refused, and finds the change in
the audit log; a user signs in through an identity provider with the authorization-code flow and
PKCE. Every page passes axe-core with no serious violation at 375 px and on a desktop, loads
nothing from anywhere but the gateway, and breaks no rule of its Content-Security-Policy.

Screenshots go to .e2e/console/screenshots (CONSOLE_SCREENSHOTS names another folder; the docs'
pictures are taken with CONSOLE_SCREENSHOTS=docs/images)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.support import services
from tests.support.oidc import CLIENT_ID, OidcProvider
from tests.support.paths import ROOT
from tests.support.waiting import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / ".e2e" / "console" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS") or ROOT / ".e2e" / "console" / "screenshots")
PHONE, DESKTOP = {"width": 375, "height": 740}, {"width": 1280, "height": 860}
USER_PAGES, OPERATOR_PAGES = ("Usage", "Keys", "Playground"), ("Users", "Teams", "Usage", "Model servers", "Audit log")
expect.set_options(timeout=30_000)  # a loaded machine: every wait is for something to appear, never a fixed time


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    started = OidcProvider().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def gateway(gateway_of, provider):
    # A model that takes a tenth of a second a token: the playground's answer arrives in pieces.
    with services.model_server("--token-delay", "0.1") as model_url:
        yield gateway_of("console", model_url=model_url, CONSOLE_OIDC_ISSUER=provider.issuer,
                         CONSOLE_OIDC_CLIENT_ID=CLIENT_ID, JWT_ISSUER=provider.issuer, JWT_AUDIENCE=CLIENT_ID,
                         JWT_JWKS_URL=provider.jwks_url)


@pytest.fixture(scope="module")
def http(gateway):
    with gateway.client() as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "the console's tests need Debian's chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


class Visit:
    """A browser tab on the gateway, keeping what it asked for and what went wrong in it."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.context, self.origin = context, origin
        self.page: Page = context.new_page()
        self.asked: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.asked.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))

    def open(self) -> Page:
        self.page.goto(f"{self.origin}/console")
        return self.page

    def sign_in(self, key: str, landing: str) -> Page:
        page = self.open()
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.get_by_role("heading", level=1, name=landing)).to_be_visible()
        return page

    def go(self, name: str) -> Page:
        self.page.get_by_role("link", name=name, exact=True).click()
        expect(self.page.get_by_role("heading", level=1, name=name)).to_be_visible()
        expect(self.page.locator("main[aria-busy]")).to_have_count(0)
        return self.page

    def confirm(self, text: str, action: str) -> None:
        dialog = self.page.get_by_role("dialog")
        expect(dialog).to_contain_text(text)
        dialog.get_by_role("button", name=action).click()

    def notice(self):
        return self.page.get_by_role("status")

    def shown_only_the_gateway(self, *also: str) -> None:
        allowed = (self.origin, "data:", *also)
        assert [url for url in self.asked if not url.startswith(allowed)] == [], "nothing from anywhere else"
        assert self.errors == [], self.errors  # no script error, no refusal by the Content-Security-Policy


@pytest.fixture
def visit(browser, gateway) -> Iterator[Visit]:
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    yield Visit(context, gateway.url)
    context.close()


def test_a_user_makes_and_revokes_a_key_streams_a_chat_and_sees_it_in_their_usage(visit, gateway, http):
    user = gateway.register(http)
    page = visit.sign_in(user["api_key"], "Usage")
    visit.go("Keys")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    visit.confirm("Create a key named laptop that works until you revoke it?", "Create")
    made = page.get_by_role("region", name="Your new key").locator("code").inner_text()
    assert http.get("/v1/usage", headers={"x-api-key": made}).status_code == 200
    page.get_by_role("button", name="Copy key").click()
    expect(visit.notice()).to_have_text("The key is on your clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == made

    page.get_by_role("button", name="Revoke laptop").click()
    visit.confirm("Revoke laptop? Requests with it are refused from now on.", "Revoke")
    expect(visit.notice()).to_have_text("Key laptop revoked.")
    expect(page.get_by_role("table", name="Your keys")).to_contain_text("revoked")
    wait_for(lambda: http.get("/v1/usage", headers={"x-api-key": made}).status_code == 401, timeout=30,
             what="the revoked key refused")
    limited = http.post("/v1/keys", headers={"x-api-key": user["api_key"]},
                        json={"name": "ci", "allowed_models": ["tiny"], "model_quotas": {"tiny": 9000}})
    assert limited.status_code == 201, limited.text
    visit.go("Usage")
    visit.go("Keys")  # the list as it stands now
    expect(page.get_by_role("row", name="ci")).to_contain_text("models: tiny:latest; tiny: 9,000 tokens a month")

    visit.go("Playground")
    model = page.get_by_label("Model").input_value()
    page.evaluate("""() => {  // counts the answer's changes: a streamed answer arrives in pieces
        window.pieces = 0;
        new MutationObserver(() => window.pieces++).observe(document.querySelector("output"),
                                                            {childList: true, characterData: true, subtree: true});
    }""")
    page.get_by_label("Message").fill("Say hello to the console.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".cost")).to_contain_text("tokens:")
    assert page.locator("output").inner_text().strip() and page.evaluate("window.pieces") > 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "user-playground-answered.png")

    visit.go("Usage")
    expect(page.get_by_role("table", name="By model", exact=True)).to_contain_text(model)
    assert http.get("/v1/usage", headers={"x-api-key": user["api_key"]}).json()["requests"] == 1
    visit.shown_only_the_gateway()


def test_an_operator_suspends_a_user_whose_next_call_is_refused_and_finds_it_in_the_audit_log(visit, gateway, http):
    user = gateway.register(http)
    email = http.get(f"/admin/v1/users/{user['user_id']}", headers=gateway.admin()).json()["email"]
    page = visit.sign_in(gateway.admin()["x-api-key"], "Users")
    page.get_by_label("Email starts with").fill(email.split("@")[0])
    page.get_by_role("button", name="Search").click()
    page.get_by_role("button", name=f"Manage {email}").click()
    page.get_by_label("Extra tokens this month").fill("5000")
    page.get_by_role("button", name="Grant").click()
    visit.confirm(f"Grant {email} 5,000 more tokens this month?", "Grant")
    expect(visit.notice()).to_have_text(f"{email} was granted 5,000 tokens.")
    figures = page.get_by_role("form", name=f"Set {email}'s own figures")
    figures.get_by_label("Tokens a month").fill("123456")
    figures.get_by_role("button", name="Change").click()
    visit.confirm(f"Change {email}'s own figures?", "Change")
    expect(visit.notice()).to_have_text("Changed.")
    shown = http.get(f"/admin/v1/users/{user['user_id']}", headers=gateway.admin()).json()
    assert list(shown["grants"].values()) == [5000] and shown["overrides"] == {"monthly_token_quota": 123456}
    page.get_by_role("button", name="Suspend", exact=True).click()
    visit.confirm(f"Suspend {email}?", "Suspend")
    expect(visit.notice()).to_have_text(f"{email} is suspended.")

    chat = {"prompt": "hello", "max_tokens": 3}
    wait_for(lambda: http.post("/v1/chat", json=chat, headers={"x-api-key": user["api_key"]}).status_code == 403,
             timeout=30, what="the suspended user's call refused")

    visit.go("Audit log")
    page.get_by_label("Subject id").fill(user["user_id"])
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("table", name="Changes, the newest first")).to_contain_text('status: "active" → "suspended"')
    visit.shown_only_the_gateway()


def test_an_operator_makes_a_team_and_adds_a_user_who_then_sees_its_standing(visit, browser, gateway, http):
    user = gateway.register(http)
    page = visit.sign_in(gateway.admin()["x-api-key"], "Users")
    visit.go("Teams")
    created = page.get_by_role("form", name="Create a team")
    created.get_by_label("Team name").fill("ml-console")
    created.get_by_label("Team tokens a month").fill("50000")
    created.get_by_role("button", name="Create team").click()
    visit.confirm("Create team ml-console?", "Create")
    expect(visit.notice()).to_have_text("Team ml-console created.")
    page.get_by_label("User id to add").fill(user["user_id"])
    page.get_by_role("button", name="Add member").click()
    visit.confirm(f"Add {user['user_id']} to ml-console?", "Add")
    expect(visit.notice()).to_have_text(f"{user['user_id']} joined ml-console.")
    expect(page.get_by_role("table", name="ml-console's members")).to_contain_text("person")
    expect(page.get_by_role("table", name="Teams")).to_contain_text("50,000")

    wait_for(lambda: http.get("/v1/usage", headers={"x-api-key": user["api_key"]}).json().get("team"), timeout=30,
             what="the membership applied")
    member = Visit(browser.new_context(viewport=PHONE), gateway.url)
    member.sign_in(user["api_key"], "Usage")
    expect(member.page.get_by_text("Your team's tokens")).to_contain_text("0 of 50,000")
    member.shown_only_the_gateway()
    member.context.close()
    visit.shown_only_the_gateway()


def test_a_user_signs_in_through_the_identity_provider_with_pkce(visit, gateway, provider):
    page = visit.open()
    page.get_by_role("button", name="Sign in with single sign-on").click()
    expect(page.get_by_role("heading", level=1, name="Usage")).to_be_visible()
    assert provider.exchanged == 1 and page.url == f"{gateway.url}/console"  # the code is gone from the address
    assert page.get_by_text(provider.email).is_visible()
    assert visit.context.cookies() == [], "the credential is in the tab's session storage, never a cookie"
    assert page.evaluate("sessionStorage.getItem('infergate.credential')").count(".") == 2  # the ID token
    visit.shown_only_the_gateway(provider.issuer)


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_page_passes_axe_and_fits_the_screen(browser, gateway, http, viewport):
    user, operator = gateway.register(http)["api_key"], gateway.admin()["x-api-key"]
    chat = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    assert http.post("/v1/chat/completions", json=chat, headers={"x-api-key": user}).status_code == 200  # a chart to draw
    for key, landing, pages in ((user, "Usage", USER_PAGES), (operator, "Users", OPERATOR_PAGES)):
        context = browser.new_context(viewport=viewport)
        visit = Visit(context, gateway.url)
        checked(visit.open(), f"sign-in-{viewport['width']}")
        visit.sign_in(key, landing)
        for name in pages:
            checked(visit.go(name), f"{'user' if key == user else 'operator'}-{name}-{viewport['width']}")
        visit.shown_only_the_gateway()
        context.close()


def checked(page: Page, shot: str) -> None:
    """axe-core's rules on the page as it stands (serious and critical violations fail), no sideways
    scrolling, and a screenshot."""
    page.evaluate(AXE.read_text())  # evaluated through the DevTools protocol: the page's policy still holds
    found = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")
    serious = [(v["id"], v["help"], [node["target"] for node in v["nodes"]]) for v in found
               if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"{shot} scrolls sideways"
    assert "null" not in page.locator("main").inner_text().split(), f"{shot} shows a missing value as null"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{shot.lower().replace(' ', '-')}.png", full_page=True)


def test_the_page_is_never_cached_and_its_files_are_cached_for_a_year_under_hashed_names(gateway, http, provider):
    page = http.get("/console")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-cache"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy and f"connect-src 'self' {provider.issuer};" in policy
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    names = [part.split('"')[0] for part in page.text.split('href="console/assets/')[1:] +
             page.text.split('src="console/assets/')[1:]]
    assert sorted(name.split(".")[0] for name in names) == ["console", "console"] and len(set(names)) == 2
    for name in names:
        asset = http.get(f"/console/assets/{name}")
        assert asset.status_code == 200 and asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stale = http.get("/console/assets/console.000000000000.js")
    assert stale.status_code == 404 and stale.json()["error"]["code"] == "not_found"
