"""The build graph: every output, the inputs it reads, and the fingerprint of those inputs.

Pure planning, no I/O. ``plan_outputs`` lists every output of a site with a
fingerprint — the blake3 of the canonical description of exactly what the output
reads (entry records, the closure of its root template, site config, the membership
and order of the listing it shows, the authors it names). An incremental build reuses
an output whose fingerprint is unchanged and re-renders the rest; because rendering is
a pure function of those inputs, the reused output is byte-identical to a fresh one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import blake3

from pipeline.config import FEED_SIZE, SiteConfig
from pipeline.schema import ContentType

HTML = "text/html; charset=utf-8"
JSON_API = "application/vnd.api+json"
ATOM = "application/atom+xml; charset=utf-8"
XML = "application/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
RENDERER_VERSION = "3"  # bump when rendering code changes output for the same inputs (3: orjson)


def fingerprint(*parts: object) -> str:
    """Hash of a description made of str / int / None / nested lists and tuples.

    ``repr`` of such values is deterministic and runs in C, which makes planning a
    10k-entry site (25k outputs) cost tens of milliseconds instead of most of a second.
    """
    return blake3.blake3(repr(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListingPage:
    kind: str  # home | type | tag | author
    name: str  # "" for home, the type, tag or author key
    title: str
    description: str
    url: str  # this page's URL
    first_url: str
    page: int
    pages: int
    ids: tuple[str, ...]
    prev_url: str | None
    next_url: str | None
    total: int


class OutputSpec(NamedTuple):
    """One planned output. A NamedTuple: 26k are made per plan of a 10k-entry site, and a
    frozen dataclass's __init__ costs three times as much."""

    path: str
    kind: str
    media_type: str
    keys: tuple[str, ...]
    fingerprint: str
    params: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteInputs:
    """Everything outputs can read, already parsed and validated."""

    config: SiteConfig
    types: Mapping[str, ContentType]
    authors: Mapping[str, Mapping[str, Any]]
    records: Mapping[str, Mapping[str, Any]]  # live entries only, by id
    template_fps: Mapping[str, str]  # root template -> fingerprint of its closure
    assets: Mapping[str, str]  # URL path -> source blob id (theme static + media)


def record_fingerprint(record: Mapping[str, Any]) -> str:
    """A record is a pure function of its source blob, resolved links and schema."""
    links = record.get("links") or {}
    return fingerprint("record", record["blob"], sorted(links.items()), record.get("schemaFp"))


def card_fingerprint(record: Mapping[str, Any]) -> str:
    """What a listing card shows of an entry (body edits that keep it don't touch listings)."""
    return fingerprint(
        "card", record["id"], record["title"], record["url"], record["excerpt"],
        record["publishedAt"], record["updatedAt"], record["tags"], record["author"],
        record["readingMinutes"], record["contentType"],
    )


def author_fingerprint(author: Mapping[str, Any] | None) -> str:
    if author is None:
        return "-"
    return fingerprint("author", sorted((k, str(v)) for k, v in author.items()))


def site_fingerprint(config: SiteConfig, types: Mapping[str, ContentType]) -> str:
    data = config.fingerprint_data()
    return fingerprint(
        "site", RENDERER_VERSION, sorted((k, str(v)) for k, v in data.items()),
        [[t.name, t.title, t.description] for t in sorted(types.values(), key=lambda t: t.name)],
    )


def newest_first(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(records, key=lambda r: (r["publishedAt"] or "", r["id"]), reverse=True)


def type_order(ctype: ContentType, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Types with an integer ``order`` field read like a manual (docs); others newest first."""
    spec = ctype.fields.get("order")
    if spec is not None and spec.type == "integer":
        return sorted(records, key=lambda r: (r["fields"].get("order", 0), r["title"], r["id"]))
    return newest_first(records)


def paginate(
    kind: str, name: str, title: str, description: str, base: str,
    ordered: Sequence[Mapping[str, Any]], page_size: int,
) -> list[ListingPage]:
    ids = [r["id"] for r in ordered]
    pages = max(1, -(-len(ids) // page_size))

    def url(n: int) -> str:
        return base if n == 1 else f"{base}page/{n}/"

    return [
        ListingPage(
            kind=kind, name=name, title=title, description=description, url=url(n),
            first_url=base, page=n, pages=pages,
            ids=tuple(ids[(n - 1) * page_size: n * page_size]),
            prev_url=url(n - 1) if n > 1 else None,
            next_url=url(n + 1) if n < pages else None, total=len(ids),
        )
        for n in range(1, pages + 1)
    ]


def listing_pages(site: SiteInputs) -> list[ListingPage]:
    cfg = site.config
    live = list(site.records.values())
    by_type: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    by_tag: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    by_author: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in live:
        by_type[r["contentType"]].append(r)
        for tag in r["tags"]:
            by_tag[tag].append(r)
        if r["author"]:
            by_author[r["author"]].append(r)
    home_types = set(cfg.home_types) if cfg.home_types else set(site.types)
    pages = paginate("home", "", cfg.title, cfg.description, "/",
                     newest_first([r for r in live if r["contentType"] in home_types]),
                     cfg.page_size)
    for name in sorted(site.types):
        ctype = site.types[name]
        pages += paginate("type", name, ctype.title, ctype.description, f"/{name}/",
                          type_order(ctype, by_type.get(name, [])), cfg.page_size)
    for tag in sorted(by_tag):
        pages += paginate("tag", tag, f"Tagged “{tag}”", "", f"/tags/{tag}/",
                          newest_first(by_tag[tag]), cfg.page_size)
    for key in sorted(site.authors):
        author = site.authors[key]
        pages += paginate("author", key, str(author.get("name") or key),
                          str(author.get("bio") or ""), f"/authors/{key}/",
                          newest_first(by_author.get(key, [])), cfg.page_size)
    return pages


def entry_keys(record: Mapping[str, Any]) -> tuple[str, ...]:
    keys = [record["id"], f"type:{record['contentType']}"]
    if record["author"]:
        keys.append(f"author:{record['author']}")
    keys += [f"tag:{t}" for t in record["tags"]]
    return tuple(keys)


def plan_outputs(site: SiteInputs) -> list[OutputSpec]:
    """Every output of the site with its inputs' fingerprint, sorted by path."""
    sfp = site_fingerprint(site.config, site.types)
    tfp = site.template_fps
    authors = site.authors
    records = site.records
    rec_fp = {i: r.get("recordFp") or record_fingerprint(r) for i, r in records.items()}
    card_fp = {i: r.get("cardFp") or card_fingerprint(r) for i, r in records.items()}
    author_fp = {k: author_fingerprint(a) for k, a in authors.items()}
    out: list[OutputSpec] = []

    # An output's fingerprint is the concatenation of already-hashed parts where that is
    # enough to be unique (record fp + context fp); hashing is kept for variable-length
    # inputs (listing membership). This keeps planning 25k outputs well under 0.2 s.
    entry_ctx: dict[tuple[str, str], tuple[str, str]] = {}
    for entry_id, r in records.items():
        ctx_key = (r["author"] or "", r["contentType"])
        ctx = entry_ctx.get(ctx_key)
        if ctx is None:
            afp = author_fp.get(ctx_key[0], "-")
            ctx = (fingerprint("entry", afp, site.types[ctx_key[1]].title, tfp["entry.html"], sfp),
                   fingerprint("entry_json", RENDERER_VERSION, afp))
            entry_ctx[ctx_key] = ctx
        keys = tuple(r["surrogateKeys"]) if "surrogateKeys" in r else entry_keys(r)
        fp = rec_fp[entry_id]
        params = {"id": entry_id}
        out.append(OutputSpec(path=r["url"], kind="entry", media_type=HTML, keys=keys,
                              fingerprint=fp + ctx[0], params=params))
        out.append(OutputSpec(path=r["url"] + "index.json", kind="entry_json", media_type=JSON_API,
                              keys=keys, fingerprint=fp + ctx[1], params=params))

    listing_ctx = fingerprint("listing", tfp["listing.html"], sfp)
    listing_json_ctx = fingerprint("listing_json", RENDERER_VERSION)
    for page in listing_pages(site):
        base_key = f"listing:{page.kind}:{page.name}" if page.name else "listing:home"
        keys = (base_key, f"{base_key}:p{page.page}", *page.ids)
        shown_authors = sorted({records[i]["author"] or "" for i in page.ids})
        members = [card_fp[i] for i in page.ids]
        owner = author_fp.get(page.name, "-") if page.kind == "author" else "-"
        common = fingerprint(page.kind, page.name, page.title, page.description, page.page, page.pages,
                             page.total, members, [author_fp.get(a, "-") for a in shown_authors], owner)
        params = {"page": page}
        out.append(OutputSpec(path=page.url, kind="listing", media_type=HTML, keys=keys,
                              fingerprint=common + listing_ctx, params=params))
        out.append(OutputSpec(path=page.url + "index.json", kind="listing_json", media_type=JSON_API,
                              keys=keys, fingerprint=common + listing_json_ctx, params=params))

    tag_counts: dict[str, int] = defaultdict(int)
    for r in records.values():
        for t in r["tags"]:
            tag_counts[t] += 1
    tags = sorted(tag_counts.items())
    out.append(OutputSpec(path="/tags/", kind="tags", media_type=HTML, keys=("listing:tags",),
                          fingerprint=fingerprint("tags", tags, tfp["tags.html"], sfp),
                          params={"tags": tags}))
    out.append(OutputSpec(path="/tags/index.json", kind="tags_json", media_type=JSON_API,
                          keys=("listing:tags",),
                          fingerprint=fingerprint("tags_json", RENDERER_VERSION, tags),
                          params={"tags": tags}))

    everything = newest_first(list(records.values()))
    feeds = [("", "/feed.xml", site.config.title, everything)]
    for name in sorted(site.types):
        mine = [r for r in everything if r["contentType"] == name]
        feeds.append((name, f"/{name}/feed.xml", f"{site.config.title}: {site.types[name].title}", mine))
    for name, path, title, members_all in feeds:
        ids = tuple(r["id"] for r in members_all[:FEED_SIZE])
        shown = sorted({records[i]["author"] or "" for i in ids})
        out.append(OutputSpec(
            path=path, kind="feed", media_type=ATOM,
            keys=(f"feed:{name}" if name else "feed", *ids),
            fingerprint=fingerprint("feed", name, title, [rec_fp[i] for i in ids],
                                    [author_fp.get(a, "-") for a in shown], tfp["atom.xml"], sfp),
            params={"name": name, "title": title, "ids": ids},
        ))

    html_paths = [s.path for s in out if s.media_type == HTML]
    lastmod = {r["url"]: r["updatedAt"] or r["publishedAt"] for r in records.values()}
    urls = [(p, lastmod.get(p)) for p in sorted(html_paths)]
    out.append(OutputSpec(path="/sitemap.xml", kind="sitemap", media_type=XML, keys=("sitemap",),
                          fingerprint=fingerprint("sitemap", urls, tfp["sitemap.xml"], sfp),
                          params={"urls": urls}))
    out.append(OutputSpec(path="/404.html", kind="notfound", media_type=HTML, keys=("page:404",),
                          fingerprint=fingerprint("404", tfp["404.html"], sfp)))
    feeds = site.config.feeds_json()
    if feeds:  # the Flowbox feeds' definitions: a change purges those feeds' answers (api:feed:<key>)
        out.append(OutputSpec(path="/public/feeds.json", kind="feeds", media_type=JSON_API,
                              keys=("feeds", *(f"api:feed:{key}" for key in feeds)),
                              fingerprint=fingerprint("feeds", RENDERER_VERSION, sorted(feeds.items())),
                              params={"feeds": feeds}))
    out.append(OutputSpec(path="/robots.txt", kind="robots", media_type=TEXT, keys=("robots",),
                          fingerprint=fingerprint("robots", site.config.base_url)))
    for path, blob in site.assets.items():
        group = "media" if path.startswith("/media/") else "asset"
        out.append(OutputSpec(path=path, kind="file", media_type=guess_type(path),
                              keys=(group,), fingerprint=fingerprint("file", blob),
                              params={"source": blob}))
    out.sort(key=lambda s: s.path)
    return out


_TYPES = {
    "css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
    "gif": "image/gif", "webp": "image/webp", "avif": "image/avif", "ico": "image/x-icon",
    "woff2": "font/woff2", "woff": "font/woff", "txt": TEXT, "pdf": "application/pdf",
    "json": "application/json", "xml": XML, "html": HTML, "mp4": "video/mp4",
}


def guess_type(path: str) -> str:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _TYPES.get(ext, "application/octet-stream")
