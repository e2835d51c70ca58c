"""A real OpenID Connect provider for tests, built with Authlib's authorization server.

Authorization-code flow with PKCE (S256 required of every client, confidential ones too),
ID tokens signed with an RSA key made for this run and published at the JWKS endpoint, a
discovery document, and a login form for the users below. It runs on a free port in a
thread (werkzeug), like the echo LLM server: a fake at the protocol edge, never a patch of
Streamlit or chatwax.
"""

from __future__ import annotations

import contextlib
import html
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from tests.support.procs import free_port


@dataclass(frozen=True)
class User:
    name: str
    sub: str
    email: str
    display: str
    groups: tuple[str, ...] = ()
    email_verified: Any = True
    """Sent as is; None leaves the claim out (as Entra ID does)."""
    extra: tuple[tuple[str, Any], ...] = ()
    """More claims in the ID token, e.g. (("oid", "..."),)."""

    @property
    def password(self) -> str:
        return f"{self.name}-password"


USERS = {u.name: u for u in (
    User("alice", "2f1c9a7e-alice", "alice@example.com", "Alice Example", ("chat", "ops")),
    User("bob", "7b0b3d11-bob", "bob@example.com", "Bob Example", ("chat",)),
    User("mallory", "66ad0e2f-mallory", "mallory@evil.test", "Mallory", ()),
)}


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = {"openid", "profile", "email", "groups"}
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, as real providers do

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class S256Required(CodeChallenge):
    """PKCE for every client: a code challenge, and only S256."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE with code_challenge_method=S256 is required")
        super().validate_code_challenge(grant, redirect_uri)


class Provider:
    """The provider's state: its key, client, codes, what it was asked, and knobs."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.issuer = f"http://{host}:{self.port}"
        self.users = dict(USERS)
        """Who may sign in; a test adds its own."""
        self.requests = 0
        """HTTP requests served (a refused provider URL is never fetched)."""
        self.key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8)})
        self.client = Client("chatwax", secrets.token_urlsafe(24), [])
        self.codes: dict[str, Code] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.tokens_issued: list[dict[str, Any]] = []
        self.backdate_s = 0.0
        """ID tokens say they were issued this many seconds ago (an old session)."""
        self.lock = threading.Lock()

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def register(self, redirect_uri: str) -> None:
        """What an operator does at a provider: allow chatwax's redirect URI."""
        self.client.redirect_uris.append(redirect_uri)

    def settings_env(self, redirect_uri: str) -> dict[str, str]:
        """The CHATWAX_OIDC_* variables for chatwax with this provider."""
        self.register(redirect_uri)
        return {"CHATWAX_OIDC_METADATA_URL": self.metadata_url,
                "CHATWAX_OIDC_CLIENT_ID": self.client.client_id,
                "CHATWAX_OIDC_CLIENT_SECRET": self.client.client_secret,
                "CHATWAX_OIDC_REDIRECT_URI": redirect_uri}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "groups"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "name", "email",
                                 "email_verified", "groups"],
        }


def _app(provider: Provider) -> Flask:
    app = Flask("chatwax-test-oidc")
    app.config["OAUTH2_SCOPES_SUPPORTED"] = ["openid", "profile", "email", "groups"]

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            with provider.lock:
                provider.codes[code] = Code(
                    code, req.client.client_id, req.payload.redirect_uri, req.payload.scope,
                    req.user, data.get("nonce"), data.get("code_challenge"),
                    data.get("code_challenge_method"))

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            found = provider.codes.get(code)
            return found if found and found.client_id == client.client_id else None

        def delete_authorization_code(self, code: Code) -> None:
            with provider.lock:
                provider.codes.pop(code.code, None)

        def authenticate_user(self, code: Code) -> User:
            return code.user

    class Code_(OpenIDCode):
        def exists_nonce(self, nonce: str, req: Any) -> bool:
            return any(c.nonce == nonce for c in provider.codes.values())

        def resolve_client_private_key(self, client: Client) -> RSAKey:
            return provider.key

        def get_client_algorithm(self, client: Client) -> str:
            return "RS256"

        def get_encode_header(self, client: Client) -> dict[str, str]:
            return {"alg": "RS256", "kid": str(provider.key.kid)}

        def get_client_claims(self, client: Client) -> dict[str, Any]:
            now = int(time.time())
            return {"iss": provider.issuer, "aud": [client.client_id],
                    "iat": int(now - provider.backdate_s), "exp": now + 300}

        def generate_user_info(self, user: User, scope: str) -> UserInfo:
            info = UserInfo(sub=user.sub)
            if "profile" in scope:
                info.update(name=user.display, preferred_username=user.name)
            if "email" in scope:
                info.update(email=user.email)
                if user.email_verified is not None:
                    info["email_verified"] = user.email_verified
            info.update(dict(user.extra))
            info["groups"] = list(user.groups)
            provider.tokens_issued.append(dict(info))
            return info

    server = AuthorizationServer(app, query_client=lambda cid: (
        provider.client if cid == provider.client.client_id else None),
        save_token=lambda token, req: None)
    server.register_grant(CodeGrant, [S256Required(required=True), Code_(require_nonce=True)])

    @app.before_request
    def count() -> None:
        provider.requests += 1

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Any:
        return jsonify(provider.discovery())

    @app.get("/jwks")
    def jwks() -> Any:
        return jsonify({"keys": [provider.key.as_dict(private=False)]})

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        if request.method == "GET":
            provider.authorize_requests.append(dict(request.args))
            try:
                server.get_consent_grant(end_user=None)
            except Exception as exc:  # noqa: BLE001 - shown as the provider's error page
                return f"<h1>Bad request</h1><p>{html.escape(str(exc))}</p>", 400
            return _login_form(urlencode(request.args))
        user = provider.users.get(request.form.get("username", ""))
        if user is None or request.form.get("password") != user.password:
            query = urlencode({k: v for k, v in request.form.items()
                               if k not in ("username", "password")})
            return _login_form(query, "Wrong user or password"), 401
        # The form carries the authorization request's parameters (hidden fields).
        grant = server.get_consent_grant(end_user=user)
        return server.create_authorization_response(grant_user=user, grant=grant)

    @app.post("/token")
    def token() -> Any:
        return server.create_token_response()

    return app


def _login_form(query: str, error: str = "") -> str:
    fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in parse_qsl(query, keep_blank_values=True))
    return f"""<!doctype html><title>Test IdP</title><h1>Test identity provider</h1>
<p style="color:red">{html.escape(error)}</p>
<form method="post" action="/authorize">{fields}
<label>User <input id="username" name="username"></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="submit" type="submit">Sign in</button></form>"""


@contextlib.contextmanager
def oidc_provider(host: str = "127.0.0.1", bind: str | None = None) -> Iterator[Provider]:
    """The provider, named `host` in its URLs and serving on `bind` (default: `host`;
    loopback by default) in a thread until the block ends."""
    provider = Provider(host)
    httpd = make_server(bind or host, provider.port, _app(provider), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="test-oidc", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        httpd.shutdown()
        thread.join(5)
