"""Azure: artifacts in Blob storage, the server as an Azure Container App (a revision per version).

    - name: azure-westeurope
      kind: azure
      options:
        store: az://serving/cloudhop          # container/prefix in the storage account
        account_name: mystorageaccount
        endpoint: https://flights-serving.happyhill-123.westeurope.azurecontainerapps.io
        subscription_id: 00000000-0000-0000-0000-000000000000
        resource_group: cloudhop
        location: westeurope
        environment_id: /subscriptions/.../managedEnvironments/cloudhop
        control: container-apps               # container-apps (ARM API) or gitops
        manifests: az://ops/manifests
        credentials: azure-blob-prod          # Prefect AzureBlobStorageCredentials block

azure.* is imported only inside cloudhop/providers/azure/. Container Apps have no local emulator: tests exercise
the rendered, schema-checked app and the gitops path; `ContainerApps` is a thin wrapper over
`ContainerAppsAPIClient.container_apps` (get / begin_create_or_update).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from cloudhop.providers.azure.manifests import CONTAINER_APP
from cloudhop.store import Store
from cloudhop.targets.base import TargetError
from cloudhop.targets.cloud import (CloudTarget, Endpoint, check_options, description_for, gitops_control, require,
                                    require_store)
from cloudhop.targets.description import version_of
from cloudhop.targets.manifests import render_kind

__all__ = ["AzureTarget", "ContainerApps", "from_spec", "blob_options", "secrets_from_block",
           "storage_options_from_block"]

OPTIONS = {"store", "account_name", "endpoint", "subscription_id", "resource_group", "location", "environment_id",
           "control", "manifests", "credentials", "admin_token_secret", "description", "image", "service",
           "hot_swap"}


def blob_options(secrets: dict[str, Any], account_name: str | None) -> dict[str, Any]:
    """adlfs storage options: a connection string, or an account name (+ key, else DefaultAzureCredential)."""
    opts: dict[str, Any] = {"use_listings_cache": False}  # see versions other writers publish
    if secrets.get("connection_string"):
        opts["connection_string"] = secrets["connection_string"]
    elif account_name:
        opts["account_name"] = account_name
        if secrets.get("account_key"):
            opts["account_key"] = secrets["account_key"]
        else:
            opts["anon"] = False  # adlfs then uses DefaultAzureCredential
    return opts


def secrets_from_block(block: dict[str, Any]) -> dict[str, Any]:
    """A target's secrets from an AzureBlobStorageCredentials block's fields."""
    return {k: block.get(k) for k in ("connection_string", "client_id", "tenant_id", "client_secret")}


def storage_options_from_block(block: dict[str, Any]) -> dict[str, Any]:
    """adlfs options for a store or dataset from an AzureBlobStorageCredentials block's fields: its
    connection string, else its account URL's account with DefaultAzureCredential."""
    account = urlsplit(block.get("account_url") or "").hostname
    return blob_options(secrets_from_block(block), account.split(".", 1)[0] if account else None)


class ContainerApps:
    """The Container Apps ARM API for one app: create or update it to a version, read it back."""

    def __init__(self, render_version: Any, subscription_id: str, resource_group: str, app: str,
                 secrets: dict[str, Any]):
        from azure.mgmt.appcontainers import ContainerAppsAPIClient

        if secrets.get("client_id") and secrets.get("client_secret"):
            from azure.identity import ClientSecretCredential
            cred: Any = ClientSecretCredential(secrets["tenant_id"], secrets["client_id"], secrets["client_secret"])
        else:
            from azure.identity import DefaultAzureCredential
            cred = DefaultAzureCredential()
        self._render, self.resource_group, self.app = render_version, resource_group, app
        self.client = ContainerAppsAPIClient(cred, subscription_id)

    def apply(self, version: str) -> dict[str, Any]:
        done: Any = self.client.container_apps.begin_create_or_update(
            self.resource_group, self.app, self._render(version)).result()
        return {"revision": done.properties.latest_revision_name}

    def desired_version(self) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            app: Any = self.client.container_apps.get(self.resource_group, self.app)
        except ResourceNotFoundError:
            return None
        env = app.properties.template.containers[0].env or []
        return version_of([{"name": e.name, "value": e.value} for e in env])


class AzureTarget(CloudTarget):
    kind = "azure"


def from_spec(spec_target: Any, spec: Any, secrets: dict[str, Any] | None = None) -> AzureTarget:
    o, name = dict(spec_target.options), spec_target.name
    check_options(o, OPTIONS, name, "azure")
    secrets = dict(secrets or {})
    store_uri = require_store(o, name, "azure", ("az", "abfs", "abfss"), "az://container/cloudhop")
    desc = description_for(spec_target, spec, o)

    def render_version(version: str) -> Any:
        return render_kind(CONTAINER_APP, desc, version=version, store=store_uri, target=name,
                           location=o.get("location", "westeurope"), environment_id=o.get("environment_id"))

    mode = o.get("control", "container-apps")
    if mode == "gitops":
        control: Any = gitops_control(o, name, render_version, secrets.get("manifests_store_options"))
    elif mode == "container-apps":
        control = ContainerApps(render_version, require(o, "subscription_id", name, "azure", "0000-..."),
                                require(o, "resource_group", name, "azure", "cloudhop"),
                                o.get("service") or desc.name, secrets)
    else:
        raise TargetError(f"targets.{name}.options.control must be container-apps or gitops, got {mode!r}")
    store = Store(store_uri, blob_options(secrets, o.get("account_name")))
    endpoint = require(o, "endpoint", name, "azure", "https://flights-serving.<env>.azurecontainerapps.io")
    return AzureTarget(name, store, control, Endpoint(endpoint, secrets.get("admin_token")),
                       hot_swap=o.get("hot_swap", True))
