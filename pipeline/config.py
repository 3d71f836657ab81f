"""Site configuration: a frozen value parsed from the ``flowcms.toml`` mapping.

Loading the file is the caller's job (the file is read from the content tree at the
built commit, so configuration is versioned with the content).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigError

DEFAULT_PAGE_SIZE = 10
FEED_SIZE = 20  # Atom feeds carry the latest 20 entries, as Hugo's default RSS limit.
#: A flowKey is one URL path segment (``/public/feed/<flowKey>``): no escaping ever needed.
FLOW_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_FEED_SELECTORS = ("contentType", "tag", "author")


@dataclass(frozen=True, slots=True, kw_only=True)
class NavLink:
    title: str
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedSpec:
    """One Flowbox feed (``[feeds.<flowKey>]``): the live entries it selects, newest first.

    The selectors combine with AND; a feed without any selector lists every live entry.
    """

    key: str
    title: str
    content_type: str | None = None
    tag: str | None = None
    author: str | None = None

    def to_json(self) -> dict[str, str]:
        """The table as written in flowcms.toml (parse_feeds reads it back)."""
        data = {"title": self.title, "contentType": self.content_type, "tag": self.tag,
                "author": self.author}
        return {name: value for name, value in data.items() if value is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteConfig:
    title: str = "FlowCMS site"
    description: str = ""
    base_url: str = "http://127.0.0.1:8000"
    language: str = "en"
    page_size: int = DEFAULT_PAGE_SIZE
    home_types: tuple[str, ...] | None = None
    nav: tuple[NavLink, ...] = field(default_factory=tuple)
    branch: str = "main"
    #: Flowbox feeds by flowKey. Not part of any page's fingerprint: only the origin reads them.
    feeds: Mapping[str, FeedSpec] = field(default_factory=dict)

    def feeds_json(self) -> dict[str, dict[str, str]]:
        """The feed definitions as plain JSON data (build.json carries them to the origin)."""
        return {key: spec.to_json() for key, spec in sorted(self.feeds.items())}

    def fingerprint_data(self) -> dict[str, Any]:
        """What every rendered page may read from the config (its dependency)."""
        return {
            "title": self.title,
            "description": self.description,
            "base_url": self.base_url,
            "language": self.language,
            "page_size": self.page_size,
            "home_types": list(self.home_types) if self.home_types else None,
            "nav": [[n.title, n.url] for n in self.nav],
        }


def parse_config_text(text: str, *, path: str = "flowcms.toml") -> SiteConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(exc), path=path) from None
    return parse_config(data, path=path)


def parse_config(data: Mapping[str, Any], *, path: str = "flowcms.toml") -> SiteConfig:
    unknown = set(data) - {"site", "build", "feeds"}
    if unknown:
        raise ConfigError(f"unknown section [{sorted(unknown)[0]}]", path=path)
    site = data.get("site", {})
    build = data.get("build", {})
    if not isinstance(site, Mapping) or not isinstance(build, Mapping):
        raise ConfigError("[site] and [build] must be tables", path=path)
    known_site = {"title", "description", "base_url", "language", "page_size",
                  "home_types", "nav"}
    for key in site:
        if key not in known_site:
            raise ConfigError(f"unknown key site.{key}", path=path)
    for key in build:
        if key != "branch":
            raise ConfigError(f"unknown key build.{key}", path=path)

    def text(key: str, default: str) -> str:
        value = site.get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"site.{key} must be a string", path=path)
        return value

    page_size = site.get("page_size", DEFAULT_PAGE_SIZE)
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not (
        1 <= page_size <= 1000
    ):
        raise ConfigError("site.page_size must be an integer from 1 to 1000", path=path)
    home_types = site.get("home_types")
    if home_types is not None and (
        not isinstance(home_types, list) or not all(isinstance(t, str) for t in home_types)
    ):
        raise ConfigError("site.home_types must be a list of type names", path=path)
    nav: list[NavLink] = []
    for i, item in enumerate(site.get("nav", [])):
        if not isinstance(item, Mapping) or not isinstance(item.get("title"), str) or not (
            isinstance(item.get("url"), str)
        ):
            raise ConfigError(f"site.nav[{i}] needs a title and a url", path=path)
        nav.append(NavLink(title=item["title"], url=item["url"]))
    branch = build.get("branch", "main")
    if not isinstance(branch, str) or not branch:
        raise ConfigError("build.branch must be a branch name", path=path)
    return SiteConfig(
        title=text("title", "FlowCMS site"),
        description=text("description", ""),
        base_url=text("base_url", "http://127.0.0.1:8000").rstrip("/"),
        language=text("language", "en"),
        page_size=page_size,
        home_types=tuple(home_types) if home_types else None,
        nav=tuple(nav),
        branch=branch,
        feeds=parse_feeds(data.get("feeds", {}), path=path),
    )


def parse_feeds(data: object, *, path: str = "flowcms.toml") -> dict[str, FeedSpec]:
    """``[feeds.<flowKey>]`` tables → FeedSpec by flowKey; ConfigError names the bad value.

    Also reads the same mapping back from a build's build.json (``SiteConfig.feeds_json``).
    """
    if not isinstance(data, Mapping):
        raise ConfigError("[feeds] must be a table of [feeds.<flowKey>] tables", path=path)
    feeds: dict[str, FeedSpec] = {}
    for key, table in data.items():
        if not isinstance(key, str) or not FLOW_KEY_RE.fullmatch(key):
            raise ConfigError(
                f"feed key {key!r} must be 1-64 letters, digits, '-' or '_', starting with a "
                "letter or digit", path=path)
        if not isinstance(table, Mapping):
            raise ConfigError(f"feeds.{key} must be a table", path=path)
        for name in table:
            if name != "title" and name not in _FEED_SELECTORS:
                raise ConfigError(
                    f"unknown key feeds.{key}.{name} (a feed has title, contentType, tag, author)",
                    path=path)
        title = table.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ConfigError(f"feeds.{key}.title must be a non-empty string", path=path)
        selectors: dict[str, str | None] = {}
        for name in _FEED_SELECTORS:
            value = table.get(name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"feeds.{key}.{name} must be a non-empty string", path=path)
            selectors[name] = value
        feeds[key] = FeedSpec(key=key, title=title, content_type=selectors["contentType"],
                              tag=selectors["tag"], author=selectors["author"])
    return feeds
