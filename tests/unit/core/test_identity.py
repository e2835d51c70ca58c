"""Who is talking: ID-token claims -> a chatwax user id, who may enter, who is an admin,
how long a sign-in lasts. Pure functions, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwax.core.identity import AuthPolicy, Identity, Refusal, identify, split_list, user_id_for
from chatwax.core.protocol import check_id
from chatwax.core.settings import Settings

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


def test_the_id_is_readable_and_never_a_bare_typed_id() -> None:
    """A signed-in user cannot take an id someone typed in open mode or gave `chatwax ask`:
    every mapped id ends in a hash."""
    user_id = user_id_for("alice@example.com", ISSUER)
    assert user_id.startswith("alice_example_com-") and len(user_id.split("-")[-1]) == 12
    assert user_id != "alice" and user_id_for("", ISSUER).startswith("user-")
    assert user_id_for("f81d4fae-7dec-11d0-a765-00a0c91e6bf6", ISSUER).startswith(
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6-")


def test_the_id_comes_from_the_configured_claim() -> None:
    by_sub = signed_in()
    assert by_sub.user_id == user_id_for("8d3f-alice", ISSUER) and by_sub.subject == "8d3f-alice"
    by_mail = signed_in(AuthPolicy.of(user_claim="email"))
    assert by_mail.user_id == user_id_for("alice@example.com", ISSUER)
    assert by_mail.label == "Alice (alice@example.com)"
    missing = refused(AuthPolicy.of(user_claim="oid"))
    assert "'oid'" in missing.reason and not missing.expired


def test_a_numeric_claim_is_a_value_but_a_boolean_is_not() -> None:
    assert signed_in(AuthPolicy.of(user_claim="uid"), uid=1001).subject == "1001"
    assert isinstance(identify(claims(uid=True), AuthPolicy.of(user_claim="uid"), NOW), Refusal)


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
    (["ALICE@example.com"], {}, True),             # verified e-mail, any case
    (["alice@example.com"], {"email_verified": False}, False),  # unverified: never
    (["8d3f-alice"], {}, True),                    # the claim value
    ([user_id_for("8d3f-alice", ISSUER)], {}, True),  # the chatwax user id
    (["group:ops"], {"groups": ["ops"]}, True),
    (["group:ops"], {"groups": ["dev"]}, False),
    (["ops"], {"groups": ["ops"]}, False),         # a group only as group:<name>
    (["group:8d3f-alice"], {}, False),             # a group entry never matches a subject
    ([], {}, False),
])
def test_admins_are_listed_by_claim_id_email_or_group(admins: list[str], extra: dict[str, Any],
                                                      admin: bool) -> None:
    assert signed_in(AuthPolicy.of(admins=admins), **extra).admin is admin


def test_the_policy_comes_from_the_settings() -> None:
    policy = AuthPolicy.from_settings(Settings.from_env({
        "CHATWAX_AUTH_USER_CLAIM": "email", "CHATWAX_AUTH_ALLOWED_DOMAINS": "example.com, corp.io",
        "CHATWAX_AUTH_ALLOWED_GROUPS": "chat", "CHATWAX_AUTH_ADMINS": "root@example.com,,",
        "CHATWAX_AUTH_SESSION_MAX_AGE": "60", "CHATWAX_AUTH_GROUPS_CLAIM": "roles"}))
    assert policy == AuthPolicy.of("email", "roles", ["example.com", "corp.io"], ["chat"],
                                   ["root@example.com"], 60.0)
    assert split_list(" a, b,,c ,") == ("a", "b", "c")
