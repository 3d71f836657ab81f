"""ProxyConfig: a frozen value built from command-line options and an optional TOML file.

Limits carry their precedents; durations are seconds.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit

from edgeproxy.errors import ConfigError
from edgeproxy.gateway import GatewayConfig
from edgeproxy.gateway_config import parse_gateway

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024  # Varnish's default malloc storage is 100 MB..1 GB
KEEPALIVE_TIMEOUT_S = 75.0  # nginx keepalive_timeout default
HEADER_TIMEOUT_S = 10.0  # slowloris guard: a request head must arrive within this (nginx: 60 s)
CONNECT_TIMEOUT_S = 5.0  # nginx proxy_connect_timeout is 60 s; a reachable origin connects in ms
READ_TIMEOUT_S = 30.0  # origin answer; nginx proxy_read_timeout is 60 s
GRACE_S = 10.0  # graceful shutdown: in-flight requests get this long


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    origin_host: str = "127.0.0.1"
    origin_port: int = 8000
    cache_bytes: int = DEFAULT_CACHE_BYTES
    eviction: str = "s3fifo"
    workers: int = 1  # worker processes on one port (supervisor.py); a purge reaches all
    purge_token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive_timeout: float = KEEPALIVE_TIMEOUT_S
    header_timeout: float = HEADER_TIMEOUT_S
    connect_timeout: float = CONNECT_TIMEOUT_S
    read_timeout: float = READ_TIMEOUT_S
    grace: float = GRACE_S
    log_format: str = "json"  # json | text | off
    gateway: GatewayConfig | None = None  # the [gateway] table (gateway_config.py); None: no API gateway
    gzip: bool = True  # stored text-like answers also kept gzip-coded for clients that accept it (encoding.py)

    def __post_init__(self) -> None:
        if isinstance(self.gateway, Mapping):
            # A worker gets its settings as dataclasses.asdict output (supervisor.py); the
            # gateway's asdict form is again a valid [gateway] table.
            object.__setattr__(self, "gateway", parse_gateway(self.gateway, source="worker settings"))

    @property
    def origin(self) -> str:
        return f"http://{self.origin_host}:{self.origin_port}"


def parse_address(value: str, *, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) <= 65535):
        raise ConfigError(f"{what} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_origin(value: str) -> tuple[str, int]:
    parts = urlsplit(value if "://" in value else "http://" + value)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"origin {value!r}: expected http://HOST:PORT (https origins are not supported yet)")
    return parts.hostname, parts.port or 80


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# The type each setting must have in a TOML file (command-line values are typed by click).
_TYPES: dict[str, tuple[type, ...]] = {
    "listen_host": (str,), "listen_port": (int,), "origin_host": (str,), "origin_port": (int,),
    "cache_bytes": (int,), "eviction": (str,), "workers": (int,), "purge_token": (str,),
    "tls_cert": (str,), "tls_key": (str,), "keepalive_timeout": (int, float), "header_timeout": (int, float),
    "connect_timeout": (int, float), "read_timeout": (int, float), "grace": (int, float), "log_format": (str,),
    "gzip": (bool,),
}
_DURATIONS = ("keepalive_timeout", "header_timeout", "connect_timeout", "read_timeout")


def apply(config: ProxyConfig, values: Mapping[str, Any], *, source: str) -> ProxyConfig:
    """Overlay values (from TOML or options) onto a config, validating names, types and ranges.

    Raises:
        ConfigError: naming the source, the setting and what is wrong with it.
    """
    known = {f.name for f in fields(ProxyConfig)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key == "listen":
            changes["listen_host"], changes["listen_port"] = parse_address(str(value), what="listen")
        elif key == "origin":
            changes["origin_host"], changes["origin_port"] = parse_origin(str(value))
        elif key == "gateway":
            changes["gateway"] = parse_gateway(value, source=source, relative_to=source)
        elif key in known:
            if (isinstance(value, bool) and bool not in _TYPES[key]) or not isinstance(value, _TYPES[key]):
                raise ConfigError(f"{source}: {key} must be {' or '.join(t.__name__ for t in _TYPES[key])}, "
                                  f"not {value!r}")
            changes[key] = float(value) if float in _TYPES[key] else value
        else:
            raise ConfigError(f"{source}: unknown setting {key!r}")
    result = replace(config, **changes)
    _check(result, source)
    return result


def _check(config: ProxyConfig, source: str) -> None:
    if config.cache_bytes < 0:
        raise ConfigError(f"{source}: cache_bytes must be >= 0")
    if not 1 <= config.workers <= 64:
        raise ConfigError(f"{source}: workers must be between 1 and 64")
    if config.workers > 1 and config.gateway is not None:
        # Each worker would keep its own rate-limit buckets: N workers would admit N times a tier.
        raise ConfigError(f"{source}: a [gateway] needs workers = 1 (rate limits are exact per process; "
                          "sharing them across workers is not built yet)")
    if config.eviction not in ("s3fifo", "lru"):
        raise ConfigError(f"{source}: eviction must be s3fifo or lru")
    if config.log_format not in ("json", "text", "off"):
        raise ConfigError(f"{source}: log_format must be json, text or off")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError(f"{source}: tls_cert and tls_key go together")
    for name in _DURATIONS:
        if not getattr(config, name) > 0:
            raise ConfigError(f"{source}: {name} must be a positive number of seconds")
    if config.grace < 0:
        raise ConfigError(f"{source}: grace must be >= 0 seconds")
    for name in ("listen_port", "origin_port"):
        if not 0 <= getattr(config, name) <= 65535:
            raise ConfigError(f"{source}: {name} must be between 0 and 65535")
