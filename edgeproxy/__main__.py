"""``edgeproxy``: command line → ProxyConfig → trio.run(Server.serve).

Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT), 1 when the proxy cannot start
(port in use, unreadable TLS files), 2 for a bad option or config value (click's usage
error status). An unreachable origin is not a startup error: requests get 502 until it is up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from typing import Any

import click
import trio

from edgeproxy.config import ProxyConfig, apply, load_toml
from edgeproxy.errors import ConfigError


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access-log records carry their fields in ``record.request``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = getattr(record, "request", None) or {"message": record.getMessage()}
        line = {"time": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name, **data}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class TextFormatter(logging.Formatter):
    """``time level logger message``; access-log records as ``METHOD target status bytes ms id``."""

    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request", None)
        if request:
            message = (f"{request['method']} {request['target']} {request['status']} {request['bytes']}B "
                       f"{request['ms']}ms {request['protocol']} id={request['id']}")
        else:
            message = record.getMessage()
        text = f"{self.formatTime(record)} {record.levelname.lower()} {record.name}: {message}"
        return text + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--listen", help="HOST:PORT to listen on (HTTP/1.1 and HTTP/2 on one port; port 0 picks one). "
                               "[127.0.0.1:8080]")
@click.option("--origin", help="Origin to proxy to, http://HOST:PORT. [http://127.0.0.1:8000]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file with the same settings.")
@click.option("--cache-bytes", type=click.IntRange(min=0), help="Memory budget of the cache in bytes. [268435456]")
@click.option("--workers", type=click.IntRange(min=1, max=64),
              help="Worker processes sharing the port (SO_REUSEPORT); a purge reaches all of them. [1]")
@click.option("--eviction", type=click.Choice(["s3fifo", "lru"]), help="Eviction policy. [s3fifo]")
@click.option("--purge-token", envvar="EDGEPROXY_PURGE_TOKEN", help="Bearer token for PURGE and /.edge/purge.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate chain (enables TLS + ALPN h2).")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM private key.")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True),
              help="Seconds to wait for the origin's answer. [30]")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True),
              help="Seconds to connect to the origin. [5]")
@click.option("--keepalive-timeout", type=click.FloatRange(min=0, min_open=True),
              help="Idle client connection timeout in seconds. [75]")
@click.option("--grace", type=click.FloatRange(min=0), help="Seconds in-flight requests get on shutdown. [10]")
@click.option("--log-format", type=click.Choice(["json", "text", "off"]), help="Access log format. [json]")
@click.option("--gzip/--no-gzip", default=None,
              help="Keep a gzip copy of stored text, HTML, JSON, JS, XML and SVG answers (1 KB to 256 KB) and send "
                   "it to clients whose Accept-Encoding takes gzip. [--gzip]")
def main(config_file: str | None, **options: Any) -> None:
    """A caching HTTP/1.1 + HTTP/2 proxy (RFC 9111) with purge by path, prefix and surrogate key."""
    try:
        config = ProxyConfig()
        if config_file:
            config = apply(config, load_toml(config_file), source=config_file)
        config = apply(config, options, source="command line")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None  # exit status 2, like click's own option errors
    _configure_logging(config)
    try:
        if config.workers > 1:
            trio.run(_supervise, config)
        else:
            trio.run(_serve, config)
    except* ConfigError as group:
        for exc in group.exceptions:
            click.echo(f"edgeproxy: {exc}", err=True)
        sys.exit(1)
    except* KeyboardInterrupt:  # a second Ctrl-C during the grace period
        sys.exit(130)


async def _serve(config: ProxyConfig) -> None:
    from edgeproxy.server import Server

    server = Server(config)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(server.serve)
        for listener in listeners:
            host, port = listener.socket.getsockname()[:2]
            click.echo(f"edgeproxy {os.getpid()}: listening on {host}:{port}, origin {config.origin}"
                       f"{' (TLS)' if config.tls_cert else ''}", err=True)


async def _supervise(config: ProxyConfig) -> None:
    import signal

    from edgeproxy.supervisor import Supervisor, bind_listeners

    listeners = bind_listeners(config, config.workers)
    host, port = listeners[0].getsockname()[:2]
    supervisor = Supervisor(config, listeners)
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            click.echo(f"edgeproxy {os.getpid()}: listening on {host}:{port} with {config.workers} workers, "
                       f"origin {config.origin}{' (TLS)' if config.tls_cert else ''}", err=True)
            await supervisor.run(signals)
    finally:
        for sock in listeners:
            sock.close()


def _run_worker(spec: dict[str, Any]) -> None:
    from edgeproxy.config import ProxyConfig as Config
    from edgeproxy.supervisor import run_worker

    _configure_logging(Config(**spec["config"]))
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run_worker, spec)


def _configure_logging(config: ProxyConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    if config.log_format == "off":
        logging.getLogger("edgeproxy.access").setLevel(logging.WARNING)


if __name__ == "__main__":
    from edgeproxy.supervisor import worker_spec

    spec = worker_spec()
    if spec is not None:
        _run_worker(spec)  # started by a supervisor (--workers N)
    else:
        main()
