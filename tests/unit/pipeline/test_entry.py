from __future__ import annotations

from pipeline.entry import default_id, is_live, parse_entry, slugify
from pipeline.schema import ContentType, FieldSpec

TYPES = {
    "blog": ContentType(name="blog", title="Blog", fields={
        "author": FieldSpec(type="string", required=True),
        "mood": FieldSpec(type="string", enum=("happy", "sad")),
        "rating": FieldSpec(type="integer"),
    }),
}
AUTHORS = {"ada": {"name": "Ada"}}


def parse(text: str, path: str = "blog/hello-world.md"):  # type: ignore[no-untyped-def]
    return parse_entry(path, "blob1", text, TYPES, AUTHORS)


def test_slugify_folds_accents_and_punctuation() -> None:
    assert slugify("Héllo, World: 2.0!") == "hello-world-2-0"
    assert slugify("???") == "entry"


def test_entry_defaults_id_slug_type() -> None:
    """id from the path (stable), slug from the title, contentType from the folder."""
    meta, errors = parse("---\ntitle: Hello World\nauthor: ada\n---\nbody\n")
    assert errors == []
    assert meta is not None
    assert meta.id == default_id("blog/hello-world.md") == default_id("blog/hello-world.md")
    assert meta.id.startswith("cnt_")
    assert meta.slug == "hello-world"
    assert meta.content_type == "blog"
    assert meta.status == "draft"
    assert meta.url == "/blog/hello-world/"


def test_entry_dates_normalised_to_utc_z() -> None:
    meta, errors = parse("---\ntitle: T\nauthor: ada\nstatus: published\n"
                         "publishedAt: 2026-11-02T10:30:00+01:00\nupdatedAt: 2026-11-03\n---\n")
    assert errors == []
    assert meta is not None
    assert meta.published_at == "2026-11-02T09:30:00Z"
    assert meta.updated_at == "2026-11-03T00:00:00Z"


def test_entry_reports_every_problem_with_lines() -> None:
    """Unknown field, wrong type, enum, unknown author and missing required field, all at once."""
    text = ("---\ntitle: T\nauthor: zed\nmood: angry\nrating: lots\ncolour: red\nstatus: live\n---\n")
    _, errors = parse(text)
    rendered = sorted(str(e) for e in errors)
    assert "blog/hello-world.md:3:1: unknown author 'zed' (not in authors.yaml)" in rendered
    assert any(r.startswith("blog/hello-world.md:4:1: mood: 'angry' is not one of: happy, sad") for r in rendered)
    assert any(r.startswith("blog/hello-world.md:5:1: rating: must be an integer") for r in rendered)
    assert any(r.startswith("blog/hello-world.md:6:1: unknown field 'colour'") for r in rendered)
    assert any(r.startswith("blog/hello-world.md:7:1: status: 'live' is not one of") for r in rendered)


def test_entry_missing_required_and_title() -> None:
    _, errors = parse("---\nstatus: draft\n---\n")
    messages = {e.message for e in errors}
    assert "missing required field 'title'" in messages
    assert "missing required field 'author' (blog)" in messages


def test_entry_published_needs_a_date() -> None:
    _, errors = parse("---\ntitle: T\nauthor: ada\nstatus: published\n---\n")
    assert [e.code for e in errors] == ["required"]


def test_entry_folder_without_type_is_an_error() -> None:
    meta, errors = parse_entry("notes/a.md", "b", "---\ntitle: x\n---\n", TYPES, AUTHORS)
    assert meta is None
    assert "add types/notes.yaml" in errors[0].message


def test_entry_content_type_must_match_folder() -> None:
    _, errors = parse("---\ntitle: T\nauthor: ada\ncontentType: docs\n---\n")
    assert errors[0].message == "contentType 'docs' does not match its folder 'blog'"


def test_is_live_respects_status_and_schedule() -> None:
    base = {"status": "published", "publishedAt": "2026-01-01T00:00:00Z",
            "publishAt": None, "unpublishAt": None}
    now = "2026-06-01T00:00:00Z"
    assert is_live(base, now)
    assert not is_live({**base, "status": "draft"}, now)
    assert not is_live({**base, "status": "archived"}, now)
    assert not is_live({**base, "publishedAt": "2026-07-01T00:00:00Z"}, now)
    assert not is_live({**base, "publishAt": "2026-07-01T00:00:00Z"}, now)
    assert not is_live({**base, "unpublishAt": "2026-05-01T00:00:00Z"}, now)
    assert is_live({**base, "unpublishAt": "2026-07-01T00:00:00Z"}, now)
