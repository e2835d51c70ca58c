"""Who is talking: ID-token claims -> a chatwax user id, who may enter, who is an admin,
how long a sign-in lasts. Pure functions, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwax.core.identity import (
    HASH_CHARS,
    AuthPolicy,
    Identity,
    Refusal,
    identify,
    is_signed_in_id,
    split_list,
    user_id_for,
)
from chatwax.core.settings import Settings
from chatwax.core.wire import check_id

NOW = 1_800_000_000.0
ISSUER = "https://idp.example.com/realms/chat"
DEFAULT = AuthPolicy()


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "sub": "8d3f-alice", "iat": NOW - 60, "email": "alice@example.com",
            "email_verified": True, "name": "Alice", **extra}


def signed_in(policy: AuthPolicy = DEFAULT, **extra: Any) -> Identity:
    got = identify(claims(**extra), policy, NOW)
    assert isinstance(got, Identity), got
    return got


def refused(policy: AuthPolicy = DEFAULT, **extra: Any) -> Refusal:
    got = identify(claims(**extra), policy, NOW)
    assert isinstance(got, Refusal), got
    return got


@given(st.text(min_size=1, max_size=300), st.text(max_size=100))
def test_any_claim_value_maps_to_a_valid_stable_id(value: str, issuer: str) -> None:
    user_id = user_id_for(value, issuer)
    assert check_id(user_id, "user id", 64) == user_id
    assert user_id_for(value, issuer) == user_id


@pytest.mark.parametrize(("a", "b"), [
    (("a.b", ISSUER), ("a_b", ISSUER)),          # read alike once sanitized
    (("x" * 50 + "1", ISSUER), ("x" * 50 + "2", ISSUER)),  # differ past the readable cut
    (("alice", ISSUER), ("alice", "https://other.example.com")),  # another issuer
    (("ALICE", ISSUER), ("alice", ISSUER)),      # claim values are case-sensitive
])
def test_values_that_read_alike_get_different_ids(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert user_id_for(*a) != user_id_for(*b)


def test_the_id_is_readable_prefixed_and_carries_128_bits_of_hash() -> None:
    """A signed-in id starts with `oidc-` (which typed ids may not) and ends in 32 hex
    characters of sha256: finding a second value with the same id takes ~2^128 tries."""
    user_id = user_id_for("alice@example.com", ISSUER)
    assert user_id.startswith("oidc-alice_example_com-")
    digest = user_id.rsplit("-", 1)[1]
    assert HASH_CHARS * 4 >= 128 and len(digest) == HASH_CHARS
    assert int(digest, 16) >= 0  # hex
    assert user_id_for("", ISSUER).startswith("oidc-user-")
    long = user_id_for("f81d4fae-7dec-11d0-a765-00a0c91e6bf6", ISSUER)  # cut to fit 64
    assert long.startswith("oidc-f81d4fae-7dec-11d0-a765-00-") and len(long) == 64
    assert is_signed_in_id(user_id) and is_signed_in_id("OIDC-anything")
    assert not is_signed_in_id("alice") and not is_signed_in_id("guest-oidc-x")


def test_the_id_comes_from_the_configured_claim() -> None:
    by_sub = signed_in()
    assert by_sub.user_id == user_id_for("8d3f-alice", ISSUER) and by_sub.subject == "8d3f-alice"
    by_oid = signed_in(AuthPolicy.of(user_claim="oid"), oid="0f1e-oid")
    assert by_oid.user_id == user_id_for("0f1e-oid", ISSUER)
    by_mail = signed_in(AuthPolicy.of(user_claim="email", user_claim_verified_by="email_verified"))
    assert by_mail.user_id == user_id_for("alice@example.com", ISSUER)
    assert by_mail.label == "Alice (alice@example.com)"
    missing = refused(AuthPolicy.of(user_claim="oid"))
    assert "'oid'" in missing.reason and not missing.expired


@pytest.mark.parametrize("verified", [False, None, "true", 1, "missing"])
def test_a_user_claim_a_user_may_set_needs_the_provider_to_have_verified_it(
        verified: Any) -> None:
    """userClaim: email with a provider that lets users set their address: whoever sets the
    victim's address would become the victim, unless the verified-claim rule holds."""
    rule = AuthPolicy.of(user_claim="email", user_claim_verified_by="email_verified")
    extra = {"email_verified": verified} if verified != "missing" else {}
    got = identify({**claims(), **extra} if extra else
                   {k: v for k, v in claims().items() if k != "email_verified"}, rule, NOW)
    assert isinstance(got, Refusal) and "has not verified your 'email'" in got.reason
    # No rule configured at all: refused whatever the claims say.
    assert "has not verified" in refused(AuthPolicy.of(user_claim="email")).reason


def test_a_numeric_claim_is_a_value_but_a_boolean_is_not() -> None:
    policy = AuthPolicy.of(user_claim="uid", user_claim_verified_by="uid_verified")
    assert signed_in(policy, uid=1001, uid_verified=True).subject == "1001"
    assert isinstance(identify(claims(uid=True, uid_verified=True), policy, NOW), Refusal)


def test_sessions_older_than_the_max_age_are_refused() -> None:
    policy = AuthPolicy.of(max_age_s=3600)
    assert isinstance(identify(claims(iat=NOW - 3599), policy, NOW), Identity)
    old = refused(policy, iat=NOW - 3601)
    assert old.expired and "Sign in again" in old.reason
    assert refused(policy, iat=None).expired  # no issue time: cannot tell its age
    assert refused(policy, iat="yesterday").expired


def test_allowed_domains_need_a_verified_address_in_them() -> None:
    policy = AuthPolicy.of(allowed_domains=["Example.com", "@corp.example"])
    assert signed_in(policy).email == "alice@example.com"
    assert signed_in(policy, email="bob@corp.example").email == "bob@corp.example"
    assert "not in an allowed domain" in refused(policy, email="eve@evil.example").reason
    assert "not verified" in refused(policy, email_verified=False).reason
    # Only the boolean true is verified: missing (Entra ID omits it), null, or a string.
    for unverified in (None, "true", "false", 1):
        assert "not verified" in refused(policy, email_verified=unverified).reason
    no_claim = {k: v for k, v in claims().items() if k != "email_verified"}
    assert isinstance(identify(no_claim, policy, NOW), Refusal)
    assert "no e-mail" in refused(policy, email=None).reason
    # A look-alike subdomain is another domain.
    assert isinstance(identify(claims(email="a@example.com.evil"), policy, NOW), Refusal)


def test_allowed_groups_need_one_of_them() -> None:
    policy = AuthPolicy.of(allowed_groups=["chat-users"])
    assert signed_in(policy, groups=["staff", "chat-users"]).groups == ("staff", "chat-users")
    assert "none of the allowed groups" in refused(policy, groups=["staff"]).reason
    assert isinstance(identify(claims(), policy, NOW), Refusal)  # no groups claim at all
    other_claim = AuthPolicy.of(allowed_groups=["chat-users"], groups_claim="roles")
    assert signed_in(other_claim, roles="chat-users").groups == ("chat-users",)


@pytest.mark.parametrize(("admins", "extra", "admin"), [
    (["alice@example.com"], {}, False),            # an e-mail, even verified: never
    (["8d3f-alice"], {}, False),                   # the bare claim value: never
    ([user_id_for("8d3f-alice", ISSUER)], {}, True),  # the chatwax user id
    ([user_id_for("8d3f-alice", "https://other.example.com")], {}, False),  # other issuer
    (["group:ops"], {"groups": ["ops"]}, True),
    (["group:ops"], {"groups": ["dev"]}, False),
    (["ops"], {"groups": ["ops"]}, False),         # a group only as group:<name>
    (["group:8d3f-alice"], {}, False),             # a group entry never matches a subject
    ([], {}, False),
])
def test_admins_are_listed_by_chatwax_id_or_group(admins: list[str], extra: dict[str, Any],
                                                      admin: bool) -> None:
    assert signed_in(AuthPolicy.of(admins=admins), **extra).admin is admin


def test_the_policy_comes_from_the_settings() -> None:
    root = user_id_for("root", ISSUER)
    policy = AuthPolicy.from_settings(Settings.from_env({
        "CHATWAX_AUTH_USER_CLAIM": "email", "CHATWAX_AUTH_ALLOWED_DOMAINS": "example.com, corp.io",
        "CHATWAX_AUTH_USER_CLAIM_VERIFIED_BY": "email_verified",
        "CHATWAX_AUTH_ALLOWED_GROUPS": "chat", "CHATWAX_AUTH_ADMINS": f"{root},group:ops,,",
        "CHATWAX_AUTH_SESSION_MAX_AGE": "60", "CHATWAX_AUTH_GROUPS_CLAIM": "roles"}))
    assert policy == AuthPolicy.of("email", "roles", ["example.com", "corp.io"], ["chat"],
                                   [root, "group:ops"], 60.0, "email_verified")


@pytest.mark.parametrize(("env", "message"), [
    ({"CHATWAX_AUTH_USER_CLAIM": "email"}, "CHATWAX_AUTH_USER_CLAIM='email' may be a value"),
    ({"CHATWAX_AUTH_USER_CLAIM": "preferred_username"}, "CHATWAX_AUTH_USER_CLAIM_VERIFIED_BY"),
    ({"CHATWAX_AUTH_ADMINS": "group:ops,root@example.com"}, "lists 'root@example.com'"),
    ({"CHATWAX_AUTH_ADMINS": "8d3f-alice"}, "admins are chatwax user ids"),
    ({"CHATWAX_OIDC_METADATA_URL": "http://idp.example.com/.well-known/openid-configuration"},
     "CHATWAX_OIDC_METADATA_URL must be an https URL"),
    ({"CHATWAX_OIDC_REDIRECT_URI": "http://chat.example.com/oauth2callback"},
     "CHATWAX_OIDC_REDIRECT_URI must be an https URL"),
    ({"CHATWAX_OIDC_REDIRECT_URI": "http://127.0.0.1.nip.io/oauth2callback"}, "https URL"),
])
def test_settings_refuse_what_a_user_or_the_network_could_forge(env: dict[str, str],
                                                                message: str) -> None:
    from chatwax.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert message in err.value.message


@pytest.mark.parametrize("url", ["http://localhost:8501/oauth2callback",
                                 "http://127.0.0.1:8501/oauth2callback",
                                 "http://[::1]:8501/oauth2callback",
                                 "https://chat.example.com/oauth2callback"])
def test_plain_http_is_accepted_on_loopback_only(url: str) -> None:
    assert Settings.from_env({"CHATWAX_OIDC_REDIRECT_URI": url}).oidc_redirect_uri == url
    assert split_list(" a, b,,c ,") == ("a", "b", "c")
