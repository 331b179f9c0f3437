"""One settings object for every triarb service, read from the environment and an optional TOML file.

Precedence, highest first: keyword arguments, environment (``TRIARB_*``; ``REDIS_URL`` also works
unprefixed), the TOML file named by ``TRIARB_CONFIG`` (or ``./triarb.toml`` when present), defaults.
No other module reads ``os.environ``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas.streams import StreamNames, Subject

DEFAULT_CONFIG_FILE = Path("triarb.toml")


class Role(StrEnum):
    """Redis ACL users defined in ``redis.conf``; each service connects as the least-privileged one."""

    ADMIN = "admin"
    PRODUCER = "producer"
    DETECTOR = "detector"
    PERSISTENCE = "persistence"
    DASHBOARD = "dashboard"
    CONTROL = "control"
    PAPER = "paper"


class StreamLimits(BaseModel):
    """Approximate ``MAXLEN ~`` per stream: Redis trims whole macro-nodes, so lengths overshoot a little."""

    snapshot: int = Field(200_000, gt=0)
    trade: int = Field(100_000, gt=0)
    health: int = Field(10_000, gt=0)
    control: int = Field(1_000, gt=0)
    opportunity: int = Field(100_000, gt=0)
    fill: int = Field(100_000, gt=0)
    episode: int = Field(100_000, gt=0)
    deadletter: int = Field(10_000, gt=0)

    def for_subject(self, subject: Subject) -> int:
        return {
            Subject.SNAPSHOT: self.snapshot,
            Subject.TRADE: self.trade,
            Subject.HEALTH: self.health,
            Subject.CONTROL: self.control,
            Subject.OPPORTUNITY: self.opportunity,
            Subject.FILL: self.fill,
            Subject.EPISODE: self.episode,
        }[subject]


class BusSettings(BaseModel):
    """Publisher batching and consumer-group behaviour."""

    publish_batch_size: int = Field(512, gt=0, description="flush when this many entries are buffered")
    publish_linger_ms: float = Field(
        1.0, ge=0, description="with a batch in flight, gather entries this long at most (idle: send at once)"
    )
    publish_high_water: int = Field(8192, gt=0, description="publish() waits for a flush above this many")
    hot_cache_ttl_ms: int = Field(300_000, gt=0, description="expiry of md:book:* keys after the last write")
    read_count: int = Field(256, gt=0, description="XREADGROUP COUNT")
    read_block_ms: int = Field(500, gt=0, description="XREADGROUP BLOCK; also bounds shutdown latency")
    claim_idle_ms: int = Field(
        30_000, ge=0, description="pending entries idle this long are reclaimed (0 only in single-worker tests)"
    )
    claim_interval_ms: int = Field(5_000, gt=0)
    max_deliveries: int = Field(5, gt=0, description="deliveries before an entry is dead-lettered")


class VenueSettings(BaseModel):
    """One venue's feed: where to connect and which books to hold until the control stream says otherwise."""

    url: str
    symbols: list[str] = Field(default_factory=list, description="canonical BASE-QUOTE symbols")
    markets: list[str] = Field(default_factory=list, description=(
        "further symbols control may add, besides those of the discovery cache (var/discovery/VENUE.json)"))
    book_depth: int = Field(10, description="Kraken subscription depth (10, 25, 100, 500, 1000)")
    rest_url: str | None = Field(None, description="REST base for the top-of-book fallback (None = the venue's)")
    rest_poll_hz: float | None = Field(None, gt=0, description="fallback requests/s (None = within the venue's limit)")
    rest_fallback: bool = Field(True, description=(
        "poll REST top of book while the socket is stale; off for a venue that has no REST face (the demo replay)"))


class ProducerSettings(BaseModel):
    coinbase: VenueSettings = Field(default_factory=lambda: VenueSettings(
        url="wss://advanced-trade-ws.coinbase.com", symbols=["BTC-USD", "ETH-USD", "ETH-BTC"]))
    kraken: VenueSettings = Field(default_factory=lambda: VenueSettings(
        url="wss://ws.kraken.com/v2", symbols=["BTC-USD", "ETH-USD", "ETH-BTC"]))
    snapshot_levels: int = Field(5, gt=0, le=50, description="levels per side in each published snapshot")
    stale_after_s: float = Field(5.0, gt=0, description="no message this long: the socket is stale, reconnect")
    health_interval_s: float = Field(1.0, gt=0, description="md.health period (and on every state change)")


class DetectorSettings(BaseModel):
    """Triangle detection and the paper broker (fees per venue at the lowest taker tier by default)."""

    anchors: list[str] = Field(default_factory=lambda: ["USD", "USDT", "USDC", "EUR", "BTC"])
    min_roi: float = Field(0.0, description="net ROI a triangle must clear (0.001 = 10 bps)")
    max_age_ms: int = Field(1_000, gt=0, description="skip when a leg was received longer ago than this")
    max_skew_ms: int = Field(500, ge=0, description="skip when legs are further apart in venue time")
    taker_fees: dict[str, float] = Field(default_factory=lambda: {"coinbase": 0.012, "kraken": 0.004})
    start_notional: dict[str, float] = Field(default_factory=lambda: {
        "USD": 1_000.0, "USDT": 1_000.0, "USDC": 1_000.0, "EUR": 1_000.0, "BTC": 0.02})
    leg_latency_ms: int = Field(50, ge=0, description="paper broker: delay before each leg executes")
    episode_update_ms: int = Field(1_000, ge=0, description="episodes: at most one update event this often")
    episode_min_change: float = Field(
        0.1, ge=0, description="episodes: an update needs ROI or best profit to move by this fraction (ROI by 1 bp at "
                               "least)")
    workers: int = Field(1, ge=1, le=64, description="detector workers per process (consumer group members)")
    read_count: int = Field(
        1024, gt=0, description="XREADGROUP COUNT of a detector worker (bus.read_count is the others'): one that "
                                "fell behind catches up in fewer round trips, a batch being conflated per market")


def merged(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``defaults``, table by table (lists and values replace, tables merge)."""
    out = dict(defaults)
    for key, value in given.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    HUMAN = "human"


class Settings(BaseSettings):
    """Everything configurable in triarb. ``triarb config`` prints the effective values, secrets masked."""

    model_config = SettingsConfigDict(
        env_prefix="TRIARB_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "TRIARB_REDIS_URL", "redis_url"),
        description="external Redis; unset = start a private redis-server (embedded)",
    )
    key_prefix: str = Field("", description="prefix of every stream and key name")
    redis_passwords: dict[Role, SecretStr] = Field(
        default_factory=dict,
        description="password per ACL user (TRIARB_REDIS_PASSWORDS__PRODUCER=...); embedded generates missing",
    )
    var_dir: Path = Field(Path("var"), description="embedded Redis data, runtime file and captures")
    redis_conf: Path | None = Field(None, description="redis.conf for the embedded server (default: the repo's)")
    redis_server_bin: str = Field("redis-server", description="redis-server executable for the embedded server")
    embedded_port: int = Field(6390, ge=0, le=65535, description="embedded server port; 0 or busy = a free one")
    service_host: str = Field("127.0.0.1", description="bind address of /healthz and /metrics")
    service_port: int = Field(9464, ge=0, le=65535, description="port of /healthz and /metrics (0 = any free)")
    streams: StreamLimits = Field(default_factory=StreamLimits)
    bus: BusSettings = Field(default_factory=BusSettings)
    producers: ProducerSettings = Field(default_factory=ProducerSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    dashboard_host: str = Field("127.0.0.1", description="dashboard bind address")
    dashboard_port: int = Field(8000, ge=0, le=65535, description="dashboard port (0 = any free)")
    dashboard_token: SecretStr | None = Field(None, description="bearer token for POST /api/symbols (unset = disabled)")
    ws_capture: bool = Field(
        False, validation_alias=AliasChoices("WS_CAPTURE", "TRIARB_WS_CAPTURE", "ws_capture"),
        description="write every raw frame sent and received to var/captures/*.ndjson",
    )
    log_level: str = Field("INFO")
    log_format: LogFormat = Field(LogFormat.AUTO, description="auto = human on a terminal, JSON otherwise")

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is not a Redis URL (redis://[USER@]HOST:PORT/DB, rediss://..., unix://PATH)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _nested_defaults_kept(cls, data: Any) -> Any:
        """``TRIARB_PRODUCERS__COINBASE__SYMBOLS`` alone (or a TOML table naming one field) changes that field and
        keeps every other default of its section, instead of replacing the whole section with what was given."""
        if not isinstance(data, dict):
            return data
        for name in ("streams", "bus", "producers", "detector"):
            given = data.get(name)
            if isinstance(given, dict):
                factory = cls.model_fields[name].default_factory
                assert factory is not None
                data[name] = merged(factory().model_dump(), given)  # type: ignore[call-arg]
        return data

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"log_level {value!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("TRIARB_CONFIG", DEFAULT_CONFIG_FILE))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file.is_file() or "TRIARB_CONFIG" in os.environ:
            if not toml_file.is_file():
                raise FileNotFoundError(f"TRIARB_CONFIG names {toml_file}, which does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def names(self) -> StreamNames:
        return StreamNames(self.key_prefix)

    def password(self, role: Role) -> str | None:
        secret = self.redis_passwords.get(role)
        return secret.get_secret_value() if secret is not None else None

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data with every secret replaced by ``'***'``."""
        data = self.model_dump(mode="json")
        data["redis_passwords"] = {role: "***" for role in data.get("redis_passwords", {})}
        if data.get("dashboard_token"):
            data["dashboard_token"] = "***"
        if self.redis_url and "@" in self.redis_url:
            scheme, rest = self.redis_url.split("://", 1)
            data["redis_url"] = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return data
