"""The build, as named stages: read → parse → validate → plan → render → index → commit.

Every stage collects problems instead of stopping at the first; ``build_site`` raises
one ``BuildFailed`` with all of them, and nothing under ``builds/`` or ``LIVE`` is
touched. A successful build is a new immutable directory in the store; publishing it
is a separate step (``publish.py``).

Incremental builds reuse the previous build's entry records (when the source blob,
the schema and the resolved links are unchanged) and its outputs (when an output's
input fingerprint is unchanged, see ``graph.py``). A cold build renders across
processes (fork, so workers inherit the planned site without pickling it); a small
rebuild renders in-process and pays for no pool.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from pipeline import dates
from pipeline.config import SiteConfig, parse_config_text
from pipeline.documents import canonical_json
from pipeline.entry import EntryMeta, is_live, make_record, parse_entry
from pipeline.errors import (
    BuildFailed,
    ConfigError,
    ContentError,
    PipelineError,
    TemplateError,
)
from pipeline.graph import (
    RENDERER_VERSION,
    OutputSpec,
    SiteInputs,
    card_fingerprint,
    entry_keys,
    fingerprint,
    plan_outputs,
    record_fingerprint,
)
from pipeline.index import load_entry_records, open_index, update_index, write_index
from pipeline.markdown import LinkContext
from pipeline.markdown_fast import MarkdownRenderer, make_renderer
from pipeline.publish import BuildDiff, diff_manifests
from pipeline.render import Renderer, bytecode_tag, template_fingerprints
from pipeline.schema import ContentType, parse_content_type
from pipeline.source import Source, Tree, git_blob_id
from pipeline.store import Manifest, ManifestItem, Store, blob_hash

THEME_DIR = Path(__file__).resolve().parent.parent / "site_templates"
PARALLEL_THRESHOLD = 128  # below this many renders a process pool costs more than it saves
MARKDOWN_VERSION = "1"  # bump when markdown.py changes HTML for the same source
RESERVED_FOLDERS = frozenset({"types", "templates", "static", "media"})

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    full: bool = False
    as_of: str | None = None  # ISO instant that decides what is live; default: now
    workers: int | None = None
    theme_dir: Path = THEME_DIR
    ref: str = ""
    dry_run: bool = False  # validate and plan only (``flowcms check``): write nothing


@dataclass(slots=True, kw_only=True)
class BuildResult:
    build_id: str
    previous_id: str | None
    rendered: int
    reused: int
    removed: int
    outputs: int
    entries: int
    live_entries: int
    reparsed: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    diff: BuildDiff | None = None  # against previous_id, when the previous build recorded its keys


@dataclass(slots=True)
class _Site:
    """What the read stage gathered from the tree and the theme."""

    config: SiteConfig
    authors: dict[str, dict[str, Any]]
    types: dict[str, ContentType]
    templates: dict[str, tuple[str, str]]
    files: dict[str, tuple[str, Callable[[], bytes]]]  # URL path -> (blob id, reader)
    entry_paths: list[str]


def _read_theme(theme_dir: Path) -> tuple[dict[str, tuple[str, str]], dict[str, Path]]:
    templates: dict[str, tuple[str, str]] = {}
    statics: dict[str, Path] = {}
    for path in sorted(theme_dir.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(theme_dir).as_posix()
        if rel.startswith("static/"):
            statics["/assets/" + rel[len("static/"):]] = path
        else:
            templates[rel] = (path.read_text(), f"site_templates/{rel}")
    return templates, statics


def theme_fingerprint(theme_dir: Path) -> str:
    files = sorted(p for p in theme_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    return fingerprint("theme", [(p.relative_to(theme_dir).as_posix(), git_blob_id(p.read_bytes())) for p in files])


def stable_until(records: Mapping[str, Mapping[str, Any]], as_of: str) -> str | None:
    """The next instant at which some entry goes live or leaves (None: never)."""
    future = [v for r in records.values() if r["status"] == "published"
              for v in (r["publishAt"], r["publishedAt"], r["unpublishAt"]) if v and v > as_of]
    return min(future) if future else None


def _build_info(store: Store, build_id: str | None) -> dict[str, Any]:
    if build_id is None:
        return {}
    try:
        info = json.loads((store.build_dir(build_id) / "build.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _unchanged(store: Store, previous: str | None, source_fp: str, as_of: str) -> dict[str, Any] | None:
    """The previous build's info when it is exactly what this build would produce."""
    if previous is None:
        return None
    try:
        info = json.loads((store.build_dir(previous) / "build.json").read_bytes())
    except (OSError, ValueError):
        return None
    until = info.get("stable_until")
    if info.get("source_fp") == source_fp and info.get("as_of", "~") <= as_of and (until is None or as_of < until):
        return dict(info)
    return None


def read_site(source: Source, theme_dir: Path, errors: list[PipelineError]) -> _Site:
    tree = source.tree()
    config = SiteConfig()
    if "flowcms.toml" in tree:
        try:
            config = parse_config_text(source.read("flowcms.toml").decode())
        except (ConfigError, UnicodeDecodeError) as exc:
            errors.append(exc if isinstance(exc, ConfigError) else ConfigError("not UTF-8"))
    authors: dict[str, dict[str, Any]] = {}
    if "authors.yaml" in tree:
        try:
            raw = yaml.load(source.read("authors.yaml"), Loader=yaml.CSafeLoader) or {}
            if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
                raise ContentError("authors.yaml", 1, 1, "authors",
                                   "authors.yaml must map author keys to {name, bio, url, avatar}")
            authors = {str(k): {kk: (str(vv) if vv is not None else None) for kk, vv in v.items()}
                       for k, v in raw.items()}
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            errors.append(ContentError("authors.yaml", mark.line + 1 if mark else 1,
                                       mark.column + 1 if mark else 1, "yaml",
                                       f"invalid YAML: {exc.problem}"))
        except ContentError as exc:
            errors.append(exc)
    types: dict[str, ContentType] = {}
    for path in tree:
        if path.startswith("types/") and path.endswith((".yaml", ".yml")) and path.count("/") == 1:
            try:
                ctype = parse_content_type(path, source.read(path).decode())
                types[ctype.name] = ctype
            except ContentError as exc:
                errors.append(exc)
    theme_templates, theme_static = _read_theme(theme_dir)
    templates = dict(theme_templates)
    files: dict[str, tuple[str, Callable[[], bytes]]] = {}
    for url, fs_path in theme_static.items():
        data = fs_path.read_bytes()
        files[url] = (git_blob_id(data), lambda data=data: data)  # type: ignore[misc]
    entry_paths: list[str] = []
    for path, blob in tree.items():
        top = path.split("/", 1)[0]
        if path.startswith("templates/"):
            try:
                templates[path[len("templates/"):]] = (source.read(path).decode(), path)
            except UnicodeDecodeError:
                errors.append(ContentError(path, 1, 1, "encoding", "template is not UTF-8"))
        elif path.startswith(("static/", "media/")):
            url = ("/assets/" + path[len("static/"):]) if top == "static" else "/" + path
            files[url] = (blob, lambda path=path: source.read(path))  # type: ignore[misc]
        elif path.endswith(".md") and "/" in path and top not in RESERVED_FOLDERS:
            entry_paths.append(path)
    return _Site(config, authors, types, templates, files, sorted(entry_paths))


# -- parallel work: fork workers inherit _JOB, so nothing big is pickled in ----------
_JOB: dict[str, Any] = {}


def _parse_chunk(indices: list[int]) -> list[tuple[int, EntryMeta | None, list[tuple[str, int, int, str, str]]]]:
    items: list[tuple[str, str]] = _JOB["to_parse"]
    source: Source = _JOB["source"]
    out = []
    for i in indices:
        path, blob = items[i]
        data = source.read(path)
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            column = exc.start - data.rfind(b"\n", 0, exc.start)  # in bytes, 1-based
            out.append((i, None, [(path, line, column, "encoding",
                                   f"file is not UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8")]))
            continue
        meta, problems = parse_entry(path, blob, text, _JOB["types"], _JOB["authors"])
        # errors travel as tuples: exceptions with custom __init__ do not unpickle
        out.append((i, meta, [(e.path, e.line, e.column, e.code, e.message) for e in problems]))
    return out


def _markdown_chunk(indices: list[int]) -> list[tuple[int, dict[str, Any] | None, list[tuple[str, int, int, str, str]]]]:
    metas: list[EntryMeta] = _JOB["metas"]
    return [(i, *_render_entry(metas[i], _JOB["md"], _JOB["urls"], _JOB["files"], _JOB["schema_fps"],
                               _JOB["put"]))
            for i in indices]


def _render_chunk(indices: list[int]) -> list[tuple[int, str, int] | tuple[int, str, int, str]]:
    specs: list[OutputSpec] = _JOB["specs"]
    renderer: Renderer = _JOB["renderer"]
    store: Store = _JOB["store"]
    out: list[Any] = []
    for i in indices:
        try:
            data = renderer.render(specs[i])
        except TemplateError as exc:
            out.append((i, exc.template, exc.line, exc.message))
            continue
        out.append((i, store.put(data), len(data)))
    return out


def _chunks(n: int, workers: int) -> list[list[int]]:
    """Small enough that the last chunks keep every worker busy to the end (32 per
    worker), big enough that the pipe is not the work (at least 16 items)."""
    size = max(16, -(-n // (workers * 32)))
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]


def _worker_start() -> None:
    """A forked render worker starts with default signal handling: a parent that catches
    SIGTERM (a server under trio, e.g. ``flowcms up``'s origin) must not leave workers that
    ignore the SIGTERM ``Pool.terminate`` sends — that hangs the pool's exit — nor writing
    to the parent's wakeup fd. It reads content through its own repository handle."""
    import signal

    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    if "source" in _JOB:
        _JOB["source"] = _JOB["source"].reopened()


def _run_parallel(
    fn: Callable[[list[int]], list[Any]], n: int, workers: int,
    progress: Callable[[int, int], None] | None = None, *, meanwhile: Callable[[], None] | None = None,
) -> list[Any]:
    """``fn`` over range(n) in chunks, in a fork pool when there is enough work.

    ``meanwhile`` runs in this process while the pool works (serially: after ``fn``).
    """
    if workers <= 1 or n < PARALLEL_THRESHOLD:
        results = fn(list(range(n)))
        if progress:
            progress(n, n)
        if meanwhile:
            meanwhile()
        return results
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_worker_start) as pool:
        results = []
        pending = pool.imap_unordered(fn, _chunks(n, workers))
        if meanwhile:
            meanwhile()
        for part in pending:
            results.extend(part)
            if progress:
                progress(len(results), n)
        return results


def _render_entry(
    meta: EntryMeta, md: MarkdownRenderer, urls: dict[str, str], files: frozenset[str], schema_fps: Mapping[str, str],
    put: Callable[[bytes], str],
) -> tuple[dict[str, Any] | None, list[tuple[str, int, int, str, str]]]:
    rendered = md.render(meta.body, LinkContext(meta.path, urls, files))
    problems = [(meta.path, meta.body_line + line, col, "broken-link", msg)
                for line, col, msg in rendered.problems]
    record = make_record(
        meta, html=rendered.html, text=rendered.text, toc=rendered.toc, links=rendered.links,
        reading_minutes=rendered.reading_minutes, excerpt=rendered.excerpt(),
    )
    record["bodyBlob"] = put(rendered.html.encode())  # the index names it; later builds read it
    record["schemaFp"] = schema_fps[meta.content_type]
    record["siteLinks"] = [[meta.body_line + line, col, path] for line, col, path in rendered.site_links]
    record["recordFp"] = record_fingerprint(record)
    record["cardFp"] = card_fingerprint(record)
    record["surrogateKeys"] = list(entry_keys(record))
    return record, problems


def _bytecode_cache(store: Store) -> jinja2.BytecodeCache:
    """Compiled templates, kept in the store between builds (Jinja checks each one's source)."""
    folder = store.root / "cache" / "jinja" / bytecode_tag()
    folder.mkdir(parents=True, exist_ok=True)
    return jinja2.FileSystemBytecodeCache(str(folder))


def _previous_state(store: Store, previous: str | None) -> tuple[Manifest, dict[str, dict[str, Any]], Path | None]:
    if previous is None:
        return {}, {}, None
    build_dir = store.build_dir(previous)
    cached = store.load_state(previous)
    if cached is not None:
        return cached[0], cached[1], build_dir / "index.sqlite"
    try:
        deps = store.manifest(previous)
        conn = open_index(build_dir / "index.sqlite")
        try:
            records = load_entry_records(conn, bodies=False)  # bodies fetched when needed
        finally:
            conn.close()
    except (OSError, ValueError, PipelineError):
        return {}, {}, None  # unreadable previous build: fall back to a full build
    return deps, records, build_dir / "index.sqlite"


def build_site(
    source: Source, store: Store, *, previous: str | None, options: BuildOptions,
    progress: Progress | None = None,
) -> BuildResult:
    """Build ``source`` into a new immutable build in ``store``; raise BuildFailed on any problem.

    The cyclic garbage collector is off meanwhile (and in the forked workers, which
    inherit that): a build allocates millions of short-lived, acyclic objects (markdown
    tokens, view models) while it holds every record alive, and the collector's passes
    over that growing heap were a tenth of a cold build's CPU for nothing — peak memory
    is the same without them.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build_site(source, store, previous=previous, options=options, progress=progress)
    finally:
        if collecting:
            gc.enable()


def _build_site(
    source: Source, store: Store, *, previous: str | None, options: BuildOptions,
    progress: Progress | None,
) -> BuildResult:
    started = time.perf_counter()
    stages: dict[str, float] = {}
    mark = [started]

    def stage(name: str) -> None:
        now = time.perf_counter()
        stages[name] = round(now - mark[0], 4)
        mark[0] = now

    as_of = options.as_of or dates.from_epoch(time.time())
    workers = options.workers or os.cpu_count() or 1
    errors: list[PipelineError] = []
    warnings: list[str] = []

    # no-op: same files, same theme, and no scheduled change since the previous build
    source_fp = fingerprint("source", source.revision.tree, theme_fingerprint(options.theme_dir),
                            RENDERER_VERSION, MARKDOWN_VERSION)
    same = None if options.full or options.dry_run else _unchanged(store, previous, source_fp, as_of)
    if same is not None and previous is not None:
        stage("unchanged")
        return BuildResult(
            build_id=previous, previous_id=previous, rendered=0, reused=same["outputs"], removed=0,
            outputs=same["outputs"], entries=same["entries"], live_entries=same["live_entries"],
            reparsed=0, seconds=round(time.perf_counter() - started, 4), stages=stages,
        )

    # read
    tree: Tree = source.tree()
    site = read_site(source, options.theme_dir, errors)
    prev_info = _build_info(store, previous)
    templates_fp = fingerprint("template-sources", sorted((k, v[0]) for k, v in site.templates.items()))
    template_fps: dict[str, str] = {}
    if prev_info.get("templates_fp") == templates_fp and not options.full:
        template_fps = dict(prev_info.get("template_fps") or {})  # same sources: same closures
    if not template_fps:
        try:
            template_fps = template_fingerprints(site.templates)
        except TemplateError as exc:
            errors.append(exc)
    prev_deps, prev_records, prev_index = ({}, {}, None) if options.full else _previous_state(store, previous)
    stage("read")

    # parse
    schema_fps = {name: fingerprint("schema", MARKDOWN_VERSION, repr(t)) for name, t in site.types.items()}
    prev_by_path = {r["path"]: r for r in prev_records.values()}
    records: dict[str, dict[str, Any]] = {}  # by path
    metas: list[EntryMeta] = []
    to_parse: list[tuple[str, str]] = []  # (path, blob): the workers read the files
    for path in site.entry_paths:
        old = prev_by_path.get(path)
        blob = tree[path]
        if old is not None and old["blob"] == blob and old.get("schemaFp") == schema_fps.get(old["contentType"]):
            records[path] = old
            continue
        to_parse.append((path, blob))
    _JOB.update(to_parse=to_parse, types=site.types, authors=site.authors, source=source)
    try:
        parsed = _run_parallel(_parse_chunk, len(to_parse), workers)
    finally:
        _JOB.clear()
    for _i, meta, problems in sorted(parsed, key=lambda x: x[0]):
        errors.extend(ContentError(*p) for p in problems)
        if meta is not None:
            metas.append(meta)
    urls = {r["path"]: r["url"] for r in records.values()}
    urls.update({m.path: m.url for m in metas})
    for path, record in list(records.items()):  # a linked entry moved: re-render the linker
        if any(urls.get(target) != url for target, url in (record.get("links") or {}).items()):
            del records[path]
            meta, problems = parse_entry(path, record["blob"], source.read(path).decode(),
                                         site.types, site.authors)
            errors.extend(problems)
            if meta is not None:
                metas.append(meta)
    stage("parse")

    # markdown (parallel on cold builds)
    files = frozenset(tree)
    _JOB.update(metas=metas, md=make_renderer(), urls=urls, files=files, schema_fps=schema_fps,
                put=blob_hash if options.dry_run else store.put)
    try:
        results = _run_parallel(_markdown_chunk, len(metas), workers,
                                lambda done, total: progress("markdown", done, total) if progress else None)
    finally:
        _JOB.clear()
    for _i, record, problems in sorted(results, key=lambda x: x[0]):
        errors.extend(ContentError(*p) for p in problems)
        if record is not None:
            records[record["path"]] = record
    reparsed = len(metas)
    stage("markdown")

    # validate across entries
    by_id: dict[str, str] = {}
    by_url: dict[str, str] = {}
    for path in sorted(records):
        r = records[path]
        if r["id"] in by_id:
            errors.append(ContentError(path, 1, 1, "duplicate-id",
                                       f"duplicate id {r['id']!r} (also in {by_id[r['id']]})"))
        by_id.setdefault(r["id"], path)
        if r["url"] in by_url:
            errors.append(ContentError(path, 1, 1, "duplicate-slug",
                                       f"duplicate slug {r['slug']!r} in {r['contentType']} (also in {by_url[r['url']]})"))
        by_url.setdefault(r["url"], path)
        if r["author"] is not None and r["author"] not in site.authors:
            errors.append(ContentError(path, 1, 1, "unknown-author",
                                       f"unknown author {r['author']!r} (not in authors.yaml)"))
        if r["contentType"] not in site.types:
            errors.append(ContentError(path, 1, 1, "content-type",
                                       f"content type {r['contentType']!r} has no types/{r['contentType']}.yaml"))
    prev_live = {i: r["live"] for i, r in prev_records.items()}
    for r in records.values():
        r["live"] = is_live(r, as_of)
    live = {r["id"]: r for r in records.values() if r["live"]}
    if errors:
        raise BuildFailed(errors)
    stage("validate")

    # plan
    site_inputs = SiteInputs(
        config=site.config, types=site.types, authors=site.authors, records=live,
        template_fps=template_fps, assets={u: b for u, (b, _) in site.files.items()},
    )
    specs = plan_outputs(site_inputs)
    paths = {s.path for s in specs}
    for r in sorted(live.values(), key=lambda r: r["path"]):
        warnings.extend(f"{r['path']}: links to {target}, which is not live in this build"
                        for target in (r.get("links") or {}).values() if target not in paths)
        for line, col, link in r.get("siteLinks") or []:
            clean = link.split("#", 1)[0].split("?", 1)[0]
            if clean and clean not in paths and clean + "/" not in paths and clean != "/":
                errors.append(ContentError(r["path"], line, col, "broken-link",
                                           f"broken link {link!r}: no such page in this build"))
    if errors:
        raise BuildFailed(errors)
    if options.dry_run:
        return BuildResult(
            build_id="", previous_id=previous, rendered=0, reused=0, removed=0,
            outputs=len(specs), entries=len(records), live_entries=len(live), reparsed=len(metas),
            seconds=round(time.perf_counter() - started, 4), stages=stages, warnings=warnings,
        )
    manifest: dict[str, ManifestItem] = {}
    todo: list[int] = []
    for i, spec in enumerate(specs):
        old = prev_deps.get(spec.path)
        # the previous build is live (or kept), so gc has left its blobs in place
        if old is not None and old.fp == spec.fingerprint:
            if old.keys == spec.keys and old.type == spec.media_type:
                manifest[spec.path] = old  # the common case: nothing to build, not even a tuple
            else:
                manifest[spec.path] = ManifestItem(old.blob, spec.media_type, old.size, spec.keys, spec.fingerprint)
        else:
            todo.append(i)
    stage("plan")

    # render (bodies of reused entries are read from the blob store only when needed)
    need_bodies: set[str] = set()
    for i in todo:
        spec = specs[i]
        if spec.kind in ("entry", "entry_json"):
            need_bodies.add(spec.params["id"])
        elif spec.kind == "feed":
            need_bodies.update(spec.params["ids"])
    for entry_id in need_bodies:
        if live[entry_id]["bodyHtml"] is None:
            live[entry_id] = {**live[entry_id], "bodyHtml": store.read(live[entry_id]["bodyBlob"]).decode()}
    readers = {u: r for u, (_, r) in site.files.items()}
    renderer = Renderer(site.templates, config=site.config, types=site.types, authors=site.authors,
                        records=live, read_file=lambda url: readers[url](),
                        bytecode_cache=None if options.dry_run else _bytecode_cache(store))
    todo_specs = [specs[i] for i in todo]
    staging = store.new_staging()
    all_records = {r["id"]: r for r in records.values()}

    def write_build_index() -> None:
        """Runs in this process while the pool renders (it needs no rendered output)."""
        index_path = staging / "index.sqlite"
        if prev_index is not None:
            # records reused from the previous index are the same objects (and lack bodies)
            upserts = [r for i, r in all_records.items() if prev_records.get(i) is not r]
            deletes = [i for i in prev_records if i not in all_records]
            flips = {i: r["live"] for i, r in all_records.items()
                     if prev_records.get(i) is r and prev_live.get(i) != r["live"]}
            update_index(prev_index, index_path, upserts=upserts, deletes=deletes, authors=site.authors,
                         live=flips)
        else:
            write_index(index_path, all_records.values(), site.authors)

    _JOB.update(specs=todo_specs, renderer=renderer, store=store)
    try:
        rendered = _run_parallel(_render_chunk, len(todo_specs), workers,
                                 lambda done, total: progress("render", done, total) if progress else None,
                                 meanwhile=write_build_index)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _JOB.clear()
    for item in rendered:
        spec = todo_specs[item[0]]
        if len(item) == 4:
            errors.append(TemplateError(item[1], item[2], f"{item[3]} (rendering {spec.path})"))
            continue
        manifest[spec.path] = ManifestItem(item[1], spec.media_type, item[2], spec.keys, spec.fingerprint)
    if errors:
        shutil.rmtree(staging, ignore_errors=True)
        raise BuildFailed(errors[:50])
    stage("render+index")
    revision = source.revision
    info = {
        "id": "", "commit": revision.commit, "ref": options.ref, "created": time.time(),
        "as_of": as_of, "outputs": len(manifest), "bytes": sum(m.size for m in manifest.values()),
        "entries": len(all_records), "live_entries": len(live),
        "source_fp": source_fp, "stable_until": stable_until(all_records, as_of),
        "templates_fp": templates_fp, "template_fps": template_fps,
        "feeds": site.config.feeds_json(),  # the origin's Flowbox feed definitions (pipeline/origin/feed.py)
    }
    (staging / "build.json").write_bytes(canonical_json(info))
    store.write_state(staging, manifest, {
        i: r if r["bodyHtml"] is None and r["bodyText"] is None else {**r, "bodyHtml": None, "bodyText": None}
        for i, r in all_records.items()
    })
    build_id = store.commit_build(staging, manifest)
    stage("commit")
    removed = len(set(prev_deps) - paths)
    # the purge set against the previous build, from its manifest already in memory
    diff = diff_manifests(prev_deps, manifest, old_id=previous, new_id=build_id) if prev_deps else None
    return BuildResult(
        build_id=build_id, previous_id=previous, rendered=len(todo), reused=len(specs) - len(todo),
        removed=removed, outputs=len(specs), entries=len(all_records), live_entries=len(live),
        reparsed=reparsed, seconds=round(time.perf_counter() - started, 4), stages=stages,
        warnings=warnings, diff=diff,
    )
