"""Sign-in end to end: a real OpenID Connect provider (tests/support/oidc.py: Authlib,
authorization code + PKCE S256, its own RSA key), a real chatwax stack (`chatwax up
--nats-auth --auth oidc --auth-file`, whose frontend `chatwax ui` starts) and the page in
headless Chromium. Who may see and do what is docs/security.md's table."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats as nats_py
import pytest
from nats.errors import NoRespondersError
from nats.js import api
from playwright.sync_api import Browser, BrowserContext, Page

from chatwax.client.chat import ChatClient
from chatwax.client.transcripts import iter_transcripts
from chatwax.core import wire
from chatwax.core.identity import user_id_for
from chatwax.core.settings import Settings
from tests.support.oidc import USERS, Provider, oidc_provider
from tests.support.signin import (
    USER_COOKIE,
    altered,
    arun,
    chat,
    chromium,
    forged_cookie,
    lines,
    sign_in,
    wait_idle,
)
from tests.support.up import CHATWAX, Up, up_factory
from tests.support.waiting import eventually

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
MAX_AGE = 3600
SIGNED_OUT = ["chatwax", "Sign in"]


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    with oidc_provider() as provider:
        yield provider


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, own_llm: Any, idp: Provider
          ) -> Iterator[Up]:
    """`chatwax up --nats-auth --auth oidc`, the provider's settings in a file; the redirect
    URI and cookie secret are chatwax up's own (localhost:<ui port>, kept in the data dir)."""
    work = tmp_path_factory.mktemp("signin")
    auth_file = work / "oidc.env"
    auth_file.write_text(
        "# the provider chatwax is registered with\n"
        f"CHATWAX_OIDC_METADATA_URL={idp.metadata_url}\n"
        f"CHATWAX_OIDC_CLIENT_ID={idp.client.client_id}\n"
        f"export CHATWAX_OIDC_CLIENT_SECRET='{idp.client.client_secret}'\n"
        "CHATWAX_AUTH_ALLOWED_DOMAINS=example.com\n"
        "CHATWAX_AUTH_ADMINS=group:ops\n"
        f"CHATWAX_AUTH_SESSION_MAX_AGE={MAX_AGE}\n")
    factory = up_factory(work, own_llm)
    start = next(factory)
    try:
        u = start("--nats-auth", "--auth", "oidc", "--auth-file", str(auth_file))
        idp.register(f"http://localhost:{u.ui_port}/oauth2callback")
        u.wait_ready(120)
        yield u
    finally:
        with contextlib.suppress(StopIteration):
            next(factory)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def base(u: Up) -> str:
    return f"http://localhost:{u.ui_port}"


def nats_settings(u: Up, user: str) -> Settings:
    passwords = json.loads((u.data_dir / "nats-auth.json").read_text())
    return Settings(nats_url=f"nats://127.0.0.1:{u.nats_port}", nats_user=user,
                    nats_password=passwords[user])


@contextlib.contextmanager
def browsing(browser: Browser) -> Iterator[tuple[BrowserContext, Page]]:
    """A fresh browser profile (no cookies), closed at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context, context.new_page()
    finally:
        context.close()


def mapped_id(idp: Provider, name: str) -> str:
    return user_id_for(USERS[name].sub, idp.issuer)


def shown_conversation(page: Page) -> str:
    found = re.search(r"conversation (c-[0-9a-f]{12})", "\n".join(lines(page)))
    assert found, lines(page)
    return found.group(1)


def options(page: Page) -> list[str]:
    """The conversation picker's choices, as the browser lists them."""
    page.get_by_test_id("stSelectbox").click()
    listed = [o.inner_text().strip() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    return listed


def usage_page(page: Page, url: str) -> list[str]:
    """The Usage page's text once it has rendered its totals (the turns are stored before
    their final replies; the page itself may take a moment to render)."""
    deadline = time.monotonic() + 20
    while True:
        page.goto(url)
        # The last heading of the page, or the note that there is nothing yet: the page
        # renders top to bottom, so what comes before it is there too.
        page.get_by_text(re.compile("^(By model|No completed turns.*)$")).first.wait_for(
            timeout=30_000)
        wait_idle(page)
        shown = lines(page)
        if "Turns" in shown or time.monotonic() > deadline:
            return shown
        time.sleep(0.5)


@pytest.fixture(scope="module")
def alice(stack: Up, browser: Browser, idp: Provider) -> dict[str, Any]:
    """Alice signs in at the provider and chats once; her page is the artifact."""
    with browsing(browser) as (context, page):
        sign_in(page, base(stack), "alice")
        chat(page, "hello, I am alice", "echo: hello, I am alice")
        shown = lines(page)
        ARTIFACTS.mkdir(exist_ok=True)
        png = ARTIFACTS / "signed-in-chat.png"
        page.screenshot(path=str(png), full_page=True)
        cookie = next(c for c in context.cookies() if c["name"] == USER_COOKIE)
        return {"shown": shown, "conversation": shown_conversation(page), "png": png,
                "cookie": cookie, "user_id": mapped_id(idp, "alice")}


def test_signed_out_the_page_shows_only_the_sign_in_button(stack: Up, browser: Browser,
                                                           idp: Provider) -> None:
    """Any page, with or without user tricks in the URL: a title and the sign-in button,
    no sidebar, no chat input, no usage."""
    for path in ("/", "/usage", f"/?user={mapped_id(idp, 'alice')}"):
        with browsing(browser) as (_, page):
            page.goto(base(stack) + path)
            page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
            wait_idle(page)
            assert lines(page) == SIGNED_OUT, path
            assert page.get_by_test_id("stSidebar").count() == 0
            assert page.locator("textarea").count() == 0


def test_alice_signs_in_with_pkce_and_chats(alice: dict[str, Any], idp: Provider,
                                             stack: Up) -> None:
    shown = alice["shown"]
    assert "Signed in as Alice Example (alice@example.com)" in shown
    assert f"user id {alice['user_id']} · admin" in shown and "Sign out" in shown
    assert "User id" not in shown  # no box to type another id into
    assert "echo: hello, I am alice" in shown
    # Streamlit took the authorization-code flow with PKCE S256 (the provider demands it).
    assert {r.get("code_challenge_method") for r in idp.authorize_requests} == {"S256"}
    assert idp.tokens_issued and idp.tokens_issued[0]["sub"] == USERS["alice"].sub
    png = alice["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    async def listed() -> list[str]:  # the operator identity reads any user's transcripts
        client = await ChatClient.connect(nats_settings(stack, "operator"))
        try:
            return [c.conversation_id for c in await client.conversations(alice["user_id"])]
        finally:
            await client.close()

    assert arun(listed()) == [alice["conversation"]]


def test_bob_cannot_list_load_or_continue_alices_conversations_nor_see_her_usage(
    alice: dict[str, Any], stack: Up, browser: Browser, idp: Provider, own_llm: Any
) -> None:
    bob = mapped_id(idp, "bob")
    start = arun(_last_prompt_seq(stack))
    with browsing(browser) as (_, page):
        sign_in(page, base(stack), "bob")
        assert "Signed in as Bob Example (bob@example.com)" in lines(page)
        assert options(page) == ["+ New conversation"]
        # URL tricks change nothing: the page reads no user or conversation from the URL
        # (and Streamlit resets a conversation choice that is not among the options).
        page.goto(f"{base(stack)}/?user={alice['user_id']}&conversation={alice['conversation']}"
                  f"&picked={alice['conversation']}")
        page.get_by_text("Signed in as Bob").wait_for(timeout=30_000)
        wait_idle(page)
        assert options(page) == ["+ New conversation"]
        assert not [s for s in lines(page) if "alice" in s.lower()]
        chat(page, "hello, I am bob", "echo: hello, I am bob")
        assert shown_conversation(page) != alice["conversation"]
        sent = next(r for r in reversed(own_llm.requests())
                    if r["messages"][-1]["content"] == "hello, I am bob")
        assert not [m for m in sent["messages"] if "alice" in m["content"]]

        usage = usage_page(page, f"{base(stack)}/usage")
        assert "Your usage" in usage and "Your totals" in usage
        assert usage[usage.index("Turns") + 1] == "1"  # bob's one turn, not alice's
        assert alice["user_id"] not in "\n".join(usage)
        assert "Admin view: every user's usage." not in usage
    assert arun(_all_turns(stack)) >= 2  # the stream holds alice's turn too

    # Every prompt the page published during bob's session carries bob's id.
    prompts = arun(_prompts_after(stack, start))
    assert prompts and {p.user_id for p in prompts} == {bob}
    # And were the page ever tricked into alice's conversation id, bob would get a
    # conversation of his own: conversations live in their user's state, and nothing of
    # alice's reaches the model or bob's history.
    reply, history = arun(_as_frontend(stack, bob, alice["conversation"]))
    assert isinstance(reply, wire.FinalEvent) and reply.turn == 1
    assert history == ["let me in"]


async def _last_prompt_seq(u: Up) -> int:
    nc = await nats_py.connect(**_nats_kwargs(u, "dataflow"))
    try:
        info = await nc.jetstream().stream_info(wire.PROMPTS_STREAM)
        return int(info.state.last_seq)
    finally:
        await nc.close()


async def _prompts_after(u: Up, seq: int) -> list[wire.PromptRequest]:
    nc = await nats_py.connect(**_nats_kwargs(u, "dataflow"))
    js = nc.jetstream()
    try:
        info = await js.stream_info(wire.PROMPTS_STREAM)
        sub = await js.subscribe(f"{wire.PROMPTS_PREFIX}.*", ordered_consumer=True,
                                 deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                                 config=api.ConsumerConfig(opt_start_seq=seq + 1))
        out = []
        for _ in range(int(info.state.last_seq) - seq):
            msg = await sub.next_msg(timeout=5)
            out.append(wire.decode_prompt(msg.data, 1_000_000))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def _as_frontend(u: Up, user: str, conversation: str) -> tuple[Any, list[str]]:
    client = await ChatClient.connect(nats_settings(u, "frontend"))
    try:
        reply = await client.ask(user, conversation, "let me in", timeout=30)
        events = [e async for e in reply.events()]
        return events[-1], [t.prompt for t in await client.history(user, conversation)]
    finally:
        await client.close()


async def _all_turns(u: Up) -> int:
    client = await ChatClient.connect(nats_settings(u, "operator"))
    try:
        return len([t async for t in iter_transcripts(client.js, None)])
    finally:
        await client.close()


def _nats_kwargs(u: Up, user: str) -> dict[str, Any]:
    s = nats_settings(u, user)
    assert s.nats_password is not None
    return {"servers": s.nats_url, "user": user, "password": s.nats_password.get_secret_value()}


def test_an_admin_sees_every_users_usage(alice: dict[str, Any], stack: Up,
                                         browser: Browser) -> None:
    """alice is in group ops, listed in CHATWAX_AUTH_ADMINS: her Usage page counts every
    turn."""
    with browsing(browser) as (context, page):
        context.add_cookies([alice["cookie"]])  # her session, still valid
        usage = usage_page(page, f"{base(stack)}/usage")
        assert "Admin view: every user's usage." in usage
        assert "Top users" in usage
        assert usage[usage.index("Turns") + 1] == f"{arun(_all_turns(stack)):,}"


def test_a_forged_or_altered_session_is_refused(alice: dict[str, Any], stack: Up,
                                                browser: Browser, idp: Provider) -> None:
    """A cookie signed with another secret, or alice's with one character changed, is no
    session: only the sign-in button shows. Her real cookie still works (the control)."""
    now = int(time.time())
    claims = {**idp.tokens_issued[0], "iss": idp.issuer, "aud": [idp.client.client_id],
              "iat": now, "exp": now + 300}
    real = alice["cookie"]
    for name, value in [
        ("forged", forged_cookie(claims, "not-the-cookie-secret-0123456789abcdef",
                                 base(stack))),
        ("altered", altered(real["value"])),
    ]:
        with browsing(browser) as (context, page):
            context.add_cookies([{**real, "value": value}])
            page.goto(base(stack))
            page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
            wait_idle(page)
            assert lines(page) == SIGNED_OUT, name
    with browsing(browser) as (context, page):
        context.add_cookies([real])
        page.goto(base(stack))
        page.get_by_text("Signed in as Alice").wait_for(timeout=30_000)


def test_an_expired_session_must_sign_in_again(stack: Up, browser: Browser,
                                                idp: Provider) -> None:
    """An ID token issued longer ago than CHATWAX_AUTH_SESSION_MAX_AGE opens nothing."""
    idp.backdate_s = MAX_AGE + 600
    try:
        with browsing(browser) as (_, page):
            sign_in(page, base(stack), "bob", expect="Sign in again")
            # The message renders before its buttons: wait for the last of them.
            page.get_by_role("button", name="Sign out").wait_for(timeout=30_000)
            wait_idle(page)
            shown = lines(page)
            assert shown == ["chatwax", "You cannot use chatwax: your sign-in is 70 min old; "
                             "sessions last 60 min. Sign in again.", "Sign in again",
                             "Sign out"]
            assert page.locator("textarea").count() == 0
            assert page.get_by_test_id("stSidebar").count() == 0
            idp.backdate_s = 0  # a fresh sign-in works again
            page.get_by_role("button", name="Sign in again").click()
            page.fill("#username", "bob")
            page.fill("#password", USERS["bob"].password)
            page.click("#submit")
            page.get_by_text("Signed in as Bob").wait_for(timeout=30_000)
    finally:
        idp.backdate_s = 0


def test_signing_out_ends_the_session(stack: Up, browser: Browser) -> None:
    with browsing(browser) as (context, page):
        sign_in(page, base(stack), "bob")
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
        wait_idle(page)
        assert lines(page) == SIGNED_OUT
        assert USER_COOKIE not in {c["name"] for c in context.cookies()}


def test_someone_outside_the_allowed_domains_is_refused(stack: Up, browser: Browser) -> None:
    with browsing(browser) as (_, page):
        sign_in(page, base(stack), "mallory", expect="You cannot use chatwax")
        page.get_by_role("button", name="Sign out").wait_for(timeout=30_000)
        wait_idle(page)
        shown = lines(page)
        assert ("You cannot use chatwax: mallory@evil.test is not in an allowed domain "
                "(example.com)") in shown
        assert page.locator("textarea").count() == 0
        assert page.get_by_role("button", name="Sign out").count() == 1


def test_the_compat_subject_is_off_and_the_operator_asks(stack: Up) -> None:
    """With sign-in on, `prompts` (no identity) is neither served nor allowed to the
    frontend; the CLI's operator identity asks as before."""
    async def check() -> tuple[bool, bool]:
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        frontend = await nats_py.connect(**_nats_kwargs(stack, "frontend"), error_cb=on_error)
        await frontend.publish(wire.COMPAT_SUBJECT, b'{"user_id": "x", "prompt": "hi"}')
        await frontend.flush()

        async def refused() -> bool:
            return any("permissions violation" in str(e).lower() for e in errors)

        denied = await eventually(refused, 5, "the server refusing the publish")
        await frontend.close()
        full = await nats_py.connect(**_nats_kwargs(stack, "dataflow"))
        try:
            await full.request(wire.COMPAT_SUBJECT, b'{"user_id": "x", "prompt": "hi"}',
                               timeout=2)
            unserved = False
        except NoRespondersError:
            unserved = True
        finally:
            await full.close()
        return denied, unserved

    assert arun(check()) == (True, True)
    import subprocess

    env = {**stack.env, "NATS_USER": "operator",
           "NATS_PASSWORD": json.loads((stack.data_dir / "nats-auth.json").read_text())[
               "operator"]}
    asked = subprocess.run([*CHATWAX, "ask", "--user", "ops-check", "hi"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert asked.returncode == 0 and asked.stdout.strip() == "echo: hi", asked.stderr
