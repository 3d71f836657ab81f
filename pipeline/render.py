"""Rendering: Jinja2 pages and JSON documents from planned outputs.

A ``Renderer`` is built once per process from the template sources (the theme
overlaid by the site's ``templates/``) and turns an ``OutputSpec`` into bytes. It reads
only what the spec's fingerprint covers, so an output's bytes are a pure function of
its fingerprint. Template errors are translated here into ``TemplateError`` with the
template file and line.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
import jinja2.meta

from pipeline import dates
from pipeline.config import SiteConfig
from pipeline.documents import canonical_json
from pipeline.errors import TemplateError
from pipeline.graph import RENDERER_VERSION, ListingPage, OutputSpec, fingerprint
from pipeline.schema import ContentType

ROOT_TEMPLATES = ("entry.html", "listing.html", "tags.html", "404.html", "atom.xml", "sitemap.xml")

Templates = Mapping[str, tuple[str, str]]  # name -> (source text, file shown in errors)


class _Loader(jinja2.BaseLoader):
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            source, filename = self.templates[template]
        except KeyError:
            raise jinja2.TemplateNotFound(template) from None
        return source, filename, lambda: True


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Environment(jinja2.Environment):
    """Jinja's own lookup, minus an exception per ``entry.title``.

    Jinja tries ``getattr(obj, name)`` before ``obj[name]``; on a view-model dict the
    first always fails, and raising and catching that AttributeError was a quarter of a
    listing page's rendering. For a plain dict the answer is the same without it: only
    the names of dict's own attributes can succeed as attributes.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


_OPTIONS: dict[str, Any] = {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}


def bytecode_tag() -> str:
    """Names the folder of a ``jinja2.FileSystemBytecodeCache`` for this environment.

    Jinja keys its cache on the template name and a checksum of its source, not on the
    environment's options or version, nor on the filters it folds into constants: a cache
    folder named after those (and RENDERER_VERSION, bumped when a filter's output changes)
    is started anew by an upgrade that compiles differently. Filters that read the site's
    config are ``pass_context`` so they are never folded.
    """
    return fingerprint("jinja-bytecode", jinja2.__version__, RENDERER_VERSION, sorted(_OPTIONS.items()))[:16]


def make_environment(templates: Templates, bytecode_cache: jinja2.BytecodeCache | None = None,
                     ) -> jinja2.Environment:
    """The site's Jinja environment; a bytecode cache keeps compiled templates between
    processes (compiling the theme costs ~20-40 ms of a one-entry edit)."""
    env = _Environment(
        loader=_Loader(templates),
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # sources are fixed for the environment's life: no up-to-date checks
        bytecode_cache=bytecode_cache,
        **_OPTIONS,
    )
    env.filters["date"] = lambda iso: dates.display(iso) if iso else ""
    return env


def template_fingerprints(templates: Templates) -> dict[str, str]:
    """Root template -> fingerprint of the sources of its include/extends closure."""
    env = make_environment(templates)
    closures: dict[str, str] = {}
    for root in ROOT_TEMPLATES:
        if root not in templates:
            raise TemplateError(root, 0, "template is missing from the theme")
        seen: dict[str, str] = {}
        stack = [root]
        while stack:
            name = stack.pop()
            if name in seen or name not in templates:
                continue
            source = templates[name][0]
            seen[name] = source
            try:
                ast = env.parse(source, name, templates[name][1])
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(templates[name][1], exc.lineno, exc.message or str(exc)) from None
            for ref in jinja2.meta.find_referenced_templates(ast):
                if ref is None:
                    raise TemplateError(templates[name][1], 0, "dynamic template names are not supported")
                stack.append(ref)
        closures[root] = fingerprint("templates", sorted(seen.items()))
    return closures


def _template_error(exc: Exception, templates: Templates) -> TemplateError:
    files = {filename for _, filename in templates.values()}
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return TemplateError(exc.filename or exc.name or "?", exc.lineno, exc.message or str(exc))
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in files:
            return TemplateError(frame.filename, frame.lineno or 0, f"{type(exc).__name__}: {exc}")
    return TemplateError("?", 0, f"{type(exc).__name__}: {exc}")


class Renderer:
    def __init__(
        self, templates: Templates, *, config: SiteConfig, types: Mapping[str, ContentType],
        authors: Mapping[str, Mapping[str, Any]], records: Mapping[str, Mapping[str, Any]],
        read_file: Callable[[str], bytes], bytecode_cache: jinja2.BytecodeCache | None = None,
    ) -> None:
        self.templates = templates
        self.env = make_environment(templates, bytecode_cache)
        self._compiled: dict[str, jinja2.Template] = {}
        base = config.base_url
        # pass_context: Jinja folds a filter on constant arguments into the compiled code
        # ({{ "/tags/"|absolute }} becomes a string), and compiled code is cached by template
        # source alone; a filter that reads the config must run when the page renders.
        self.env.filters["absolute"] = jinja2.pass_context(lambda _context, path: base + path)
        self.config = config
        self.types = types
        self.authors = authors
        self.records = records
        self.read_file = read_file
        self.site = {
            "title": config.title, "description": config.description, "base_url": base,
            "language": config.language,
            "nav": [{"title": n.title, "url": n.url} for n in config.nav],
            "types": [
                {"name": t.name, "title": t.title, "description": t.description, "url": f"/{t.name}/"}
                for t in sorted(types.values(), key=lambda t: t.name)
            ],
        }

    # -- view models ----------------------------------------------------------
    def author_view(self, key: str | None) -> dict[str, Any] | None:
        if not key or key not in self.authors:
            return None
        a = self.authors[key]
        return {
            "key": key, "name": a.get("name") or key, "bio": a.get("bio") or "",
            "url": a.get("url"), "avatar": a.get("avatar"), "page_url": f"/authors/{key}/",
        }

    def card(self, r: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": r["id"], "title": r["title"], "slug": r["slug"], "url": r["url"],
            "content_type": r["contentType"], "type_title": self.types[r["contentType"]].title,
            "status": r["status"], "tags": [{"name": t, "url": f"/tags/{t}/"} for t in r["tags"]],
            "author": self.author_view(r["author"]), "published_at": r["publishedAt"],
            "updated_at": r["updatedAt"], "excerpt": r["excerpt"],
            "reading_minutes": r["readingMinutes"], "fields": r["fields"],
        }

    def entry_view(self, r: Mapping[str, Any]) -> dict[str, Any]:
        view = self.card(r)
        view["body_html"] = r["bodyHtml"]
        view["toc"] = r["toc"]
        return view

    # -- rendering -------------------------------------------------------------
    def _page(self, template: str, page_url: str, **context: Any) -> bytes:
        try:
            compiled = self._compiled.get(template)
            if compiled is None:
                compiled = self._compiled[template] = self.env.get_template(template)
            text = compiled.render(site=self.site, page_url=page_url, **context)
        except TemplateError:
            raise
        except Exception as exc:
            raise _template_error(exc, self.templates) from None
        return text.encode()

    def render(self, spec: OutputSpec) -> bytes:
        kind = spec.kind
        p = spec.params
        if kind == "entry":
            return self._page("entry.html", spec.path, entry=self.entry_view(self.records[p["id"]]))
        if kind == "entry_json":
            return canonical_json(self.entry_document(self.records[p["id"]]))
        if kind == "listing":
            return self._page("listing.html", spec.path, listing=self.listing_view(p["page"]))
        if kind == "listing_json":
            return canonical_json(self.listing_document(p["page"]))
        if kind == "tags":
            tags = [{"name": t, "url": f"/tags/{t}/", "count": n} for t, n in p["tags"]]
            return self._page("tags.html", spec.path, tags=tags)
        if kind == "tags_json":
            return canonical_json({
                "data": [{"type": "tags", "id": t, "attributes": {"name": t, "count": n},
                          "links": {"self": f"/tags/{t}/"}} for t, n in p["tags"]],
                "links": {"self": "/tags/"}, "meta": {"total": len(p["tags"])},
            })
        if kind == "feed":
            entries = [self.entry_view(self.records[i]) for i in p["ids"]]
            updated = max((e["updated_at"] or e["published_at"] for e in entries), default="1970-01-01T00:00:00Z")
            feed = {"title": p["title"], "url": spec.path,
                    "home_url": f"/{p['name']}/" if p["name"] else "/",
                    "updated": updated, "entries": entries}
            return self._page("atom.xml", spec.path, feed=feed)
        if kind == "sitemap":
            urls = [{"loc": loc, "lastmod": lastmod} for loc, lastmod in p["urls"]]
            return self._page("sitemap.xml", spec.path, urls=urls)
        if kind == "notfound":
            return self._page("404.html", spec.path)
        if kind == "feeds":
            return canonical_json({
                "data": [{"type": "feeds", "id": key, "attributes": spec_,
                          "links": {"self": f"/public/feed/{key}"}} for key, spec_ in p["feeds"].items()],
                "meta": {"total": len(p["feeds"])},
            })
        if kind == "robots":
            return f"User-agent: *\nAllow: /\nSitemap: {self.config.base_url}/sitemap.xml\n".encode()
        if kind == "file":
            return self.read_file(spec.path)
        raise AssertionError(f"unknown output kind {kind}")

    def listing_view(self, page: ListingPage) -> dict[str, Any]:
        return {
            "title": page.title, "description": page.description, "kind": page.kind,
            "url": page.first_url, "entries": [self.card(self.records[i]) for i in page.ids],
            "page": page.page, "pages": page.pages, "prev_url": page.prev_url,
            "next_url": page.next_url,
            "author": self.author_view(page.name) if page.kind == "author" else None,
        }

    # -- JSON documents (JSON:API shapes the delivery APIs build on) -----------
    def resource(self, r: Mapping[str, Any], *, body: bool) -> dict[str, Any]:
        attributes = {
            "title": r["title"], "slug": r["slug"], "status": r["status"],
            "contentType": r["contentType"], "tags": r["tags"], "publishedAt": r["publishedAt"],
            "updatedAt": r["updatedAt"], "excerpt": r["excerpt"], "url": r["url"],
            "readingMinutes": r["readingMinutes"], "fields": r["fields"],
        }
        if body:
            attributes["body"] = r["bodyHtml"]
            attributes["toc"] = r["toc"]
        resource: dict[str, Any] = {
            "type": "contents", "id": r["id"], "attributes": attributes,
            "links": {"self": r["url"]},
        }
        if r["author"]:
            resource["relationships"] = {"author": {"data": {"type": "authors", "id": r["author"]}}}
        return resource

    def author_resource(self, key: str) -> dict[str, Any]:
        a = self.authors[key]
        return {"type": "authors", "id": key, "attributes": {
            "name": a.get("name") or key, "bio": a.get("bio") or "", "url": a.get("url"),
            "avatar": a.get("avatar")}, "links": {"self": f"/authors/{key}/"}}

    def entry_document(self, r: Mapping[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {"data": self.resource(r, body=True), "links": {"self": r["url"] + "index.json"}}
        if r["author"] in self.authors:
            doc["included"] = [self.author_resource(r["author"])]
        return doc

    def listing_document(self, page: ListingPage) -> dict[str, Any]:
        records = [self.records[i] for i in page.ids]
        authors = sorted({r["author"] for r in records if r["author"] in self.authors})
        links: dict[str, Any] = {"self": page.url + "index.json", "first": page.first_url + "index.json",
                                 "prev": page.prev_url + "index.json" if page.prev_url else None,
                                 "next": page.next_url + "index.json" if page.next_url else None}
        return {
            "data": [self.resource(r, body=False) for r in records],
            "included": [self.author_resource(a) for a in authors],
            "links": links,
            "meta": {"kind": page.kind, "name": page.name, "title": page.title,
                     "page": page.page, "pages": page.pages, "total": page.total},
        }
