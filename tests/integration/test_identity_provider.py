"""Identity that holds, against a real OpenID Connect provider (tests/support/oidc.py, built
on Authlib): a real authorization-code flow with PKCE S256 and a nonce, the ID token's
signature checked with the provider's published key, and its claims handed to the same
`identify` the pages call on Streamlit's `st.user`. Each test is one attack of issue #23
that must now be refused: an unverified e-mail, a missing claim, a provider over http."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from chatwax.core.errors import ConfigError
from chatwax.core.identity import AuthPolicy, Identity, Refusal, identify, user_id_for
from chatwax.core.settings import Settings
from tests.support.oidc import Provider, User, oidc_provider

REDIRECT = "http://localhost:8501/oauth2callback"
# The attacker's account at a provider that lets users set their own address: the victim's
# address, never verified.
EVE = User("eve", "e5e5-eve", "alice@example.com", "Eve", (), email_verified=False)
# Entra ID: no email_verified claim at all, an `oid` claim.
ENTRA = User("erin", "ent-sub-erin", "erin@example.com", "Erin", (), email_verified=None,
             extra=(("oid", "0f1e2d3c-erin"),))
# A provider that sends email_verified as a string.
STRINGLY = User("sam", "str-sam", "sam@example.com", "Sam", (), email_verified="true")


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    with oidc_provider() as provider:
        provider.register(REDIRECT)
        for user in (EVE, ENTRA, STRINGLY):
            provider.users[user.name] = user
        yield provider


def sign_in(idp: Provider, name: str) -> dict[str, Any]:
    """The verified ID-token claims of `name` after a full code flow (what Streamlit keeps)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    nonce = secrets.token_urlsafe(16)
    params = {"response_type": "code", "client_id": idp.client.client_id,
              "redirect_uri": REDIRECT, "scope": "openid profile email", "state": "s",
              "nonce": nonce, "code_challenge": challenge.decode().rstrip("="),
              "code_challenge_method": "S256"}
    user = idp.users[name]
    with httpx.Client(base_url=idp.issuer, timeout=10) as http:
        assert http.get("/authorize", params=params).status_code == 200  # the login form
        back = http.post("/authorize", data={**params, "username": name,
                                             "password": user.password})
        assert back.status_code == 302, back.text
        code = parse_qs(urlparse(back.headers["location"]).query)["code"][0]
        token = http.post("/token", data={"grant_type": "authorization_code", "code": code,
                                          "redirect_uri": REDIRECT,
                                          "code_verifier": verifier},
                          auth=(idp.client.client_id, idp.client.client_secret))
        assert token.status_code == 200, token.text
        keys = KeySet.import_key_set(http.get("/jwks").json())
    claims: dict[str, Any] = jwt.decode(token.json()["id_token"], keys).claims
    assert claims["nonce"] == nonce and claims["iss"] == idp.issuer
    return claims


def who(claims: dict[str, Any], **policy: Any) -> Identity | Refusal:
    return identify(claims, AuthPolicy.of(**policy), time.time())


def test_an_unverified_email_never_becomes_the_victim(idp: Provider) -> None:
    """Eve set her address to alice's at a provider that does not verify it."""
    eve, alice = sign_in(idp, "eve"), sign_in(idp, "alice")
    assert eve["email"] == alice["email"] and eve["email_verified"] is False
    by_email = {"user_claim": "email", "user_claim_verified_by": "email_verified"}
    assert isinstance(who(alice, **by_email), Identity)
    refused = who(eve, **by_email)
    assert isinstance(refused, Refusal) and "has not verified your 'email'" in refused.reason
    domains = who(eve, allowed_domains=["example.com"])
    assert isinstance(domains, Refusal) and "not verified" in domains.reason
    # By `sub` (the default) she is herself: another id than alice's, and no admin, though
    # alice's own id is listed.
    alice_id = user_id_for(alice["sub"], idp.issuer)
    herself = who(eve, admins=[alice_id])
    assert isinstance(herself, Identity)
    assert herself.user_id != alice_id and not herself.admin
    # An admin list by e-mail is refused before anyone signs in.
    with pytest.raises(ConfigError, match="admins are chatwax user ids"):
        Settings.from_env({"CHATWAX_AUTH_ADMINS": alice["email"]})


def test_a_missing_or_non_boolean_email_verified_is_unverified(idp: Provider) -> None:
    """Entra ID omits email_verified; some providers send the string "true"."""
    for name in ("erin", "sam"):
        claims = sign_in(idp, name)
        assert claims.get("email_verified") is not True
        got = who(claims, allowed_domains=["example.com"])
        assert isinstance(got, Refusal) and "not verified" in got.reason, name
        got = who(claims, user_claim="email", user_claim_verified_by="email_verified")
        assert isinstance(got, Refusal), name


def test_a_missing_user_claim_is_refused_and_oid_is_stable(idp: Provider) -> None:
    erin, alice = sign_in(idp, "erin"), sign_in(idp, "alice")
    by_oid = who(erin, user_claim="oid")
    assert isinstance(by_oid, Identity) and by_oid.user_id == user_id_for(
        "0f1e2d3c-erin", idp.issuer)
    missing = who(alice, user_claim="oid")  # this provider sends alice no oid
    assert isinstance(missing, Refusal) and "no 'oid' claim" in missing.reason
    # A claim a user may choose is no identity without a verified-claim rule.
    assert isinstance(who(alice, user_claim="email"), Refusal)
    with pytest.raises(ConfigError, match="CHATWAX_AUTH_USER_CLAIM_VERIFIED_BY"):
        Settings.from_env({"CHATWAX_AUTH_USER_CLAIM": "preferred_username"})


NOT_LOOPBACK_HOST = "0.0.0.0"
"""An address chatwax must treat as another machine's (only `localhost` and loopback
addresses may use http), which Linux still connects to this machine's loopback: the
test's provider is served on 127.0.0.1 and really reached, and no packet leaves."""


def test_a_provider_over_plain_http_is_refused_before_it_is_asked() -> None:
    """The same provider: on loopback over http it is accepted; named as another host over
    http `chatwax ui` refuses to start and the provider sees no request."""
    address = NOT_LOOPBACK_HOST
    with oidc_provider(address, bind="127.0.0.1") as remote:
        assert httpx.get(remote.metadata_url, timeout=10).json()["issuer"] == remote.issuer
        served = remote.requests
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWAX_")}
        res = subprocess.run(
            [sys.executable, "-m", "chatwax", "ui", "--port", "1"],
            env={**env, "CHATWAX_AUTH": "oidc", **remote.settings_env(
                "https://chat.example.com/oauth2callback"),
                 "CHATWAX_OIDC_COOKIE_SECRET": "c" * 40},
            capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        assert "CHATWAX_OIDC_METADATA_URL must be an https URL" in res.stderr
        assert remote.requests == served  # never fetched: no keys taken from the network
        http_redirect = f"http://{address}:8501/oauth2callback"
        with pytest.raises(ConfigError, match="CHATWAX_OIDC_REDIRECT_URI must be an https"):
            Settings.from_env({"CHATWAX_OIDC_REDIRECT_URI": http_redirect})
    with oidc_provider() as local:
        assert Settings.from_env(local.settings_env(REDIRECT)).oidc_metadata_url == \
            local.metadata_url
