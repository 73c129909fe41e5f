"""Settings: one place for every tunable, from PRIMAGE_* variables and an optional TOML file.

Precedence (highest first): explicit arguments, environment variables, the TOML file named by
``PRIMAGE_CONFIG`` (default ``<user config dir>/primage/config.toml``), built-in defaults.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from primage.local import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Local,
    config_file,
    default_data_dir,
    url_of,
)
from primage.models.tokens import MAX_TOKEN_DAYS

ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
CHECKIN_SCOPES = "openid profile email eduperson_entitlement voperson_id offline_access"


class ProviderSettings(BaseModel):
    """One trusted OpenID Connect provider, e.g. EGI Check-in.

    Groups are written as in ``eduperson_entitlement`` without the URN around them:
    ``vo.primage.eu`` (any role), ``vo.primage.eu:neuroblastoma`` (a subgroup) or
    ``vo.primage.eu:role=manager`` (one role only).
    """

    name: str = Field("egi", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Short name.")
    issuer: str = Field(description="Issuer URL, e.g. https://aai.egi.eu/auth/realms/egi.")
    client_id: str = Field(description="The platform's client at the provider (web login).")
    client_secret: SecretStr | None = Field(
        None, description="Its secret: web login and introspection of opaque tokens."
    )
    cli_client_id: str | None = Field(
        None, description="A public client for 'primage login' (device flow); default client_id."
    )
    audience: str | None = Field(
        None, description="Required 'aud' of JWT access tokens; unchecked when unset."
    )
    required_groups: list[str] = Field(
        default_factory=list,
        description="A user must hold one of these entitlements. Empty: every user of the "
        "provider may log in (rarely what a federated provider should allow).",
    )
    admin_groups: list[str] = Field(
        default_factory=list, description="Holders of one of these are platform admins."
    )
    scopes: str = Field(CHECKIN_SCOPES, description="Scopes asked for at login.")
    algorithms: list[str] = Field(
        default_factory=lambda: list(ASYMMETRIC_ALGORITHMS),
        description="Signature algorithms accepted on JWTs (asymmetric only).",
    )
    leeway_seconds: int = Field(30, ge=0, le=300, description="Clock skew allowed on exp/nbf.")
    timeout_seconds: float = Field(5.0, gt=0, description="Timeout of calls to the provider.")

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"algorithms {refused} are not accepted (symmetric or 'none' would let anyone "
                f"who knows the public key sign tokens); choose from {ASYMMETRIC_ALGORITHMS}"
            )
        return value

    @property
    def public_client_id(self) -> str:
        return self.cli_client_id or self.client_id


class Settings(BaseSettings):
    """The platform's configuration. Every field can be set as ``PRIMAGE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="PRIMAGE_", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder holding the database, the spaces and the admin credentials.",
    )
    host: str = Field(DEFAULT_HOST, description="Address the server listens on.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Port the server listens on.")
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL; default SQLite in the data dir; postgresql://… works.",
    )
    storage_root: Path | None = Field(
        None, description="Folder holding one sub-folder per space; default <data_dir>/spaces."
    )
    token_ttl_days: int = Field(
        30, ge=1, le=MAX_TOKEN_DAYS, description="Default lifetime of new API tokens."
    )
    max_token_ttl_days: int = Field(
        365, ge=1, le=MAX_TOKEN_DAYS, description="Longest lifetime a token may ask for."
    )
    fsync_uploads: bool = Field(
        True, description="fsync each uploaded file before it becomes visible (crash-safe)."
    )
    concurrency: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Cores' worth of tasks the local executor runs at once (default: all).",
    )
    jobs_dir: Path | None = Field(
        None,
        description="Working folders and logs of local tasks; default <data_dir>/jobs. A fast "
        "local disk helps short tasks (each creates a folder and its log files).",
    )
    max_tasks_per_job: int = Field(100_000, ge=1, description="Largest number of tasks in a job.")
    containers: bool | None = Field(
        None,
        description="Run jobs that name an image in containers: true, false, or unset to "
        "enable them when container_command is installed.",
    )
    container_command: list[str] = Field(
        default_factory=lambda: ["podman"],
        description="The container runtime and its global options, e.g. "
        '["podman", "--cgroup-manager=cgroupfs", "--runtime", "runc"].',
    )
    container_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment for the runtime, e.g. {CONTAINERS_CONF = '/etc/primage/"
        "containers.conf'} (on cgroup v1 hosts: default_ulimits = [] and runc).",
    )
    container_run_options: list[str] = Field(
        default_factory=list, description="Extra options for every 'run', e.g. ['--userns=auto']."
    )
    build_options: list[str] = Field(
        default_factory=list,
        description="Extra options for every image build's 'podman build', e.g. "
        '["--network", "host"] or ["--build-arg", "PIP_INDEX_URL=https://pypi.example.org"].',
    )
    sandbox: Literal["on", "off"] = Field(
        "on",
        description="Confine every local task and process app (bubblewrap): an unprivileged "
        "uid, a read-only system, only the spaces it names. 'off' runs them as the server's "
        "user with the server's view of the machine: only for a single-user machine. When no "
        "sandbox can be made, jobs and apps of non-admins are refused.",
    )
    sandbox_uid: int = Field(
        64000,
        ge=1,
        lt=2**32 - 1,
        description="The uid sandboxed processes run as when the server runs as root (one "
        "for all: namespaces keep them apart); not a user's own uid.",
    )
    sandbox_gid: int = Field(
        64000,
        ge=1,
        lt=2**32 - 1,
        description="Their gid; spaces' folders belong to this group and are group-writable "
        "(setgid), so that tasks write where their job may and the server reads what they left.",
    )
    executors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Where jobs run: name → {kind = 'local' or another installed kind, and that "
        "kind's options} (GET /executors documents them). Unset: one executor, 'local'.",
    )
    default_executor: str | None = Field(
        None, description="Where a job that names no executor runs; default 'local', or the first."
    )
    sync_seconds: float = Field(
        30,
        gt=0,
        description="How often the server compares what each executor holds with the database "
        "and fixes what drifted (a task it lost runs again, one the database forgot is stopped).",
    )
    executor_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Who may run jobs on each executor: executor name → groups (local or a "
        "provider's, e.g. vo.primage.eu:gpu). An executor not listed is open to every user.",
    )
    oidc_providers: list[ProviderSettings] = Field(
        default_factory=list,
        description="Trusted OpenID Connect providers (TOML [[oidc_providers]] tables, or "
        "PRIMAGE_OIDC_PROVIDERS as a JSON list).",
    )
    public_url: str | None = Field(
        None,
        description="The URL browsers reach the server at, for the web login's redirect "
        "(default http://HOST:PORT).",
    )
    session_hours: float = Field(8, gt=0, description="Lifetime of a web login session.")
    membership_check_seconds: int = Field(
        300,
        ge=10,
        description="How often a web session re-checks group membership at the provider.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key encrypting refresh tokens at rest; default: generated once into "
        "<data_dir>/secret.key. Servers sharing a database must share it.",
    )
    registry_url: str | None = Field(
        None,
        description="The private registry the platform is the token server of, e.g. "
        "http://127.0.0.1:5001 (primage server registry-config prints its configuration).",
    )
    registry_service: str = Field(
        "primage-registry", description="The registry's service name (the tokens' audience)."
    )
    log_level: str = Field("info", description="Server log level.")
    access_log: bool = Field(False, description="Log every HTTP request (costs ~10% throughput).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)

    @property
    def storage_path(self) -> Path:
        return self.storage_root or self.data_dir / "spaces"

    @property
    def db_url(self) -> str:
        if self.database_url is not None:
            return normalise_db_url(self.database_url.get_secret_value())
        return f"sqlite:///{self.data_dir / 'primage.db'}"

    @property
    def admin_credentials_file(self) -> Path:
        return self.local.admin_credentials_file

    @property
    def jobs_path(self) -> Path:
        return self.jobs_dir or self.data_dir / "jobs"

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def local(self) -> Local:
        """Where this configuration's server keeps its runtime record and credentials."""
        return Local(self.data_dir, self.host, self.port)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return url_of(self.host, self.port)

    def masked(self) -> dict[str, Any]:
        """The effective configuration with every secret hidden, for ``primage config show``."""
        values = self.model_dump(mode="json")  # SecretStr fields dump as '**********'
        values["database_url"] = mask_url(self.db_url)
        values["storage_root"] = str(self.storage_path)
        values["jobs_dir"] = str(self.jobs_path)
        values["config_file"] = str(config_file())
        return values


def normalise_db_url(url: str) -> str:
    """Accept the ``postgresql://`` form people paste and use the psycopg 3 driver for it."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
