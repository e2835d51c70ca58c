"""Who is talking: an OpenID Connect identity turned into a chatwax user, and who may enter.

Pure logic, no I/O: the pages hand in the ID token's claims (Streamlit's `st.user`) and get
back an `Identity` or a `Refusal` that says why. The rules:

- The chatwax user id comes from ONE claim (`CHATWAX_AUTH_USER_CLAIM`): a stable identifier
  the provider assigns (`sub`, the default, or Entra ID's `oid`). Any other claim (an
  e-mail address, a user name: values a user may be able to choose) is taken only when a
  verified-claim rule names the boolean claim the provider sets `true` once it verified
  that value (`CHATWAX_AUTH_USER_CLAIM_VERIFIED_BY`, e.g. `email_verified`).
- Any claim value maps to a valid, stable id: `oidc-`, a readable part (the value with
  every character outside `[A-Za-z0-9_-]` turned into `_`, at most 26 characters) and 32
  hex characters (128 bits) of sha256(issuer, value). The hash keeps ids apart when two
  values read alike ("a.b" and "a_b"), when a long value is cut, and across issuers; the
  `oidc-` prefix is one typed ids cannot take (the open-mode page refuses it), so nobody
  can type an id shaped like a signed-in one.
- An e-mail address counts as verified only when `email_verified` is the boolean `true`:
  missing (Entra ID omits it), `null` or the string "true" are not. Allowed e-mail domains
  take verified addresses only.
- A session is as old as its ID token (`iat`); past `CHATWAX_AUTH_SESSION_MAX_AGE` seconds
  the user must sign in again, whatever the cookie's own lifetime.
- Admins (who see every user's usage) are listed by chatwax user id (shown on the page) or
  `group:<name>`; never by e-mail or another claim a user might set.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from chatwax.core.wire import MAX_USER_ID

SIGNED_IN_PREFIX: Final = "oidc-"
"""Every signed-in user id starts so; a typed (open-mode) id never may."""
STABLE_CLAIMS: Final = ("sub", "oid")
"""Claims the provider assigns and a user cannot choose: a user id from any other claim
needs a verified-claim rule."""
HASH_CHARS: Final = 32  # 128 bits
READABLE_MAX: Final = MAX_USER_ID - len(SIGNED_IN_PREFIX) - 1 - HASH_CHARS
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]+")


def user_id_for(value: str, issuer: str = "") -> str:
    """The chatwax user id of one claim value from one issuer: stable and valid."""
    readable = _UNSAFE.sub("_", value).strip("_")[:READABLE_MAX].strip("_") or "user"
    digest = hashlib.sha256(f"{issuer}\0{value}".encode()).hexdigest()[:HASH_CHARS]
    user_id = f"{SIGNED_IN_PREFIX}{readable}-{digest}"
    assert len(user_id) <= MAX_USER_ID
    return user_id


def is_signed_in_id(user_id: str) -> bool:
    """Whether an id has the shape only signed-in users get (refused when typed)."""
    return user_id.lower().startswith(SIGNED_IN_PREFIX)


def split_list(text: str) -> tuple[str, ...]:
    """`a, b,,c` -> ("a", "b", "c"): the comma-separated lists of the settings."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


class AuthSettings(Protocol):
    """The CHATWAX_AUTH_* settings a policy is made of (`Settings` has them).

    A protocol, not an import of `Settings`: the settings check admins and the user claim
    with this module's rules, so importing them back would make a cycle in `core`.
    """

    @property
    def auth_user_claim(self) -> str: ...
    @property
    def auth_groups_claim(self) -> str: ...
    @property
    def auth_allowed_domains(self) -> str: ...
    @property
    def auth_allowed_groups(self) -> str: ...
    @property
    def auth_admins(self) -> str: ...
    @property
    def auth_session_max_age_s(self) -> float: ...
    @property
    def auth_user_claim_verified_by(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Who may sign in and who is an admin (from the CHATWAX_AUTH_* settings)."""

    user_claim: str = "sub"
    groups_claim: str = "groups"
    allowed_domains: frozenset[str] = frozenset()
    allowed_groups: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    max_age_s: float = 8 * 3600.0
    user_claim_verified_by: str = ""
    """A boolean claim that must be `true` for a user_claim outside STABLE_CLAIMS."""

    @classmethod
    def of(cls, user_claim: str = "sub", groups_claim: str = "groups",
           allowed_domains: Iterable[str] = (), allowed_groups: Iterable[str] = (),
           admins: Iterable[str] = (), max_age_s: float = 8 * 3600.0,
           user_claim_verified_by: str = "") -> AuthPolicy:
        return cls(user_claim, groups_claim,
                   frozenset(d.lower().lstrip("@") for d in allowed_domains),
                   frozenset(allowed_groups), frozenset(admins), max_age_s,
                   user_claim_verified_by)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> AuthPolicy:
        return cls.of(settings.auth_user_claim, settings.auth_groups_claim,
                      split_list(settings.auth_allowed_domains),
                      split_list(settings.auth_allowed_groups), split_list(settings.auth_admins),
                      settings.auth_session_max_age_s, settings.auth_user_claim_verified_by)


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in user as the pages know them."""

    user_id: str
    """The chatwax user id every prompt, conversation and usage row of this user carries."""
    subject: str
    """The value of the configured claim, as the provider sent it."""
    issuer: str
    name: str
    email: str | None
    groups: tuple[str, ...] = ()
    admin: bool = False
    issued_at: float = 0.0

    @property
    def label(self) -> str:
        """How the page names the user: name and e-mail, whichever the provider sent."""
        if self.email and self.name and self.name != self.email:
            return f"{self.name} ({self.email})"
        return self.email or self.name or self.subject


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a signed-in browser may not use chatwax; `expired` asks for a new sign-in."""

    reason: str
    expired: bool = False


@dataclass(frozen=True, slots=True)
class _Claims:
    raw: Mapping[str, Any]

    def text(self, name: str) -> str | None:
        value = self.raw.get(name)
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float):
            return str(value)
        return value if isinstance(value, str) and value else None

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.raw.get(name)
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value if isinstance(v, str | int) and str(v))
        return ()


def identify(claims: Mapping[str, Any], policy: AuthPolicy, now: float) -> Identity | Refusal:
    """The identity of a browser's ID-token claims under `policy`, or why it is refused."""
    c = _Claims(claims)
    subject = c.text(policy.user_claim)
    if subject is None:
        return Refusal(f"the sign-in carries no '{policy.user_claim}' claim to identify you by "
                       "(CHATWAX_AUTH_USER_CLAIM); ask the operator")
    if policy.user_claim not in STABLE_CLAIMS:
        rule = policy.user_claim_verified_by
        if not rule or claims.get(rule) is not True:
            return Refusal(f"the provider has not verified your '{policy.user_claim}' "
                           f"('{rule or 'CHATWAX_AUTH_USER_CLAIM_VERIFIED_BY'}' is not true), "
                           "so it cannot identify you")
    issued = claims.get("iat")
    if isinstance(issued, bool) or not isinstance(issued, int | float):
        return Refusal("the sign-in carries no issue time ('iat'); sign in again", expired=True)
    age = now - float(issued)
    if age > policy.max_age_s:
        return Refusal(f"your sign-in is {_duration(age)} old; sessions last "
                       f"{_duration(policy.max_age_s)}. Sign in again.", expired=True)
    email = c.text("email")
    verified = claims.get("email_verified") is True  # missing, null or "true": unverified
    groups = c.strings(policy.groups_claim)
    if policy.allowed_domains:
        domain = email.rsplit("@", 1)[-1].lower() if email and "@" in email else None
        if domain is None or not verified or domain not in policy.allowed_domains:
            shown = email if email else "no e-mail address"
            why = " (not verified by the provider)" if email and not verified else ""
            return Refusal(f"{shown}{why} is not in an allowed domain "
                           f"({', '.join(sorted(policy.allowed_domains))})")
    if policy.allowed_groups and not policy.allowed_groups & set(groups):
        return Refusal(f"you are in none of the allowed groups "
                       f"({', '.join(sorted(policy.allowed_groups))})")
    issuer = c.text("iss") or ""
    user_id = user_id_for(subject, issuer)
    return Identity(
        user_id=user_id, subject=subject, issuer=issuer,
        name=c.text("name") or c.text("preferred_username") or "", email=email,
        groups=groups, admin=_is_admin(policy.admins, user_id, groups),
        issued_at=float(issued),
    )


def _is_admin(admins: frozenset[str], user_id: str, groups: tuple[str, ...]) -> bool:
    """By chatwax user id or `group:<name>` only: an id carries the issuer's hash, a group
    is the provider's; an e-mail or a display name may be the user's own choice."""
    in_groups = {a.removeprefix("group:") for a in admins if a.startswith("group:")}
    return user_id in admins or bool(in_groups & set(groups))


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
