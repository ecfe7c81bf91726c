"""mdecost configuration: `mdecost.toml`, `--config FILE` and `MDECOST_*` environment variables.

Precedence, highest first: environment variables (`MDECOST_AZURE__ARM_ENDPOINT`, nested keys
joined by a double underscore), the TOML file, the defaults below. Every table forbids unknown
keys, so a typo is an error that names it rather than a setting silently ignored.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from flows.lake import OBJECT_STORE_SCHEMES, Lake, ObjectStoreLake
from transforms.billing import (
    ARCHIVE_CONTAINER,
    MONTHLY_TERM_UPLIFT_PERCENT_DEFAULT,
    PARTIAL_HOURS_DEFAULT,
    SEAT_REASSIGNMENT_DAYS_DEFAULT,
)

DEFAULT_CONFIG_FILE = Path("mdecost.toml")
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
DEFAULT_RETAIL_PRICES_ENDPOINT = "https://prices.azure.com/api/retail/prices"
DEFAULT_LOG_ANALYTICS_ENDPOINT = "https://api.loganalytics.io"
STATIC_TOKEN_ENV = "MDECOST_STATIC_TOKEN"
# A real GUID (8-4-4-4-12 hex digits, not any 36 of hex digits and dashes) and a subscription
# scope, each matched as a whole string (fullmatch: `$` alone lets a trailing newline through).
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_SCOPE = re.compile(r"/subscriptions/" + _GUID.pattern)
# Scopes a Cost Management query may be asked at, above or at one subscription
# (`[azure] cost_scopes`; transforms.billing "Cost Management Query API quota").
_NAME = r"[A-Za-z0-9][A-Za-z0-9:._()-]*"
_COST_SCOPE = re.compile(
    rf"/subscriptions/{_GUID.pattern}"
    rf"|/providers/Microsoft\.Billing/billingAccounts/{_NAME}(?:/billingProfiles/{_NAME})?"
    rf"|/providers/Microsoft\.Management/managementGroups/{_NAME}",
    re.IGNORECASE,
)

CostType = Literal["ActualCost", "AmortizedCost"]
CredentialKind = Literal["default", "cli", "managed_identity", "service_principal", "static_token"]


def _https_url(value: str) -> str:
    """An endpoint setting: an https:// URL with a host (azure-core sends bearer tokens over
    HTTPS only), without a trailing slash."""
    parsed = urlparse(value)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ValueError(f"must be an https:// URL, got {value!r}")
    return value.rstrip("/")


class ConfigError(ValueError):
    """The configuration is wrong; the message is one line naming the file, key and problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AzureSettings(_Section):
    """Where and as whom mdecost talks to Azure Resource Manager."""

    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    ca_bundle: Path | None = None
    credential: CredentialKind = "default"
    scopes: list[str] = Field(default_factory=list)
    static_token: SecretStr | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    cost_client_type: str = "mdecost"
    # Where cost queries are asked (empty: each subscription of `scopes`): a billing account (EA
    # enrollment), an MCA billing profile or a management group answers for every subscription
    # under it at the cost of one query. `mdecost scopes` says which ones the credential reads.
    cost_scopes: list[str] = Field(default_factory=list)

    @field_validator("cost_scopes")
    @classmethod
    def _cost_scopes(cls, scopes: list[str]) -> list[str]:
        for scope in scopes:
            if not _COST_SCOPE.fullmatch(scope.rstrip("/")):
                raise ValueError(
                    f"{scope!r} is not a cost scope: /providers/Microsoft.Billing/billingAccounts/"
                    "<id>[/billingProfiles/<id>], /providers/Microsoft.Management/"
                    "managementGroups/<id> or /subscriptions/<guid>"
                )
        return [scope.rstrip("/") for scope in scopes]

    @field_validator("arm_endpoint")
    @classmethod
    def _https_endpoint(cls, value: str) -> str:
        return _https_url(value)

    @field_validator("scopes")
    @classmethod
    def _subscription_scopes(cls, scopes: list[str]) -> list[str]:
        for scope in scopes:
            if not _SCOPE.fullmatch(scope):
                raise ValueError(f"{scope!r} is not a scope of the form /subscriptions/<guid>")
        return [scope.lower() for scope in scopes]

    def endpoint_is_loopback(self) -> bool:
        """True when `arm_endpoint` names this machine (localhost or a loopback address)."""
        return _is_loopback_url(self.arm_endpoint)


class LakeSettings(_Section):
    """Where the lake is: a folder, or (for `build` only) an Azure storage container,
    `abfs://<container>/<folder>` or `az://...` (`flows.lake.ObjectStoreLake` says where its
    credential comes from; none is ever written in a config file)."""

    path: Path | str = Path("data/lake")
    account_name: str | None = None
    connection_string_env: str | None = None

    @field_validator("path", mode="before")
    @classmethod
    def _folder_or_container(cls, value: Any) -> Any:
        if not isinstance(value, str) or "://" not in value:
            return Path(value) if isinstance(value, str) else value
        parsed = urlparse(value)
        if parsed.query or parsed.fragment or "@" in parsed.netloc:
            # Never echoed: a SAS token or an account key could be in it.
            raise ValueError(
                "must name the container and folder only (abfs://<container>/<folder>); a SAS "
                "token or key goes in the environment ([lake] connection_string_env)"
            )
        if parsed.scheme not in OBJECT_STORE_SCHEMES or not parsed.netloc:
            raise ValueError(
                f"must be a folder or an Azure storage URL (abfs://<container>/<folder> or "
                f"az://...), got {value!r}"
            )
        return value.rstrip("/")

    def location(self) -> Lake:
        """The lake as `flows.lake` reads it: a folder, or an `ObjectStoreLake`."""
        if isinstance(self.path, Path):
            return self.path
        return ObjectStoreLake(self.path, self.account_name, self.connection_string_env)

    @property
    def folder(self) -> Path:
        """The lake's folder, for the commands that write it. An object-storage lake is refused
        in one line: writing relies on the file system's atomic rename and lock file."""
        if isinstance(self.path, Path):
            return self.path
        raise ConfigError(
            f"[lake] path is the object-storage URL {self.path}, which only `mdecost build` "
            "reads; collect, import-costs and prices refresh write a lake folder: point them at "
            "a local lake, then upload it (azcopy sync, or az storage blob sync)"
        )


class WarehouseSettings(_Section):
    path: Path = Path("data/warehouse.duckdb")
    # The build reads and computes this much raw Parquet at a time (whole subscriptions): peak
    # memory follows it, not the estate's size (~1.7 GB at 32 MB, benchmarks/results.md).
    chunk_megabytes: float = Field(default=32.0, gt=0)
    # Where chunks are computed: in the building process one after the other ("local"), or in
    # parallel on a Dask cluster ("dask", `flows.cluster`): the scheduler at `dask_address`, else
    # a local cluster of `dask_workers` processes (default: one per core) started for the build.
    executor: Literal["local", "dask"] = "local"
    dask_address: str | None = None
    dask_workers: int | None = Field(default=None, ge=1)
    # Where Dask workers write their chunks' Parquet parts for the building process to append: a
    # folder every worker and the building process reach (default: beside the warehouse).
    parts_path: Path | None = None

    @field_validator("dask_address")
    @classmethod
    def _scheduler_address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(tcp|tls|ws|wss)://[^\s/]+:\d+", value):
            raise ValueError(
                f"must be a Dask scheduler address such as tcp://scheduler:8786, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _one_cluster(self) -> WarehouseSettings:
        if self.dask_address is not None and self.dask_workers is not None:
            raise ValueError(
                "dask_address (an existing cluster) and dask_workers (a local cluster started "
                "for the build) exclude each other: set one"
            )
        return self


class EmailSettings(_Section):
    """Where the monthly finance report is mailed (SMTP). The password is read from the
    environment variable named by `password_env`, never from a file."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    sender: str
    recipients: list[str] = Field(min_length=1)
    username: str | None = None
    password_env: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)
    ca_bundle: Path | None = None  # a private CA the server's certificate chains to

    @field_validator("sender", "recipients")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> str | list[str]:
        for address in [value] if isinstance(value, str) else value:
            if not re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+", address):
                raise ValueError(f"{address!r} is not an e-mail address (name@domain)")
        return value


class ReportSettings(_Section):
    path: Path = Path("data/reports")
    # Showback groupings: subscription, management_group, resource_group, tag:<name>
    # (transforms.showback).
    group_by: list[str] = Field(default_factory=lambda: ["subscription"])
    # A month's billed cost is a cost_anomaly when it moves more than this against the median
    # of the three months before it without a matching change in billable hours.
    anomaly_threshold_percent: float = Field(default=25.0, gt=0, lt=10000)
    anomaly_min_amount: float = Field(default=1.0, ge=0)
    email: EmailSettings | None = None

    @field_validator("group_by")
    @classmethod
    def _groupings(cls, keys: list[str]) -> list[str]:
        from transforms.showback import check_group_key

        return list(dict.fromkeys(check_group_key(key) for key in keys))


class CollectSettings(_Section):
    """How collection treats restated cost data and the Cost Management API's quotas."""

    restatement_days: int = Field(default=35, ge=0, le=400)
    cost_types: list[CostType] = ["ActualCost"]  # pydantic copies a mutable default per instance
    max_retry_wait_seconds: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=8, ge=0)
    cost_query_concurrency: int = Field(default=2, ge=1)
    # How long an Azure call may wait for the connection, and then between two reads of the
    # answer, before it is given up and retried (azure-core's own defaults are 300 s each, so a
    # stalled answer would hold a task for five minutes per try). A large Cost Management query
    # can take a minute to start answering.
    connect_timeout_seconds: float = Field(default=20.0, gt=0)
    read_timeout_seconds: float = Field(default=120.0, gt=0)
    # Which cost rows the Query API is asked for: Defender for Servers meters only, or "all"
    # (every row of the scope in `costs`, for analysts who want them; far more rows).
    cost_rows: Literal["defender", "all"] = "defender"
    # Azure's QPU windows (10 s, 1 min, 1 h) multiplied by this: 1 against Azure; the
    # simulator's config sets it below 1 when it runs the windows faster (its benchmark).
    qpu_window_scale: float = Field(default=1.0, gt=0, le=1)


def _is_loopback_url(url: str) -> bool:
    """True when `url` names this machine (localhost or a loopback address)."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ArchiveSettings(_Section):
    """A storage account a diagnostic setting archives the Activity Log to.

    Read with `[azure] credential` (Storage Blob Data Reader on the account), or with the
    connection string (account key or SAS) held by the environment variable named in
    `connection_string_env`: the secret itself is never written in a config file.
    """

    account_url: str
    container: str = ARCHIVE_CONTAINER
    connection_string_env: str | None = None

    @field_validator("account_url")
    @classmethod
    def _blob_endpoint(cls, value: str) -> str:
        parsed = urlparse(value)
        # Plain http only for an emulator on this machine (Azurite): tokens need https.
        if not parsed.hostname or not (
            parsed.scheme == "https" or (parsed.scheme == "http" and _is_loopback_url(value))
        ):
            raise ValueError(
                f"must be an https:// blob endpoint (http:// only on loopback), got {value!r}"
            )
        return value.rstrip("/")


class ExportSource(ArchiveSettings):
    """A folder of a storage account that a Cost Management export writes its runs to.

    `directory` is the export's root folder (runs sit below it, each with a `manifest.json`).
    Read like an archive: with `[azure] credential` (Storage Blob Data Reader), or the
    connection string held by the environment variable `connection_string_env`.
    """

    container: str
    directory: str = ""

    @field_validator("directory")
    @classmethod
    def _folder(cls, value: str) -> str:
        return value.strip("/")


class ExportsSettings(_Section):
    """Cost Management exports read where Azure writes them (`mdecost collect`)."""

    sources: list[ExportSource] = Field(default_factory=list)


class HistorySettings(_Section):
    """Where the Activity Log is kept beyond its 90 days, for a first run that reaches back.

    `workspaces`: Log Analytics workspace ids (GUIDs) whose `AzureActivity` table a diagnostic
    setting feeds; `log_analytics_endpoint`: the Logs query API (sovereign clouds and the
    simulator set it); `storage`: archive storage accounts.
    """

    workspaces: list[str] = Field(default_factory=list)
    log_analytics_endpoint: str = DEFAULT_LOG_ANALYTICS_ENDPOINT
    storage: list[ArchiveSettings] = Field(default_factory=list)

    @field_validator("workspaces")
    @classmethod
    def _workspace_ids(cls, workspaces: list[str]) -> list[str]:
        for workspace in workspaces:
            if not _GUID.fullmatch(workspace):
                raise ValueError(
                    f"{workspace!r} is not a workspace id (the GUID on the workspace's "
                    "Overview page, not its name)"
                )
        return [workspace.lower() for workspace in workspaces]

    @field_validator("log_analytics_endpoint")
    @classmethod
    def _https_endpoint(cls, value: str) -> str:
        return _https_url(value)

    @property
    def configured(self) -> bool:
        return bool(self.workspaces or self.storage)


class PricingSettings(_Section):
    """Which seat option to compare against and the customer's own prices and seats."""

    currency: str = "USD"
    seat_option: str = "mde_for_servers"
    retail_prices_endpoint: str = DEFAULT_RETAIL_PRICES_ENDPOINT
    partial_hours: Literal["fractional", "round_up_clock_hour"] = PARTIAL_HOURS_DEFAULT
    seat_prices: dict[str, float] = Field(default_factory=dict)
    discounts: dict[str, float] = Field(default_factory=dict)
    seats_owned: dict[str, int] = Field(default_factory=dict)
    book: Path | None = None
    # The licensing answer's assumptions (transforms.billing "Seat licensing terms"); the report
    # states each with its value.
    seat_term: Literal["annual", "monthly"] = "annual"
    monthly_term_uplift_percent: float = Field(
        default=MONTHLY_TERM_UPLIFT_PERCENT_DEFAULT, ge=0, lt=1000
    )
    seat_reassignment_days: int = Field(default=SEAT_REASSIGNMENT_DAYS_DEFAULT, ge=1, le=366)
    # Price of the MDE part of each plan per server-hour (P1 / P2); default: the P1 rate.
    mde_component: dict[Literal["P1", "P2"], float] = Field(default_factory=dict)
    # Whether the customer may buy each seat option (false: shown, marked not eligible).
    seat_eligibility: dict[str, bool] = Field(default_factory=dict)
    # Day Microsoft approved the MDE benefit on Defender for Servers (support ticket), if any.
    mde_benefit_from: date | None = None

    @field_validator("mde_component")
    @classmethod
    def _rates(cls, rates: dict[str, float]) -> dict[str, float]:
        for plan, rate in rates.items():
            if not (math.isfinite(rate) and rate >= 0):
                raise ValueError(f"mde_component for {plan} must be a rate >= 0, got {rate}")
        return rates

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError(f"must be a three-letter ISO 4217 code, got {value!r}")
        return value.upper()

    @field_validator("discounts")
    @classmethod
    def _percentages(cls, discounts: dict[str, float]) -> dict[str, float]:
        for option, percent in discounts.items():
            if not 0 <= percent < 100:
                raise ValueError(f"discount for {option!r} must be a percentage in [0, 100)")
        return discounts


class Settings(BaseSettings):
    """All of mdecost's settings, one table per section of `mdecost.toml`."""

    model_config = SettingsConfigDict(
        env_prefix="MDECOST_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    azure: AzureSettings = Field(default_factory=AzureSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    collect: CollectSettings = Field(default_factory=CollectSettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    exports: ExportsSettings = Field(default_factory=ExportsSettings)
    # Several Entra tenants (or Lighthouse delegations) collected into one lake: each entry is
    # an `[azure]` table of its own (tenant_id required); what it leaves out is `[azure]`'s.
    tenants: list[AzureSettings] = Field(default_factory=list)

    def for_tenant(self, tenant: str | None) -> Settings:
        """These settings with `[azure]` replaced by the `[[tenants]]` entry of `tenant`."""
        if tenant is None:
            return self
        for entry in self.tenants:
            if (entry.tenant_id or "").lower() == tenant.lower():
                return self.model_copy(update={"azure": entry})
        raise ConfigError(f"no [[tenants]] entry has tenant_id {tenant!r}")

    def tenant_keys(self) -> list[str | None]:
        """The tenants a collection runs for: each `[[tenants]]` entry's, else `[azure]`'s."""
        return [entry.tenant_id for entry in self.tenants] or [None]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives through init kwargs; environment variables override it.
        return (env_settings, init_settings)

    def static_token(self) -> str:
        """The emulator bearer token: `MDECOST_STATIC_TOKEN`, else `[azure] static_token`."""
        token = os.environ.get(STATIC_TOKEN_ENV)
        if token:
            return token
        if self.azure.static_token is not None:
            return self.azure.static_token.get_secret_value()
        raise ConfigError(
            f"credential = 'static_token' needs a token: set {STATIC_TOKEN_ENV} "
            "or [azure] static_token"
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(
            f"config file {path} is a directory; give the mdecost.toml in it"
        ) from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {error.start}); TOML files are UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None


def _one_line(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        problem = "is not a known setting"
    else:
        problem = first["msg"].removeprefix("Value error, ")
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{origin}: {key} {problem}{suffix}"


def _resolve_relative_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths in a config file are relative to the file, so a config works from any directory."""
    for entry in raw.get("tenants") or []:
        value = entry.get("ca_bundle") if isinstance(entry, dict) else None
        if isinstance(value, str) and not Path(value).is_absolute():
            entry["ca_bundle"] = str(base / value)
    for section, key in (
        ("lake", "path"),
        ("warehouse", "path"),
        ("warehouse", "parts_path"),
        ("report", "path"),
        ("azure", "ca_bundle"),
        ("pricing", "book"),
    ):
        value = raw.get(section, {}).get(key) if isinstance(raw.get(section), dict) else None
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            raw[section][key] = str(base / value)
    return raw


def _tenants_inherit_azure(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    """Each `[[tenants]]` entry over `[azure]`: an entry names what differs (tenant, credential,
    scopes), the rest (endpoint, CA bundle, client type) is `[azure]`'s."""
    tenants = raw.get("tenants")
    if not isinstance(tenants, list):
        return raw
    azure = raw.get("azure")
    if not isinstance(azure, dict):
        azure = {}
    merged = []
    for index, entry in enumerate(tenants):
        if not isinstance(entry, dict) or not entry.get("tenant_id"):
            raise ConfigError(f"{origin}: tenants[{index}] needs a tenant_id")
        base = {key: value for key, value in azure.items() if key not in ("scopes", "cost_scopes")}
        merged.append({**base, **entry})
    ids = [str(entry["tenant_id"]).lower() for entry in merged]
    if len(set(ids)) < len(ids):
        raise ConfigError(f"{origin}: two [[tenants]] entries have the same tenant_id")
    return {**raw, "tenants": merged}


ENV_PREFIX = "MDECOST_"


def _check_environment_names() -> None:
    """Refuse `MDECOST_*` variables that look like settings but name none.

    pydantic-settings silently ignores a variable whose section is unknown, and reads a single
    underscore (`MDECOST_LAKE_PATH`) as no setting at all, so a typo would leave the default in
    force without a word. Variables that do not start with a section name (`MDECOST_CONFIG`,
    `MDECOST_STATIC_TOKEN`, a tool's own) are not settings and are left alone.
    """
    sections = sorted(name.upper() for name in Settings.model_fields)
    for variable in sorted(os.environ):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        rest = variable[len(ENV_PREFIX) :].upper()
        section, nested, _ = rest.partition("__")
        if nested and section not in sections:
            raise ConfigError(
                f"environment: {variable} names no setting: {section.lower()} is not a section "
                f"(sections: {', '.join(name.lower() for name in sections)})"
            )
        single = next((known for known in sections if rest.startswith(f"{known}_")), None)
        if not nested and single is not None:
            raise ConfigError(
                f"environment: {variable} is not a setting; a key inside a section takes a "
                f"double underscore: {ENV_PREFIX}{single}__{rest[len(single) + 1 :]}"
            )


def _unparsable_environment(error: SettingsError) -> ConfigError:
    """A variable pydantic-settings could not parse: named, its value never shown (secrets)."""
    field = re.search(r'field "(\w+)"', str(error))
    prefix = f"{ENV_PREFIX}{field.group(1).upper() if field else ''}"
    names = sorted(v for v in os.environ if v.upper().startswith(prefix))
    return ConfigError(
        f"environment: {' or '.join(names) or prefix + '*'} cannot be read: lists and tables "
        f"are written as JSON there, e.g. {ENV_PREFIX}AZURE__SCOPES="
        "'[\"/subscriptions/<guid>\"]'"
    )


def load_settings(config_file: Path | None = None) -> Settings:
    """Load settings from `config_file`, else `$MDECOST_CONFIG`, else `./mdecost.toml` if present.

    Raises ConfigError with a one-line message naming the file and key on any problem, and
    checks that `static_token` is only ever sent to a loopback endpoint.
    """
    if config_file is None and os.environ.get("MDECOST_CONFIG"):
        config_file = Path(os.environ["MDECOST_CONFIG"])
    if config_file is None and DEFAULT_CONFIG_FILE.exists():
        config_file = DEFAULT_CONFIG_FILE
    raw: dict[str, Any] = {}
    origin = "environment"
    if config_file is not None:
        raw = _resolve_relative_paths(_read_toml(config_file), config_file.resolve().parent)
        raw = _tenants_inherit_azure(raw, str(config_file))
        origin = str(config_file)
    _check_environment_names()
    try:
        settings = Settings(**raw)
    except ValidationError as error:
        raise ConfigError(_one_line(error, origin)) from None
    except SettingsError as error:
        raise _unparsable_environment(error) from None
    for tenant in settings.tenants:
        if tenant.credential == "static_token" and not tenant.endpoint_is_loopback():
            raise ConfigError(
                f"{origin}: tenants {tenant.tenant_id}: credential 'static_token' is for "
                f"emulators only and is refused for {tenant.arm_endpoint}"
            )
    if settings.azure.credential == "static_token" and not settings.azure.endpoint_is_loopback():
        raise ConfigError(
            f"{origin}: azure.credential 'static_token' is for emulators only and is refused "
            f"for {settings.azure.arm_endpoint}; use 'default', 'cli', 'managed_identity' "
            "or 'service_principal' for a real tenant"
        )
    if (
        settings.azure.credential == "static_token"
        and settings.history.workspaces
        and not _is_loopback_url(settings.history.log_analytics_endpoint)
    ):
        raise ConfigError(
            f"{origin}: azure.credential 'static_token' is for emulators only and is refused "
            f"for history.log_analytics_endpoint {settings.history.log_analytics_endpoint}"
        )
    return settings
