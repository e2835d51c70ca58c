"""frontend.auth: sign-in with OpenID Connect. The secrets reach the pod only through
Secrets (never a ConfigMap, a plain env value or a flag), the redirect URI is the ingress's
public URL, the cookie secret is made once in the cluster when none is given, and with
sign-in on the identity-less `prompts` subject is off."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatwax.cli import build_parser
from tests.chart.conftest import INGRESS_TLS, OPEN_MODE, SIGN_IN, Chart, Rendered, env_of
from tests.chart.notes import install_notes

CLIENT = "client-sentinel-4f1d2e3c5b6a7980"
COOKIE = "cookie-sentinel-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
VALUE_SECRETS = ("frontend.auth.metadataUrl=https://idp.example.com/.well-known/openid-configuration",
                 "frontend.auth.clientId=chatwax", f"frontend.auth.clientSecret={CLIENT}",
                 f"frontend.auth.cookieSecret={COOKIE}", *INGRESS_TLS)
PRODUCTION = Path(__file__).parents[2] / "charts" / "chatwax" / "ci" / "production-values.yaml"


def _frontend_env(docs: Rendered) -> dict[str, Any]:
    return {**docs.find("ConfigMap", "-frontend-env")["data"],
            **docs.env("Deployment", "-frontend")}


def _containers(docs: Rendered) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        spec = d.get("spec", {})
        spec = spec.get("template", {}).get("spec", spec) if isinstance(spec, dict) else {}
        out += [*spec.get("containers", []), *spec.get("initContainers", [])]
    return out


def test_the_secrets_are_never_in_a_configmap_an_env_value_or_a_flag(chart: Chart,
                                                                      helm_major: str) -> None:
    """Sentinel secrets given as values live only in the chart's Secret, base64-encoded,
    and reach the frontend as files of a projected volume."""
    text = chart.render_text(*VALUE_SECRETS, major=helm_major)
    assert CLIENT not in text and COOKIE not in text  # not even in a comment or a checksum
    docs = chart.render(*VALUE_SECRETS, major=helm_major)
    for cm in docs.of_kind("ConfigMap"):
        for value in cm.get("data", {}).values():
            for sentinel in (CLIENT, COOKIE):
                assert sentinel not in value
                assert base64.b64encode(sentinel.encode()).decode() not in value
    for c in _containers(docs):
        assert not [e for e in c.get("env", []) if e.get("value") in (CLIENT, COOKIE)]
        assert not [a for a in c.get("command", []) + c.get("args", [])
                    if CLIENT in a or COOKIE in a]
    secret = docs.find("Secret", "-frontend-auth")
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "client-secret": CLIENT, "cookie-secret": COOKIE}
    files = docs.secret_files("Deployment", "-frontend")
    name = secret["metadata"]["name"]
    assert files["CHATWAX_OIDC_CLIENT_SECRET"] == {"name": name, "key": "client-secret"}
    assert files["CHATWAX_OIDC_COOKIE_SECRET"] == {"name": name, "key": "cookie-secret"}
    # A new secret rolls the frontend (the Deployment carries the Secret's checksum).
    other = chart.render(*VALUE_SECRETS, "frontend.auth.clientSecret=another-one")
    annotations = [d["spec"]["template"]["metadata"]["annotations"]
                   for d in (docs, other) for d in [d.find("Deployment", "-frontend")]]
    assert annotations[0]["checksum/auth-secret"] != annotations[1]["checksum/auth-secret"]


def _ingress(host: str = "chat.example.com", path: str = "/",
             tls_hosts: tuple[str, ...] = ()) -> dict[str, Any]:
    ingress: dict[str, Any] = {"enabled": True, "hosts": [
        {"host": host, "paths": [{"path": path, "pathType": "Prefix"}]}]}
    if tls_hosts:
        ingress["tls"] = [{"secretName": "chat-tls", "hosts": list(tls_hosts)}]
    return {"frontend": {"ingress": ingress}}


TLS = ("chat.example.com",)


@pytest.mark.parametrize(("values", "sets", "uri"), [
    (_ingress(tls_hosts=TLS), (), "https://chat.example.com/oauth2callback"),
    (_ingress(path="/chat", tls_hosts=TLS), (),
     "https://chat.example.com/chat/oauth2callback"),
    (_ingress(tls_hosts=TLS), ("frontend.baseUrlPath=/apps/chat/",),
     "https://chat.example.com/apps/chat/oauth2callback"),
    (_ingress(), ("frontend.auth.redirectUri=https://proxy.example.com/x/oauth2callback",),
     "https://proxy.example.com/x/oauth2callback"),
], ids=["https", "ingress-path", "base-path", "explicit"])
def test_the_redirect_uri_is_the_ingress_url(chart: Chart, helm_major: str, tmp_path: Path,
                                             values: dict[str, Any], sets: tuple[str, ...],
                                             uri: str) -> None:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    docs = chart.render(*SIGN_IN[:3], *sets, values=(file,), major=helm_major)
    env = _frontend_env(docs)
    assert env["CHATWAX_OIDC_REDIRECT_URI"] == uri
    if "redirectUri" in str(sets):
        return
    # Streamlit serves its callback under its base path, behind the ingress's host and path.
    ingress = docs.find("Ingress", "-frontend")["spec"]
    rule = ingress["rules"][0]
    tls = any(rule["host"] in t.get("hosts", []) for t in ingress.get("tls", []))
    flags = [a for a in docs.container("Deployment", "-frontend")["command"]
             if a.startswith("--base-url-path=")]
    base = "/" + flags[0].split("=", 1)[1] if flags else ""
    assert uri == f"{'https' if tls else 'http'}://{rule['host']}{base}/oauth2callback"


@pytest.mark.parametrize("values", [_ingress(), _ingress(tls_hosts=("other.example.com",))],
                         ids=["no-tls", "tls-for-another-host"])
def test_sign_in_never_derives_a_plain_http_redirect(chart: Chart, helm_major: str,
                                                     tmp_path: Path,
                                                     values: dict[str, Any]) -> None:
    """Without TLS for the host the code and the identity cookie would cross the network in
    the clear: the chart refuses instead of deriving http://.../oauth2callback."""
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    res = chart.helm(helm_major, *chart.template_args(*SIGN_IN[:3], values=(file,)))
    assert res.returncode != 0
    assert "sign-in needs https: frontend.ingress.tls must list chat.example.com" in res.stderr


def test_no_ingress_needs_an_explicit_redirect_uri(chart: Chart) -> None:
    res = chart.helm("3", *chart.template_args(*SIGN_IN, "frontend.ingress.enabled=false"))
    assert res.returncode != 0 and "frontend.auth.redirectUri" in res.stderr
    docs = chart.render(*SIGN_IN, "frontend.ingress.enabled=false",
                        "frontend.auth.redirectUri=http://localhost:8501/oauth2callback")
    assert _frontend_env(docs)["CHATWAX_OIDC_REDIRECT_URI"] == \
        "http://localhost:8501/oauth2callback"


def test_the_cookie_secret_is_made_once_in_the_cluster_unless_given(chart: Chart) -> None:
    docs = chart.render(*SIGN_IN)
    job = docs.find("Job", "-frontend-auth-init")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    args = build_parser().parse_args(job["spec"]["template"]["spec"]["containers"][0][
        "command"][1:])
    assert (args.kube_command, args.key) == ("ensure-secret", ["cookie-secret"])
    assert args.name == "chatwax-frontend-auth-cookie"
    role = docs.find("Role", "-frontend-auth-init")
    assert role["rules"][1] == {"apiGroups": [""], "resources": ["secrets"],
                                "resourceNames": [args.name], "verbs": ["get", "patch"]}
    assert docs.find("RoleBinding", "-frontend-auth-init")["subjects"][0]["name"] == \
        docs.find("ServiceAccount", "-frontend-auth-init")["metadata"]["name"] == \
        job["spec"]["template"]["spec"]["serviceAccountName"]
    files = docs.secret_files("Deployment", "-frontend")
    assert files["CHATWAX_OIDC_COOKIE_SECRET"] == {"name": args.name, "key": "cookie-secret"}
    assert files["CHATWAX_OIDC_CLIENT_SECRET"] == {"name": "chatwax-oidc",
                                                   "key": "client-secret"}
    assert not docs.of_kind("Secret")  # existingSecret: the chart makes none
    # Both secrets in the user's Secret: no hook, no chart Secret.
    mine = chart.render(*SIGN_IN, "frontend.auth.cookieSecretKey=cookie",
                        "frontend.auth.clientSecretKey=oidc-secret")
    assert not [d for d in mine if "frontend-auth" in d["metadata"]["name"]]
    files = mine.secret_files("Deployment", "-frontend")
    assert files["CHATWAX_OIDC_COOKIE_SECRET"] == {"name": "chatwax-oidc", "key": "cookie"}
    assert files["CHATWAX_OIDC_CLIENT_SECRET"]["key"] == "oidc-secret"
    # Open mode, or sign-in with no provider yet: nothing of it is rendered.
    for sets, auth in ((OPEN_MODE, "none"), ((), "oidc")):
        off = chart.render(*sets)
        assert not [d for d in off if "frontend-auth" in d["metadata"]["name"]]
        assert "CHATWAX_OIDC_COOKIE_SECRET" not in off.secret_files("Deployment", "-frontend")
        assert off.find("ConfigMap", "-frontend-env")["data"]["CHATWAX_AUTH"] == auth


def test_streamlits_secrets_file_is_written_in_memory(chart: Chart) -> None:
    docs = chart.render(*SIGN_IN)
    container = docs.container("Deployment", "-frontend")
    assert "--secrets-dir=/run/chatwax-ui" in container["command"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/run/chatwax-ui")
    volumes = docs.find("Deployment", "-frontend")["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    assert volume["emptyDir"]["medium"] == "Memory"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(("sets", "error"), [
    (("frontend.auth.clientId=x",
      "frontend.auth.existingSecret=s", "frontend.ingress.enabled=true"), "metadataUrl"),
    ((*SIGN_IN[:2], *INGRESS_TLS), "client secret"),
    ((*SIGN_IN, "frontend.auth.cookieSecret=short"), "cookieSecret"),
    ((*SIGN_IN, "frontend.auth.scopes=profile email"), "scopes"),
    ((*SIGN_IN, "frontend.auth.redirectUri=https://x/callback"), "redirectUri"),
    ((*SIGN_IN, "frontend.auth.redirectUri=http://chat.example.com/oauth2callback"),
     "redirectUri"),
    ((*SIGN_IN[1:], "frontend.auth.metadataUrl=http://idp.example.com/.well-known/x"),
     "metadataUrl"),
    ((*SIGN_IN, "frontend.auth.userClaim=email"), "userClaimVerifiedBy"),
    ((*SIGN_IN, "frontend.auth.admins={root@example.com}"), "admins"),
    ((*SIGN_IN, "dataflow.compatAdapter=sometimes"), "compatAdapter"),
], ids=["no-metadata", "no-client-secret", "short-cookie", "no-openid", "bad-redirect",
        "http-redirect", "http-provider", "unverified-claim", "admin-by-email", "compat-mode"])
def test_a_sign_in_that_cannot_work_is_refused_at_render(chart: Chart, sets: tuple[str, ...],
                                                         error: str) -> None:
    res = chart.helm("3", *chart.template_args(*sets))
    assert res.returncode != 0 and error in res.stderr, res.stderr


def test_settings_reach_the_page_as_the_settings_declare_them(chart: Chart) -> None:
    from chatwax.core.identity import user_id_for
    from chatwax.core.settings import Settings

    root = user_id_for("root", "https://idp.example.com")
    docs = chart.render(*SIGN_IN, "frontend.auth.allowedDomains={example.com,corp.example}",
                        f"frontend.auth.admins={{group:ops,{root}}}",
                        "frontend.auth.userClaim=email",
                        "frontend.auth.userClaimVerifiedBy=email_verified",
                        "frontend.auth.sessionMaxAgeSeconds=600")
    data = docs.find("ConfigMap", "-frontend-env")["data"]
    settings = Settings.from_env({**data, "CHATWAX_OIDC_CLIENT_SECRET": "x",
                                  "CHATWAX_OIDC_COOKIE_SECRET": "y" * 32})
    assert settings.auth == "oidc" and settings.auth_user_claim == "email"
    assert settings.auth_user_claim_verified_by == "email_verified"
    assert settings.auth_allowed_domains == "example.com,corp.example"
    assert settings.auth_admins == f"group:ops,{root}"
    assert settings.auth_session_max_age_s == 600


def test_production_values_sign_in_and_turn_prompts_off(chart: Chart) -> None:
    from chatwax.core import wire

    docs = chart.render(values=(PRODUCTION,))
    env = _frontend_env(docs)
    assert env["CHATWAX_AUTH"] == "oidc"
    assert env["CHATWAX_OIDC_REDIRECT_URI"] == "https://chat.example.com/oauth2callback"
    assert docs.secret_files("Deployment", "-frontend")["CHATWAX_OIDC_CLIENT_SECRET"][
        "name"] == "chatwax-oidc"
    assert docs.find("ConfigMap", "-dataflow-env")["data"]["CHATWAX_COMPAT_SUBJECT"] == ""
    conf = docs.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    assert f'"{wire.COMPAT_SUBJECT}",' not in conf


def test_install_notes_say_how_to_register_chatwax_or_warn_of_open_mode(chart: Chart) -> None:
    notes = install_notes(chart, values=(PRODUCTION,))
    assert ("Register this redirect URI at the provider: https://chat.example.com/oauth2callback"
            in notes)
    assert "The tutorial's `prompts` subject is off" in notes
    open_ingress = install_notes(chart, *OPEN_MODE, "frontend.auth.openModeExposed=true",
                                 "frontend.ingress.enabled=true")
    assert "WARNING: open mode, no sign-in, EXPOSED" in open_ingress
    assert "Open mode, no sign-in" in install_notes(chart, *OPEN_MODE)
    assert "Sign-in is on, but no OpenID Connect provider is configured" in \
        install_notes(chart)


def test_the_default_install_signs_in_and_restricts_the_network(chart: Chart,
                                                                helm_major: str) -> None:
    """A plain `helm install`: sign-in on (with no provider yet the page lets nobody in),
    the identity-less `prompts` subject off, and a NetworkPolicy with ingress and egress
    rules for every chatwax pod."""
    docs = chart.render(major=helm_major)
    assert docs.find("ConfigMap", "-frontend-env")["data"]["CHATWAX_AUTH"] == "oidc"
    assert docs.find("ConfigMap", "-dataflow-env")["data"]["CHATWAX_COMPAT_SUBJECT"] == ""
    policies = {p["metadata"]["name"].rsplit("-", 1)[-1]: p["spec"]
                for p in docs.of_kind("NetworkPolicy")}
    assert set(policies) == {"nats", "dataflow", "frontend"}
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["egress"]


@pytest.mark.parametrize("exposure", [
    ("frontend.ingress.enabled=true",), ("frontend.service.type=LoadBalancer",),
    ("frontend.service.type=NodePort",)], ids=["ingress", "loadbalancer", "nodeport"])
def test_open_mode_is_never_exposed_without_an_acknowledgement(
        chart: Chart, helm_major: str, exposure: tuple[str, ...]) -> None:
    res = chart.helm(helm_major, *chart.template_args(*OPEN_MODE, *exposure))
    assert res.returncode != 0 and "frontend.auth.openModeExposed" in res.stderr, res.stderr
    acknowledged = chart.render(*OPEN_MODE, *exposure, "frontend.auth.openModeExposed=true",
                                major=helm_major)
    assert acknowledged.find("ConfigMap", "-frontend-env")["data"]["CHATWAX_AUTH"] == "none"
    # With sign-in (no provider yet, or one) the same exposure needs no acknowledgement.
    assert chart.render(*exposure, major=helm_major)


def test_no_container_env_holds_a_secret(chart: Chart, ci_values: Path) -> None:
    """Across every CI values file: no env variable whose name says secret or password,
    neither a plain value nor a Secret reference: secrets are files (core/secretfiles.py)."""
    docs = chart.render(values=(ci_values,))
    for c in _containers(docs):
        for name in env_of(c):
            assert not any(w in name for w in ("SECRET", "PASSWORD", "API_KEY", "TOKEN")) \
                or name == "CHATWAX_SECRETS_DIR", (c["name"], name)
