"""Synthetic corpus for the build benchmark: one generator, two renderings (FlowCMS, Hugo).

``generate(n)`` makes ``n`` entries deterministically (``random.Random(seed)``): three
content types (blog ~60%, docs ~28%, changelog ~12%) with the schemas of
``docs/content.md``, a Zipf-ish tag distribution, a pool of authors, bodies of very
different lengths (log-normal number of blocks) mixing paragraphs, h2/h3 headings,
lists, fenced code, tables, block quotes, footnotes and internal links to other *live*
entries (by source file, relative or from the content root, as FlowCMS expects).
About 85% of entries are published; the rest are drafts, archived, or scheduled in
the future — none of which is live, in FlowCMS or in Hugo.

``write_flowcms`` writes the site as FlowCMS reads it (flowcms.toml, authors.yaml,
types/*.yaml, <type>/<slug>.md, and an override of the theme's entry.html under
templates/). ``write_hugo`` writes the same entries as a Hugo site (content/<section>/,
hugo.toml, data/authors.yaml, the bench theme). Only the standard library is used.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

AS_OF = "2026-06-01T00:00:00Z"  # the instant both generators' "live" is computed against
PAGE_SIZE = 10
FEED_SIZE = 20
HOME_TYPES = ("blog", "changelog")
THEME_DIR = Path(__file__).resolve().parent.parent / "site_templates"
HUGO_THEME_DIR = Path(__file__).resolve().parent / "hugo_theme"
FLOWCMS_STYLESHEET = Path(__file__).resolve().parent.parent / "site_templates" / "static" / "style.css"

TYPE_SCHEMAS = {
    "blog": (
        "title: Blog\n"
        "description: Long-form articles about building, caching and publishing.\n"
        "fields:\n"
        "  author: {required: true}\n"
        "  tags: {required: true}\n"
        "  category: {type: string, enum: [engineering, product, community]}\n"
        "  readingTime: {type: integer}\n"
        "  featured: {type: boolean}\n"
    ),
    "docs": (
        "title: Documentation\n"
        "description: Guides and reference material.\n"
        "fields:\n"
        "  order: {type: integer, required: true}\n"
        "  section: {type: string, enum: [getting-started, guides, reference]}\n"
    ),
    "changelog": (
        "title: Changelog\n"
        "description: Release notes for every version, newest first.\n"
        "fields:\n"
        "  version: {type: string, required: true}\n"
        "  breaking: {type: boolean}\n"
    ),
}
TYPE_TITLES = {"blog": "Blog", "docs": "Documentation", "changelog": "Changelog"}

WORDS = (  # noqa: SIM905 (a word list reads better as text)
    "build cache edge content entry publish render template commit branch merge index "
    "search token header request response origin proxy purge surrogate key latency "
    "throughput queue worker process thread memory disk blob hash manifest schema field "
    "author editor review draft release version deploy rollback preview listing feed "
    "sitemap page slug tag link anchor heading table image media asset style script "
    "the a an of to in for on with by from and or but not is are was were be been "
    "fast slow small large simple careful stable atomic incremental parallel lazy eager "
    "every each some many few most all none first last next previous new old "
    "we you they it this that these those our your their its "
    "run write read check measure compare reuse skip change keep drop move split join "
    "site team user reader writer server client browser network storage database file "
    "folder repository history diff patch conflict lock state snapshot graph node edge "
    "because when while after before until unless since although however therefore "
    "markdown yaml json html css http etag vary gzip brotli tls dns cdn api cli"
).split()
TECH = ("python", "rust", "go", "javascript", "typescript", "bash", "sql", "yaml", "json", "toml")
CATEGORIES = ("engineering", "product", "community")
DOC_SECTIONS = ("getting-started", "guides", "reference")
FIRST = ("Ada", "Linus", "Grace", "Ken", "Barbara", "Edsger", "Frances", "Donald", "Radia",
         "Margaret", "Alan", "Sophie", "Tim", "Hedy", "John", "Karen", "Niklaus", "Leslie")
LAST = ("Okafor", "Varga", "Lindqvist", "Matsuda", "Liskov", "Dijkstra", "Allen", "Knuth",
        "Perlman", "Hamilton", "Kay", "Wilson", "Berners", "Lamarr", "Backus", "Jones", "Wirth")


@dataclass(frozen=True, slots=True)
class Entry:
    ctype: str
    slug: str
    title: str
    status: str  # draft | published | archived
    tags: tuple[str, ...]
    author: str | None
    published_at: str | None
    updated_at: str | None
    publish_at: str | None  # scheduled (future) entries
    excerpt: str | None
    fields: dict[str, Any] = field(hash=False, compare=False)
    body: str = ""

    @property
    def path(self) -> str:
        return f"{self.ctype}/{self.slug}.md"

    @property
    def live(self) -> bool:
        return self.status == "published" and self.publish_at is None

    @property
    def date(self) -> str | None:
        return self.publish_at or self.published_at


@dataclass(slots=True)
class Corpus:
    n: int
    seed: int
    entries: list[Entry]
    authors: dict[str, dict[str, str]]
    tags: list[str]

    def stats(self) -> dict[str, Any]:
        by_type: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for e in self.entries:
            by_type[e.ctype] = by_type.get(e.ctype, 0) + 1
            key = "scheduled" if e.publish_at else e.status
            by_status[key] = by_status.get(key, 0) + 1
        words = sum(len(e.body.split()) for e in self.entries)
        return {"entries": len(self.entries), "live": sum(e.live for e in self.entries),
                "by_type": by_type, "by_status": by_status, "tags": len(self.tags),
                "authors": len(self.authors), "body_words": words,
                "body_bytes": sum(len(e.body.encode()) for e in self.entries)}


# -- generation ----------------------------------------------------------------------

def _iso(rng: random.Random, start_year: int = 2019, end_year: int = 2025) -> str:
    days = (end_year - start_year + 1) * 365
    d = rng.randrange(days)
    y, doy = start_year + d // 365, d % 365
    month, day = 1 + doy // 31 % 12, 1 + doy % 28
    return f"{y:04d}-{month:02d}-{day:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z"


def _sentence(rng: random.Random, lo: int = 6, hi: int = 22) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    for i in range(len(words)):
        r = rng.random()
        if r < 0.03:
            words[i] = f"*{words[i]}*"
        elif r < 0.05:
            words[i] = f"**{words[i]}**"
        elif r < 0.08:
            words[i] = f"`{words[i]}`"
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice(".....?!")


def _title(rng: random.Random, lo: int = 3, hi: int = 7) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize()


def _code_block(rng: random.Random) -> str:
    lang = rng.choice(TECH)
    lines = []
    for i in range(rng.randint(3, 25)):
        indent = "    " * rng.randint(0, 2)
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        lines.append(f"{indent}{a}_{i} = {b}({rng.randint(0, 999)}, \"{rng.choice(WORDS)}\")  # {rng.choice(WORDS)}")
    return f"```{lang}\n" + "\n".join(lines) + "\n```"


def _table(rng: random.Random) -> str:
    cols = rng.randint(2, 5)
    head = "| " + " | ".join(rng.choice(WORDS).capitalize() for _ in range(cols)) + " |"
    sep = "|" + "|".join(rng.choice(("---", ":---", "---:", ":---:")) for _ in range(cols)) + "|"
    rows = ["| " + " | ".join(
        (str(rng.randint(0, 10000)) if rng.random() < 0.4 else rng.choice(WORDS)) for _ in range(cols)
    ) + " |" for _ in range(rng.randint(2, 9))]
    return "\n".join([head, sep, *rows])


def _list(rng: random.Random) -> str:
    ordered = rng.random() < 0.35
    items = []
    for i in range(rng.randint(2, 8)):
        mark = f"{i + 1}." if ordered else "-"
        items.append(f"{mark} {_sentence(rng, 3, 12)}")
        if rng.random() < 0.15:
            items.append(f"   - {_sentence(rng, 3, 8)}")
    return "\n".join(items)


def _link_to(rng: random.Random, me: Entry | str, target: Entry) -> str:
    """A link by source file, relative to the linking entry or from the content root."""
    label = target.title.split(" ")[0:3]
    if rng.random() < 0.5:
        href = f"/{target.path}"
    else:
        my_type = me if isinstance(me, str) else me.ctype
        href = target.path[len(my_type) + 1:] if target.ctype == my_type else f"../{target.path}"
    return f"[{' '.join(label)}]({href})"


def _body(rng: random.Random, ctype: str, live_targets: list[Entry], blocks: int) -> str:
    out: list[str] = []
    footnotes = 0
    heading_no = 0
    for b in range(blocks):
        r = rng.random()
        if b > 0 and r < 0.14:
            heading_no += 1
            level = "##" if rng.random() < 0.7 else "###"
            out.append(f"{level} {_title(rng, 2, 5)} {heading_no}")
        elif r < 0.22:
            out.append(_code_block(rng))
        elif r < 0.28:
            out.append(_table(rng))
        elif r < 0.38:
            out.append(_list(rng))
        elif r < 0.42:
            out.append("> " + _sentence(rng) + " " + _sentence(rng))
        else:
            sents = [_sentence(rng) for _ in range(rng.randint(1, 6))]
            if live_targets and rng.random() < 0.25:
                sents.insert(rng.randrange(len(sents) + 1),
                             f"See {_link_to(rng, ctype, rng.choice(live_targets))} for more.")
            if rng.random() < 0.08:
                sents.append(f"Read [the {ctype} index](/{ctype}/) or [an external page](https://example.org/{rng.choice(WORDS)}).")
            if rng.random() < 0.05:
                footnotes += 1
                sents.append(f"[^{footnotes}]")
            out.append(" ".join(sents))
    out.extend(f"[^{i}]: {_sentence(rng, 4, 12)}" for i in range(1, footnotes + 1))
    return "\n\n".join(out) + "\n"


def generate(n: int, seed: int = 42) -> Corpus:
    """``n`` entries, deterministic for a given (n, seed)."""
    rng = random.Random(seed * 1_000_003 + n)
    n_authors = max(4, n // 200)
    authors: dict[str, dict[str, str]] = {}
    for i in range(n_authors):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST) + i) % len(LAST)]
        key = f"{first.lower()}-{i}"
        authors[key] = {
            "name": f"{first} {last}",
            "bio": _sentence(rng, 8, 20),
            "url": f"https://people.example/{key}/",
            "email": f"{key}@example.org",
        }
    author_keys = list(authors)
    n_tags = max(12, n // 25)
    tags = [f"{rng.choice(WORDS)}-{i}" for i in range(n_tags)]
    # Zipf-ish weights: a few tags are very common, most are rare.
    tag_weights = [1.0 / (i + 1) ** 0.9 for i in range(n_tags)]

    # first pass: metadata (so bodies can link to live entries)
    metas: list[Entry] = []
    counters = {"blog": 0, "docs": 0, "changelog": 0}
    for _ in range(n):
        r = rng.random()
        ctype = "blog" if r < 0.60 else "docs" if r < 0.88 else "changelog"
        counters[ctype] += 1
        k = counters[ctype]
        s = rng.random()
        status = "published" if s < 0.85 else "draft" if s < 0.95 else "archived"
        publish_at = None
        if status == "published" and rng.random() < 0.01:
            publish_at = f"{2031 + rng.randrange(3)}-0{1 + rng.randrange(9)}-15T08:00:00Z"
        published_at = _iso(rng) if status != "draft" and publish_at is None else None
        updated_at = None
        if published_at and rng.random() < 0.2:
            updated_at = published_at[:3] + str(min(9, int(published_at[3]) + 1)) + published_at[4:]
            updated_at = min(updated_at, "2025-12-31T00:00:00Z")
            updated_at = max(updated_at, published_at)
        ntags = rng.choice((1, 1, 2, 2, 2, 3, 3, 4, 5))
        etags = tuple(dict.fromkeys(rng.choices(tags, weights=tag_weights, k=ntags)))
        author = rng.choice(author_keys) if ctype != "docs" or rng.random() < 0.7 else None
        fields: dict[str, Any] = {}
        if ctype == "blog":
            title = _title(rng)
            slug = f"post-{k}-" + "-".join(title.lower().split()[:4])
            fields["category"] = rng.choice(CATEGORIES)
            if rng.random() < 0.5:
                fields["readingTime"] = rng.randint(1, 30)
            if rng.random() < 0.1:
                fields["featured"] = True
        elif ctype == "docs":
            title = _title(rng, 2, 5)
            slug = f"doc-{k}-" + "-".join(title.lower().split()[:3])
            fields["order"] = k
            fields["section"] = rng.choice(DOC_SECTIONS)
        else:
            version = f"{k // 100}.{k // 10 % 10}.{k % 10}"
            title = f"Release {version}"
            slug = "v" + version.replace(".", "-")
            fields["version"] = version
            if rng.random() < 0.1:
                fields["breaking"] = True
        excerpt = _sentence(rng, 8, 18).replace("*", "").replace("`", "") if rng.random() < 0.3 else None
        metas.append(Entry(ctype=ctype, slug=slug, title=title, status=status, tags=etags,
                           author=author, published_at=published_at, updated_at=updated_at,
                           publish_at=publish_at, excerpt=excerpt, fields=fields))

    live = [e for e in metas if e.live]
    entries = []
    for e in metas:
        # log-normal block count: median ~9 blocks, long tail to ~120
        blocks = max(1, min(120, int(math.exp(rng.gauss(2.2, 0.8)))))
        entries.append(replace(e, body=_body(rng, e.ctype, live, blocks)))
    return Corpus(n=n, seed=seed, entries=entries, authors=authors, tags=tags)


# -- FlowCMS rendering -----------------------------------------------------------------

def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def flowcms_text(e: Entry) -> str:
    fm = [f"title: {_q(e.title)}", f"slug: {e.slug}", f"status: {e.status}",
          f"tags: [{', '.join(e.tags)}]"]
    if e.author:
        fm.append(f"author: {e.author}")
    if e.published_at:
        fm.append(f"publishedAt: {e.published_at}")
    if e.updated_at:
        fm.append(f"updatedAt: {e.updated_at}")
    if e.publish_at:
        fm.append(f"publishAt: {e.publish_at}")
    if e.excerpt:
        fm.append(f"excerpt: {_q(e.excerpt)}")
    for k, v in e.fields.items():
        fm.append(f"{k}: {_q(v) if isinstance(v, str) else json.dumps(v)}")
    return "---\n" + "\n".join(fm) + "\n---\n" + e.body


def flowcms_config(c: Corpus) -> str:
    return (
        "[site]\n"
        f'title = "Bench site ({c.n} entries)"\n'
        'description = "A synthetic corpus for the FlowCMS build benchmark."\n'
        'base_url = "https://bench.example"\n'
        'language = "en"\n'
        f"page_size = {PAGE_SIZE}\n"
        f"home_types = {json.dumps(list(HOME_TYPES))}\n\n"
        '[[site.nav]]\ntitle = "Blog"\nurl = "/blog/"\n\n'
        '[[site.nav]]\ntitle = "Docs"\nurl = "/docs/"\n\n'
        '[[site.nav]]\ntitle = "Changelog"\nurl = "/changelog/"\n\n'
        '[[site.nav]]\ntitle = "Tags"\nurl = "/tags/"\n\n'
        '[build]\nbranch = "main"\n'
    )


def authors_yaml(c: Corpus) -> str:
    lines = []
    for key, a in c.authors.items():
        lines.append(f"{key}:")
        lines.extend(f"  {k}: {_q(v)}" for k, v in a.items())
    return "\n".join(lines) + "\n"


TEMPLATE_EDIT_FROM = "</article>"


def edited_template(text: str, mark: str) -> str:
    """The template with one line changed (an HTML comment before the article's end)."""
    if TEMPLATE_EDIT_FROM in text:
        return text.replace(TEMPLATE_EDIT_FROM, f"<!-- {mark} -->\n{TEMPLATE_EDIT_FROM}", 1)
    return text + f"\n<!-- {mark} -->\n"


def write_flowcms(c: Corpus, root: Path) -> None:
    """The site as FlowCMS reads it (the caller commits it)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / ".gitignore").write_text(".flowcms/\n")
    (root / "flowcms.toml").write_text(flowcms_config(c))
    (root / "authors.yaml").write_text(authors_yaml(c))
    (root / "types").mkdir(exist_ok=True)
    for name, text in TYPE_SCHEMAS.items():
        (root / "types" / f"{name}.yaml").write_text(text)
    (root / "templates").mkdir(exist_ok=True)
    # the site overrides one theme template (unchanged here; the template-edit scenario edits it)
    shutil.copyfile(THEME_DIR / "entry.html", root / "templates" / "entry.html")
    for ctype in TYPE_SCHEMAS:
        (root / ctype).mkdir(exist_ok=True)
    for e in c.entries:
        (root / e.path).write_text(flowcms_text(e))


# -- Hugo rendering ----------------------------------------------------------------------

def _hugo_version_tuple(version: str | None) -> tuple[int, int]:
    if not version:
        return (0, 111)
    import re

    m = re.search(r"v?(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 111)


def hugo_text(e: Entry) -> str:
    date = e.date
    fm = [f"title: {_q(e.title)}", f"slug: {e.slug}",
          f"draft: {'false' if e.status == 'published' else 'true'}",
          f"tags: [{', '.join(e.tags)}]"]
    if date:
        fm.append(f"date: {date}")
    if e.updated_at:
        fm.append(f"lastmod: {e.updated_at}")
    if e.author:
        fm.append(f"author: {e.author}")
        fm.append(f"authors: [{e.author}]")
    if e.excerpt:
        fm.append(f"description: {_q(e.excerpt)}")
    if e.ctype == "docs":
        fm.append(f"weight: {e.fields['order']}")
    for k, v in e.fields.items():
        fm.append(f"{k}: {_q(v) if isinstance(v, str) else json.dumps(v)}")
    return "---\n" + "\n".join(fm) + "\n---\n" + e.body


def hugo_config(c: Corpus, version: str | None) -> str:
    major_minor = _hugo_version_tuple(version)
    if major_minor >= (0, 128):
        paging = f"[pagination]\npagerSize = {PAGE_SIZE}\npath = \"page\"\n"
    else:
        paging = f"paginate = {PAGE_SIZE}\npaginatePath = \"page\"\n"
    rss = f"[services.rss]\nlimit = {FEED_SIZE}\n" if major_minor >= (0, 114) else ""
    rss_top = f"rssLimit = {FEED_SIZE}\n" if major_minor < (0, 114) else ""
    return (
        'baseURL = "https://bench.example/"\n'
        'languageCode = "en"\n'
        f'title = "Bench site ({c.n} entries)"\n'
        'theme = "bench"\n'
        "enableRobotsTXT = true\n"
        "disableHugoGeneratorInject = true\n"
        f"{rss_top}"
        f"{paging}"
        "[params]\n"
        'description = "A synthetic corpus for the FlowCMS build benchmark."\n'
        f"mainSections = {json.dumps(list(HOME_TYPES))}\n"
        "[taxonomies]\n"
        'tag = "tags"\n'
        'author = "authors"\n'
        "[outputs]\n"
        'home = ["HTML", "RSS", "JSON"]\n'
        'section = ["HTML", "RSS", "JSON"]\n'
        'taxonomy = ["HTML", "JSON"]\n'
        'term = ["HTML", "JSON"]\n'
        'page = ["HTML", "JSON"]\n'
        f"{rss}"
        "[markup.goldmark.renderer]\n"
        "unsafe = true\n"
        "[markup.highlight]\n"
        "codeFences = false\n"  # FlowCMS does not highlight code either
        "[markup.tableOfContents]\n"
        "startLevel = 2\n"
        "endLevel = 3\n"
        "[[menu.main]]\nname = \"Blog\"\nurl = \"/blog/\"\nweight = 1\n"
        "[[menu.main]]\nname = \"Docs\"\nurl = \"/docs/\"\nweight = 2\n"
        "[[menu.main]]\nname = \"Changelog\"\nurl = \"/changelog/\"\nweight = 3\n"
        "[[menu.main]]\nname = \"Tags\"\nurl = \"/tags/\"\nweight = 4\n"
    )


def hugo_entry_path(root: Path, e: Entry) -> Path:
    return root / "content" / e.ctype / f"{e.slug}.md"


HUGO_SINGLE = Path("layouts/_default/single.html")  # the template the site overrides


def write_hugo(c: Corpus, root: Path, hugo_version: str | None = None) -> None:
    """The same corpus as a Hugo site with the bench theme copied under themes/bench."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hugo.toml").write_text(hugo_config(c, hugo_version))
    theme = root / "themes" / "bench"
    if theme.exists():
        shutil.rmtree(theme)
    shutil.copytree(HUGO_THEME_DIR, theme)
    # the same stylesheet as the FlowCMS theme, copied rather than kept twice in the repo
    (theme / "static").mkdir(exist_ok=True)
    shutil.copyfile(FLOWCMS_STYLESHEET, theme / "static" / "style.css")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "authors.yaml").write_text(authors_yaml(c))
    # the site overrides the theme's entry template, as the FlowCMS corpus does
    (root / HUGO_SINGLE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HUGO_THEME_DIR / HUGO_SINGLE, root / HUGO_SINGLE)
    for ctype in TYPE_SCHEMAS:
        d = root / "content" / ctype
        d.mkdir(parents=True, exist_ok=True)
        (d / "_index.md").write_text(
            f"---\ntitle: {_q(TYPE_TITLES[ctype])}\ndescription: "
            f"{_q(TYPE_SCHEMAS[ctype].splitlines()[1].split(': ', 1)[1])}\n---\n")
    for e in c.entries:
        hugo_entry_path(root, e).write_text(hugo_text(e))
