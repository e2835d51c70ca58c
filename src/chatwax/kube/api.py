"""A client for the API server: the pod's service account, else the kubeconfig context."""

from __future__ import annotations

import os
from typing import Any

from chatwax.core.errors import ConfigError


def connect() -> Any:
    """An `ApiClient`: in a pod from its service account, elsewhere from the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException as in_cluster:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            # In a pod whose ServiceAccount token is not mounted (a `default` account
            # with automountServiceAccountToken: false): say which switch helps.
            raise ConfigError(
                f"this pod has no Kubernetes API credentials ({in_cluster}): mount the "
                "ServiceAccount token (automountServiceAccountToken: true), or turn the "
                "replica lookup off (chart value dataflow.replicaLookup.enabled=false)"
            ) from None
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as kubeconfig:
            # The loader's message can quote the kubeconfig's user entry, token included:
            # name the file and the kind of failure only.
            where = os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise ConfigError(
                f"no Kubernetes API access: not in a pod ({in_cluster}) and no usable "
                f"kubeconfig at {where} ({type(kubeconfig).__name__})") from None
        return client.ApiClient()


def describe(exc: Any) -> str:
    """`403 Forbidden` from an ApiException, without the response body (it can be long)."""
    return f"{getattr(exc, 'status', '?')} {getattr(exc, 'reason', '')}".strip()
