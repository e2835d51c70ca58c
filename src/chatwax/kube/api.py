"""A client for the API server: the pod's service account, else the kubeconfig context."""

from __future__ import annotations

from typing import Any

from chatwax.core.errors import ConfigError


def connect() -> Any:
    """An `ApiClient`: in a pod from its service account, elsewhere from the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException as in_cluster:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as kubeconfig:
            raise ConfigError(
                f"no Kubernetes API access: not in a pod ({in_cluster}) and no usable "
                f"kubeconfig ({kubeconfig})") from None
        return client.ApiClient()


def describe(exc: Any) -> str:
    """`403 Forbidden` from an ApiException, without the response body (it can be long)."""
    return f"{getattr(exc, 'status', '?')} {getattr(exc, 'reason', '')}".strip()
