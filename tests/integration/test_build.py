"""Builds of real sites (git repositories in tmp_path): outputs, determinism, incremental reuse."""

from __future__ import annotations

import json
import marshal
from pathlib import Path

import pytest
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.build import PARALLEL_THRESHOLD, BuildOptions, build_site
from pipeline.errors import BuildFailed, ContentError, StoreError, TemplateError
from pipeline.index import body_blobs, open_index
from pipeline.markdown_fast import ENGINE_ENV
from pipeline.publish import diff_builds, publish, purge_set
from pipeline.source import DirSource, GitSource
from pipeline.store import MANIFESTS_KEPT, STATE_FILE, STATE_VERSION, Store

AS_OF = "2026-06-01T00:00:00Z"


def build(site: Path, store: Store, *, full: bool = False, ref: str = "main", previous: str | None = None,
          as_of: str = AS_OF, workers: int = 1):  # type: ignore[no-untyped-def]
    return build_site(GitSource(site, ref), store, previous=previous,
                      options=BuildOptions(full=full, as_of=as_of, workers=workers))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path / "site")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


def test_build_writes_every_page_kind(site: Path, store: Store) -> None:
    """Entries, listings (paginated), tags, authors, feeds, sitemap, 404, JSON twins, media, assets."""
    result = build(site, store)
    manifest = store.manifest(result.build_id)
    for path in ["/", "/page/2/", "/blog/first-post/", "/blog/first-post/index.json", "/blog/",
                 "/blog/page/2/", "/docs/start-here/", "/tags/", "/tags/news/", "/tags/intro/index.json",
                 "/authors/ada/", "/authors/bob/", "/feed.xml", "/blog/feed.xml", "/sitemap.xml",
                 "/404.html", "/robots.txt", "/media/logo.svg", "/assets/style.css", "/index.json"]:
        assert path in manifest, path
    assert "/blog/not-yet/" not in manifest  # drafts are not in the live build
    page = store.read(manifest["/blog/first-post/"].blob).decode()
    assert "<em>world</em>" in page
    assert 'href="/docs/start-here/"' in page  # source link rewritten to the entry's URL
    doc = json.loads(store.read(manifest["/blog/first-post/index.json"].blob))
    assert doc["data"]["attributes"]["publishedAt"] == "2026-01-01T10:00:00Z"
    assert doc["included"][0]["attributes"]["name"] == "Ada Lovelace"
    item = manifest["/blog/first-post/"]
    assert item.type == "text/html; charset=utf-8"
    assert item.size == len(store.read(item.blob))
    assert {"type:blog", "author:ada", "tag:intro", "tag:news"} <= set(item.keys)
    assert doc["data"]["id"] in item.keys


def test_build_is_byte_identical_for_the_same_commit(site: Path, tmp_path: Path) -> None:
    """Two full builds of one commit in two stores give the same manifest and build id."""
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    ra, rb = build(site, a, full=True), build(site, b, full=True, workers=2)
    assert ra.build_id == rb.build_id
    assert (a.build_dir(ra.build_id) / "manifest.json").read_bytes() == (
        b.build_dir(rb.build_id) / "manifest.json").read_bytes()


def test_both_markdown_engines_build_the_sample_site_identically(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """markdown-it.rs is an accelerator, not a second dialect: the same blobs, the same build id."""
    content = Path(__file__).resolve().parents[2] / "content"
    ids = {}
    for engine in ("python", "rust"):
        monkeypatch.setenv(ENGINE_ENV, engine)
        result = build_site(DirSource(content), Store(tmp_path / engine), previous=None,
                            options=BuildOptions(full=True, as_of=AS_OF, workers=1))
        ids[engine] = result.build_id
    assert ids["python"] == ids["rust"]


def test_blobs_are_stored_once(site: Path, store: Store) -> None:
    first = build(site, store)
    before = sum(1 for _ in store.blobs.rglob("*") if _.is_file())
    write_files(site, {"blog/third.md": TINY_SITE["blog/third.md"].replace("Body three.", "Body 3.")})
    git_commit(site)
    second = build(site, store, previous=first.build_id)
    after = sum(1 for _ in store.blobs.rglob("*") if _.is_file())
    assert second.rendered < 6
    assert second.reparsed == 1
    # new blobs: the re-rendered outputs plus the edited entry's body HTML, nothing else
    assert after - before <= second.rendered + second.reparsed


def test_a_parsed_manifest_is_shared_for_the_last_builds(site: Path, store: Store, tmp_path: Path) -> None:
    """Store.manifest parses a build's manifest once and keeps the last MANIFESTS_KEPT; a fresh
    Store (another process) reads the same file and gets an equal mapping."""
    first = build(site, store)
    assert store.manifest(first.build_id) is store.manifest(first.build_id)
    ids = [first.build_id]
    for i in range(MANIFESTS_KEPT):
        write_files(site, {"blog/third.md": TINY_SITE["blog/third.md"].replace("Body three.", f"Body {i}.")})
        git_commit(site)
        ids.append(build(site, store, previous=ids[-1]).build_id)
    kept = {i: store.manifest(i) for i in ids[-MANIFESTS_KEPT:]}
    assert all(store.manifest(i) is m for i, m in kept.items())
    oldest = store.manifest(ids[0])  # evicted meanwhile: parsed again, equal to the file
    assert oldest == Store(tmp_path / "state").manifest(ids[0])
    with pytest.raises(StoreError, match="has no manifest"):
        store.manifest("0" * 20)


def test_noop_rebuild_renders_nothing(site: Path, store: Store) -> None:
    first = build(site, store)
    again = build(site, store, previous=first.build_id)
    assert again.rendered == 0
    assert again.reparsed == 0
    assert again.build_id == first.build_id


def test_body_edit_rerenders_only_that_entry(site: Path, store: Store) -> None:
    """A body edit that keeps the excerpt touches the entry page, its JSON and feeds only."""
    first = build(site, store)
    write_files(site, {"blog/third.md": TINY_SITE["blog/third.md"].replace("Body three.", "Body three, longer.")})
    git_commit(site)
    second = build(site, store, previous=first.build_id)
    d = diff_builds(store, first.build_id, second.build_id)
    assert set(d.changed) == {"/blog/third-post/", "/blog/third-post/index.json", "/feed.xml", "/blog/feed.xml"}
    assert second.rendered == 4
    assert second.reparsed == 1


def test_tag_rename_rerenders_what_shows_the_tag(site: Path, store: Store) -> None:
    first = build(site, store)
    write_files(site, {"blog/third.md": TINY_SITE["blog/third.md"].replace("tags: [intro]", "tags: [welcome]")})
    git_commit(site)
    second = build(site, store, previous=first.build_id)
    d = diff_builds(store, first.build_id, second.build_id)
    assert "/tags/welcome/" in d.added
    assert "/tags/intro/" in d.changed
    assert "/tags/" in d.changed
    assert "/blog/first-post/" not in d.changed
    assert "tag:welcome" in d.keys
    assert "tag:intro" in d.keys


def test_template_edit_rerenders_exactly_its_pages(site: Path, store: Store) -> None:
    """A site override of tags.html re-renders /tags/ and nothing else."""
    first = build(site, store)
    theme = (Path(__file__).resolve().parents[2] / "site_templates" / "tags.html").read_text()
    write_files(site, {"templates/tags.html": theme.replace(">Tags</h1>", ">All the tags</h1>")})
    git_commit(site)
    second = build(site, store, previous=first.build_id)
    d = diff_builds(store, first.build_id, second.build_id)
    assert d.changed == ("/tags/",)
    assert second.rendered == 1


def test_config_change_rerenders_pages_not_json(site: Path, store: Store) -> None:
    first = build(site, store)
    write_files(site, {"flowcms.toml": TINY_SITE["flowcms.toml"].replace('"Tiny"', '"Tinier"')})
    git_commit(site)
    second = build(site, store, previous=first.build_id)
    d = diff_builds(store, first.build_id, second.build_id)
    assert "/blog/first-post/" in d.changed
    assert "/blog/first-post/index.json" not in d.changed
    assert "/media/logo.svg" not in d.changed


def test_a_new_base_url_reaches_pages_whose_templates_are_cached(site: Path, store: Store) -> None:
    """Compiled templates are kept between builds; what a filter computes from the config
    (``absolute``) must still follow the config, not the build that compiled them."""
    first = build(site, store)
    assert "https://tiny.example/tags/" in store.read(store.manifest(first.build_id)["/feed.xml"].blob).decode()
    assert any((store.root / "cache" / "jinja").rglob("*.cache"))
    write_files(site, {"flowcms.toml": TINY_SITE["flowcms.toml"].replace("tiny.example", "new.example")})
    git_commit(site)
    second = build(site, store, previous=first.build_id)
    feed = store.read(store.manifest(second.build_id)["/feed.xml"].blob).decode()
    assert "https://new.example/tags/" in feed
    assert "tiny.example" not in feed


def test_incremental_equals_full(site: Path, store: Store, tmp_path: Path) -> None:
    first = build(site, store)
    write_files(site, {"blog/first.md": None, "docs/start.md": TINY_SITE["docs/start.md"].replace(
        "Back to [the post](/blog/first.md).", "Alone."), "blog/fourth.md":
        "---\ntitle: Fourth\nstatus: published\nauthor: bob\npublishedAt: 2026-04-01T00:00:00Z\n---\nx\n"})
    git_commit(site)
    inc = build(site, store, previous=first.build_id)
    full = build(site, Store(tmp_path / "other"), full=True)
    assert inc.build_id == full.build_id


@pytest.mark.parametrize("damage", ["torn", "missing", "other-version"])
def test_a_damaged_state_cache_is_rebuilt_from_the_build(site: Path, store: Store, tmp_path: Path,
                                                        damage: str) -> None:
    first = build(site, store)
    cache = store.build_dir(first.build_id) / STATE_FILE
    assert store.load_state(first.build_id) is not None
    if damage == "torn":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    elif damage == "missing":
        cache.unlink()
    else:
        cache.write_bytes(marshal.dumps((STATE_VERSION + 1, {}, {})))
    assert store.load_state(first.build_id) is None
    write_files(site, {"blog/first.md": TINY_SITE["blog/first.md"] + "\nOne more line.\n"})
    git_commit(site)
    inc = build(site, store, previous=first.build_id)
    assert 0 < inc.rendered < inc.outputs  # still incremental: reused the build itself
    full = build(site, Store(tmp_path / "other"), full=True)
    assert inc.build_id == full.build_id
    assert store.load_state(inc.build_id) is not None  # the new build has its cache again


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_that_is_not_utf8_is_reported_with_its_position(site: Path, store: Store, workers: int) -> None:
    """The workers read the files themselves (through their own repository handle): a bad byte
    still comes back as path:line:column, with every other problem of the run. Enough entries
    that ``workers=2`` takes the process pool."""
    many = {f"blog/filler-{i:03d}.md": f"---\ntitle: Filler {i}\nauthor: ada\n---\nBody {i}.\n"
            for i in range(PARALLEL_THRESHOLD)}
    write_files(site, {**many, "blog/latin1.md": b"---\ntitle: Caf\xe9\n---\n",
                       "blog/noauthor.md": "---\ntitle: Nobody\nauthor: zed\n---\n"})
    git_commit(site)
    with pytest.raises(BuildFailed) as info:
        build(site, store, workers=workers)
    lines = [str(e) for e in info.value.errors]
    assert "blog/latin1.md:2:11: file is not UTF-8 (byte 0xe9); save it as UTF-8" in lines
    assert "blog/noauthor.md:3:1: unknown author 'zed' (not in authors.yaml)" in lines


def test_every_problem_is_reported_and_nothing_is_written(site: Path, store: Store) -> None:
    """Bad YAML, unknown field, wrong type, unknown author, duplicate slug, broken link: one run."""
    first = build(site, store)
    publish(store, first.build_id)
    write_files(site, {
        "blog/bad-yaml.md": "---\ntitle: [unclosed\n---\n",
        "blog/unknown.md": "---\ntitle: Unknown\nauthor: ada\nflavour: x\n---\n",
        "blog/wrongtype.md": "---\ntitle: Wrong\nauthor: ada\nmood: angry\n---\n",
        "blog/noauthor.md": "---\ntitle: Nobody\nauthor: zed\n---\n",
        "blog/dup.md": "---\ntitle: First Post\nauthor: ada\n---\n",
        "blog/links.md": "---\ntitle: Links\nauthor: ada\n---\nText\n\n[x](../docs/nope.md)\n",
    })
    git_commit(site)
    builds_before = sorted(p.name for p in store.builds.iterdir())
    with pytest.raises(BuildFailed) as info:
        build(site, store, previous=first.build_id)
    lines = [str(e) for e in info.value.errors]
    assert any(line.startswith("blog/bad-yaml.md:3:") and "flow sequence at line 2" in line for line in lines)
    assert "blog/unknown.md:4:1: unknown field 'flavour'" in " ".join(lines)
    assert any(line.startswith("blog/wrongtype.md:4:1: mood: 'angry' is not one of") for line in lines)
    assert "blog/noauthor.md:3:1: unknown author 'zed' (not in authors.yaml)" in lines
    assert any("duplicate slug 'first-post'" in line and line.startswith("blog/first.md") for line in lines)
    assert "blog/links.md:7:5: broken link '../docs/nope.md': no entry docs/nope.md" in lines
    assert lines == sorted(lines, key=lambda s: (s.split(":")[0], int(s.split(":")[1])))
    assert all(isinstance(e, ContentError) for e in info.value.errors)
    assert sorted(p.name for p in store.builds.iterdir()) == builds_before
    assert store.live() == first.build_id


def test_broken_site_link_is_an_error(site: Path, store: Store) -> None:
    write_files(site, {"blog/third.md": TINY_SITE["blog/third.md"] + "\nSee [tags](/tags/nothing-here/).\n"})
    git_commit(site)
    with pytest.raises(BuildFailed) as info:
        build(site, store)
    assert [str(e) for e in info.value.errors] == [
        "blog/third.md:11:12: broken link '/tags/nothing-here/': no such page in this build"]


def test_template_error_names_file_and_line(site: Path, store: Store) -> None:
    write_files(site, {"templates/tags.html": "{% extends 'base.html' %}\n{% block content %}\n{{ nope.x }}\n{% endblock %}\n"})
    git_commit(site)
    with pytest.raises(BuildFailed) as info:
        build(site, store)
    (error,) = info.value.errors
    assert isinstance(error, TemplateError)
    assert error.template == "templates/tags.html"
    assert error.line == 3
    write_files(site, {"templates/tags.html": "{% if %}\n"})
    git_commit(site)
    with pytest.raises(BuildFailed) as info:
        build(site, store)
    assert str(info.value.errors[0]).startswith("templates/tags.html:1:")


def test_scheduled_entry_is_live_only_after_its_time(site: Path, store: Store) -> None:
    write_files(site, {"blog/later.md": "---\ntitle: Later\nstatus: published\nauthor: ada\n"
                                        "publishAt: 2026-07-01T00:00:00Z\n---\nSoon.\n"})
    git_commit(site)
    before = build(site, store, as_of="2026-06-30T23:59:59Z")
    after = build(site, store, as_of="2026-07-01T00:00:00Z", previous=before.build_id)
    assert "/blog/later/" not in store.manifest(before.build_id)
    assert "/blog/later/" in store.manifest(after.build_id)


def test_git_source_builds_any_ref(site: Path, store: Store) -> None:
    """Branch, tag and commit id all build; a directory gives the same blob ids as git."""
    import pygit2

    repo = pygit2.Repository(str(site))
    first_commit = str(repo.head.target)
    repo.references.create("refs/tags/v1", repo.head.target)
    write_files(site, {"blog/third.md": None})
    git_commit(site)
    by_tag = build(site, store, ref="v1", full=True)
    by_commit = build(site, store, ref=first_commit, full=True)
    by_branch = build(site, store, ref="main", full=True)
    assert by_tag.build_id == by_commit.build_id != by_branch.build_id
    assert DirSource(site).tree() == GitSource(site, "main").tree()


def test_build_diff_equals_manifest_diff(site: Path, store: Store) -> None:
    """The purge set a build computes from its deps equals the diff of the two manifests."""
    first = build(site, store)
    write_files(site, {"blog/second.md": None, "blog/third.md": TINY_SITE["blog/third.md"].replace(
        "tags: [intro]", "tags: [intro, later]")})
    git_commit(site)
    second = build(site, store, previous=first.build_id)
    assert second.diff is not None
    assert second.diff == diff_builds(store, first.build_id, second.build_id)
    assert second.diff.removed
    assert second.diff.changed
    assert second.diff.added


def test_parallel_build_equals_serial(tmp_path: Path) -> None:
    """The sample site (more outputs than the pool threshold) renders the same across processes."""
    from support.sites import copy_sample

    site = copy_sample(tmp_path / "sample")
    serial = build(site, Store(tmp_path / "a"), full=True, workers=1, as_of="2026-11-20T00:00:00Z")
    parallel = build(site, Store(tmp_path / "b"), full=True, workers=2, as_of="2026-11-20T00:00:00Z")
    assert serial.rendered > 128
    assert serial.build_id == parallel.build_id


def test_duplicate_id_is_reported_with_both_files(site: Path, store: Store) -> None:
    write_files(site, {"blog/a.md": "---\nid: same\ntitle: A\nauthor: ada\n---\n",
                       "blog/b.md": "---\nid: same\ntitle: B\nauthor: ada\n---\n"})
    git_commit(site)
    with pytest.raises(BuildFailed) as info:
        build(site, store)
    assert [str(e) for e in info.value.errors] == ["blog/b.md:1:1: duplicate id 'same' (also in blog/a.md)"]


def test_feeds_and_sitemap_are_valid_xml(site: Path, store: Store) -> None:
    import xml.etree.ElementTree as ET

    manifest = store.manifest(build(site, store).build_id)
    atom = ET.fromstring(store.read(manifest["/feed.xml"].blob))
    ns = {"a": "http://www.w3.org/2005/Atom"}
    titles = [e.findtext("a:title", namespaces=ns) for e in atom.findall("a:entry", ns)]
    assert titles == ["Third Post", "Second Post", "First Post", "Start Here"]
    assert atom.findtext("a:updated", namespaces=ns) == "2026-03-01T10:00:00Z"
    content = atom.find("a:entry/a:content", ns)
    assert content is not None
    assert "<p>Body three.</p>" in (content.text or "")
    sitemap = ET.fromstring(store.read(manifest["/sitemap.xml"].blob))
    locs = [u.findtext("{http://www.sitemaps.org/schemas/sitemap/0.9}loc") for u in sitemap]
    assert "https://tiny.example/blog/first-post/" in locs
    assert all(loc and loc.startswith("https://tiny.example/") for loc in locs)


def test_gc_keeps_live_and_newest_and_drops_unreferenced_blobs(site: Path, store: Store) -> None:
    ids = []
    for n in range(3):
        write_files(site, {"blog/third.md": TINY_SITE["blog/third.md"].replace("Body three.", f"Body {n}.")})
        git_commit(site)
        ids.append(build(site, store, previous=ids[-1] if ids else None).build_id)
    publish(store, ids[0])
    removed_builds, removed_blobs = store.gc(keep=1)
    assert removed_builds == 1
    assert removed_blobs > 0
    assert {b.id for b in store.list_builds()} == {ids[0], ids[2]}
    for build_id in (ids[0], ids[2]):
        for item in store.manifest(build_id).values():
            assert store.has(item.blob)
        conn = open_index(store.build_dir(build_id) / "index.sqlite")
        try:
            assert all(store.has(blob) for blob in body_blobs(conn))  # entry bodies live in blobs too
        finally:
            conn.close()
    # every entry page re-renders from the kept body blobs after gc
    write_files(site, {"templates/entry.html": "{% extends 'base.html' %}{% block content %}"
                                               "<main>{{ entry.body_html | safe }}</main>{% endblock %}\n"})
    git_commit(site)
    after = build(site, store, previous=ids[2])
    assert after.reparsed == 0
    page = store.read(store.manifest(after.build_id)["/blog/third-post/"].blob).decode()
    assert "<main><p>Body 2.</p>" in page


def test_gc_refuses_when_a_kept_index_is_unreadable(site: Path, store: Store) -> None:
    first = build(site, store)
    (store.build_dir(first.build_id) / "index.sqlite").write_bytes(b"not sqlite")
    blobs = sum(1 for _ in store.blobs.rglob("*") if _.is_file())
    with pytest.raises(StoreError, match="gc stopped, nothing removed"):
        store.gc(keep=1)
    assert sum(1 for _ in store.blobs.rglob("*") if _.is_file()) == blobs


def test_a_feed_definition_change_purges_that_feeds_api_answers(site: Path, store: Store) -> None:
    config = TINY_SITE["flowcms.toml"] + '\n[feeds.news]\ntitle = "News"\ntag = "news"\n'
    write_files(site, {"flowcms.toml": config})
    git_commit(site)
    first = build(site, store)
    item = store.manifest(first.build_id)["/public/feeds.json"]
    assert "api:feed:news" in item.keys
    write_files(site, {"flowcms.toml": config.replace('tag = "news"', 'tag = "intro"')})
    git_commit(site)
    second = build(site, store, previous=first.build_id)
    diff = diff_builds(store, first.build_id, second.build_id)
    assert diff.changed == ("/public/feeds.json",)  # no page changed
    assert purge_set(diff).keys == ("api:feed:news",)


def test_render_workers_start_with_default_signal_handling(tmp_path: Path) -> None:
    """A server that catches SIGTERM (trio, hypercorn) forks the render pool: its workers must
    not inherit the handler, or Pool.terminate's SIGTERM does not stop a worker blocked on the
    task queue and the pool's exit hangs (seen once in the suite; timing-dependent)."""
    import subprocess
    import sys

    script = (
        "import signal\n"
        "signal.signal(signal.SIGTERM, lambda *_: None)  # as a server under trio would\n"
        "signal.signal(signal.SIGINT, lambda *_: None)\n"
        "from pipeline.build import PARALLEL_THRESHOLD, _run_parallel\n"
        "def dispositions(indices):\n"
        "    return [(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,\n"
        "             signal.getsignal(signal.SIGINT) == signal.SIG_DFL) for _ in indices]\n"
        "seen = _run_parallel(dispositions, PARALLEL_THRESHOLD, 2)\n"
        "print(len(seen), all(term and intr for term, intr in seen))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, check=True, text=True,
                          cwd=tmp_path)
    assert done.stdout.split() == ["128", "True"]
