"""Who is talking: an OpenID Connect identity turned into a chatwax user, and who may enter.

Pure logic, no I/O: the pages hand in the ID token's claims (Streamlit's `st.user`) and get
back an `Identity` or a `Refusal` that says why. The rules:

- The chatwax user id comes from ONE stable claim (`sub` by default; `CHATWAX_AUTH_USER_CLAIM`).
  Any claim value maps to a valid, stable id: a readable part (the value with every
  character outside `[A-Za-z0-9_-]` turned into `_`, at most 40 characters) and 12 hex
  characters of sha256(issuer, value). The hash keeps ids apart when two values read alike
  ("a.b" and "a_b"), when a long value is cut, and across issuers; and a signed-in user can
  never take an id someone typed in open mode or gave `chatwax ask` (those have no hash).
- Allowed e-mail domains and groups, when configured, are checked on every page run. An
  e-mail the provider marks unverified (`email_verified: false`) never passes a domain check.
- A session is as old as its ID token (`iat`); past `CHATWAX_AUTH_SESSION_MAX_AGE` seconds
  the user must sign in again, whatever the cookie's own lifetime.
- Admins (who see every user's usage) are listed by claim value, chatwax user id, verified
  e-mail address, or `group:<name>`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from chatwax.core.protocol import MAX_USER_ID
from chatwax.core.settings import Settings

READABLE_MAX: Final = 40
HASH_CHARS: Final = 12
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]+")


def user_id_for(value: str, issuer: str = "") -> str:
    """The chatwax user id of one claim value from one issuer: stable and valid."""
    readable = _UNSAFE.sub("_", value).strip("_")[:READABLE_MAX].strip("_") or "user"
    digest = hashlib.sha256(f"{issuer}\0{value}".encode()).hexdigest()[:HASH_CHARS]
    user_id = f"{readable}-{digest}"
    assert len(user_id) <= MAX_USER_ID
    return user_id


def split_list(text: str) -> tuple[str, ...]:
    """`a, b,,c` -> ("a", "b", "c"): the comma-separated lists of the settings."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Who may sign in and who is an admin (from the CHATWAX_AUTH_* settings)."""

    user_claim: str = "sub"
    groups_claim: str = "groups"
    allowed_domains: frozenset[str] = frozenset()
    allowed_groups: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    max_age_s: float = 8 * 3600.0

    @classmethod
    def of(cls, user_claim: str = "sub", groups_claim: str = "groups",
           allowed_domains: Iterable[str] = (), allowed_groups: Iterable[str] = (),
           admins: Iterable[str] = (), max_age_s: float = 8 * 3600.0) -> AuthPolicy:
        return cls(user_claim, groups_claim,
                   frozenset(d.lower().lstrip("@") for d in allowed_domains),
                   frozenset(allowed_groups),
                   frozenset(a.lower() if "@" in a else a for a in admins), max_age_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthPolicy:
        return cls.of(settings.auth_user_claim, settings.auth_groups_claim,
                      split_list(settings.auth_allowed_domains),
                      split_list(settings.auth_allowed_groups), split_list(settings.auth_admins),
                      settings.auth_session_max_age_s)


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
    issued = claims.get("iat")
    if isinstance(issued, bool) or not isinstance(issued, int | float):
        return Refusal("the sign-in carries no issue time ('iat'); sign in again", expired=True)
    age = now - float(issued)
    if age > policy.max_age_s:
        return Refusal(f"your sign-in is {_duration(age)} old; sessions last "
                       f"{_duration(policy.max_age_s)}. Sign in again.", expired=True)
    email = c.text("email")
    verified = claims.get("email_verified", True) is not False
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
        groups=groups, admin=_is_admin(policy.admins, subject, user_id,
                                       email.lower() if email and verified else None, groups),
        issued_at=float(issued),
    )


def _is_admin(admins: frozenset[str], subject: str, user_id: str, email: str | None,
              groups: tuple[str, ...]) -> bool:
    in_groups = {a.removeprefix("group:") for a in admins if a.startswith("group:")}
    names = admins - {f"group:{g}" for g in in_groups}
    return bool({n for n in (subject, user_id, email) if n} & names or in_groups & set(groups))


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
