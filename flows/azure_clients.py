"""Credentials and Azure SDK clients built from `[azure]` settings.

Every client gets the same `arm_endpoint` and `ca_bundle`, so a sovereign cloud and the
simulated estate are reached exactly like public Azure: same SDK, same code path.

Every client also gets the same patience, from `[collect]`: connect and read timeouts (a
stalled answer is given up and retried instead of holding a task for azure-core's default five
minutes), azure-core retries bounded by `max_retries` with back-off capped at
`max_retry_wait_seconds`, and `RetryUnreadableJson`, which makes a 2xx JSON answer whose body
does not parse (cut short on the way) a retryable read error instead of a failed call.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.costmanagement import CostManagementClient
from azure.mgmt.hybridcompute import HybridComputeManagementClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from azure.mgmt.security import SecurityCenter
from azure.monitor.query import LogsQueryClient
from azure.storage.blob import ContainerClient

from flows.config import ArchiveSettings, ConfigError, Settings


class StaticTokenCredential(TokenCredential):
    """Sends one fixed bearer token. For emulators on loopback only (checked by the config)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=***)"


def build_credential(settings: Settings) -> TokenCredential:
    """The credential named by `[azure] credential`; secrets come from the environment only."""
    from azure import identity

    kind = settings.azure.credential
    if kind == "static_token":
        # `load_settings` refuses this already; settings built any other way are checked too.
        if not settings.azure.endpoint_is_loopback():
            raise ConfigError(
                f"credential 'static_token' is for emulators only and is refused for "
                f"{settings.azure.arm_endpoint}"
            )
        return StaticTokenCredential(settings.static_token())
    if kind == "cli":
        return identity.AzureCliCredential(tenant_id=settings.azure.tenant_id or "")
    if kind == "managed_identity":
        return identity.ManagedIdentityCredential(client_id=settings.azure.client_id)
    if kind == "service_principal":
        secret = os.environ.get("AZURE_CLIENT_SECRET")
        if not (settings.azure.tenant_id and settings.azure.client_id and secret):
            raise ConfigError(
                "credential 'service_principal' needs [azure] tenant_id and client_id, "
                "and the secret in the environment variable AZURE_CLIENT_SECRET"
            )
        return identity.ClientSecretCredential(
            settings.azure.tenant_id, settings.azure.client_id, secret
        )
    return identity.DefaultAzureCredential()


class UnreadableResponseBody(ServiceResponseError):
    """A 2xx answer that says it is JSON but does not parse: cut short or garbled on the way."""


class RetryUnreadableJson(SansIOHTTPPolicy[Any, Any]):
    """Turn a 2xx JSON answer whose body does not parse into `UnreadableResponseBody`.

    Placed inside the retry loop, so azure-core retries it like any read error (GET; a POST is
    left to its caller: `flows.collect.throttling` retries Cost Management queries). Without it
    the SDK would raise DecodeError after the pipeline, where nothing retries. A streamed answer
    is not inspected (nothing here streams).
    """

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        answer = response.http_response
        content_type = (answer.headers.get("Content-Type") or "").lower()
        if not 200 <= answer.status_code < 300 or "json" not in content_type:
            return
        if request.context.options.get("stream"):
            return
        # `body()` serves both the azure.core.rest responses and the legacy transport responses
        # older generated SDKs (azure-mgmt-security) still use.
        body = answer.body()
        if not body:
            return
        try:
            json.loads(body)
        except ValueError as error:
            path = request.http_request.url.split("?", 1)[0]
            raise UnreadableResponseBody(
                f"{request.http_request.method} {path}: the {answer.status_code} answer is not "
                f"complete JSON ({len(body)} bytes; {error})"
            ) from None


def _client_options(settings: Settings) -> dict[str, Any]:
    endpoint = settings.azure.arm_endpoint
    collect = settings.collect
    options: dict[str, Any] = {
        "base_url": endpoint,
        # The token audience of an ARM endpoint is the endpoint itself (public and sovereign
        # clouds alike); the emulator's static token ignores it.
        "credential_scopes": [f"{endpoint}/.default"],
        "connection_timeout": collect.connect_timeout_seconds,
        "read_timeout": collect.read_timeout_seconds,
        "retry_total": collect.max_retries,
        "retry_backoff_max": collect.max_retry_wait_seconds,
        "per_retry_policies": [RetryUnreadableJson()],
    }
    if settings.azure.ca_bundle is not None:
        options["connection_verify"] = str(settings.azure.ca_bundle)
    return options


class AzureClients:
    """Lazily built SDK clients sharing one credential and one endpoint."""

    def __init__(self, settings: Settings, credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self.credential = credential or build_credential(settings)
        self._options = _client_options(settings)

    def compute(self, subscription_id: str) -> ComputeManagementClient:
        return ComputeManagementClient(self.credential, subscription_id, **self._options)

    def hybrid(self, subscription_id: str) -> HybridComputeManagementClient:
        return HybridComputeManagementClient(self.credential, subscription_id, **self._options)

    def monitor(self, subscription_id: str) -> MonitorManagementClient:
        return MonitorManagementClient(self.credential, subscription_id, **self._options)

    def cost(self) -> CostManagementClient:
        return CostManagementClient(self.credential, **self._options)

    def resources(self, subscription_id: str) -> ResourceManagementClient:
        """Resource groups (their tags, inherited by the machines in them for showback)."""
        return ResourceManagementClient(self.credential, subscription_id, **self._options)

    def subscriptions(self) -> SubscriptionClient:
        return SubscriptionClient(self.credential, **self._options)

    def security(self, subscription_id: str) -> SecurityCenter:
        return SecurityCenter(self.credential, subscription_id, **self._options)

    def logs(self) -> LogsQueryClient:
        """The Logs query API client (`[history] log_analytics_endpoint`), with the same
        credential, CA bundle and patience as the ARM clients; its token audience is the
        endpoint (the SDK's default, right for public and sovereign clouds)."""
        options = {key: value for key, value in self._options.items() if key != "base_url"}
        options.pop("credential_scopes")
        return LogsQueryClient(
            self.credential, endpoint=self.settings.history.log_analytics_endpoint, **options
        )

    def archive(self, archive: ArchiveSettings) -> ContainerClient:
        """The archive (or export) container, read with the connection string named by
        `connection_string_env` when set (account key or SAS), else with the credential."""
        options = {
            key: value
            for key, value in self._options.items()
            if key not in ("base_url", "credential_scopes", "per_retry_policies")
        }
        if archive.connection_string_env:
            secret = os.environ.get(archive.connection_string_env)
            if not secret:
                raise ConfigError(
                    f"storage account {archive.account_url}: the environment variable "
                    f"{archive.connection_string_env} (connection_string_env) is not set"
                )
            return ContainerClient.from_connection_string(secret, archive.container, **options)
        return ContainerClient(
            archive.account_url, archive.container, credential=self.credential, **options
        )
