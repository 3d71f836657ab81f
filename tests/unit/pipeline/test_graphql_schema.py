"""The GraphQL schema's resolvers against a real index: the sample site built into tmp_path.

Requests go through ``execute_request`` (parse → limits → validation → execution) in the
calling thread, the way the origin runs them in its one worker-thread hop.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLObjectType, parse
from support.sites import copy_sample

from pipeline.build import BuildOptions, build_site
from pipeline.index import EntryQuery, RecordCache, get_entry, load_entry_records, query_entries
from pipeline.origin import graphql_api, graphql_schema
from pipeline.origin.graphql_api import (
    MAX_COST,
    MAX_DEPTH,
    GraphQLRequest,
    Outcome,
    execute_request,
    measure,
)
from pipeline.origin.graphql_schema import MediaCatalogue, Viewer, image_size, media_id
from pipeline.origin.live import LiveIndex, Snapshot
from pipeline.publish import publish
from pipeline.source import GitSource
from pipeline.store import Store

AS_OF = "2026-11-20T00:00:00Z"
SORTS = ["publishedAt", "-publishedAt", "title", "-title", "updatedAt", "-updatedAt"]
EDITOR = Viewer(subject="ada", role="editor")


@dataclass
class Site:
    store: Store
    live: LiveIndex
    catalogue: MediaCatalogue

    def read(self, fn: Callable[[Snapshot], Any]) -> Any:
        return self.live.read_sync(fn)

    def run(self, query: str, *, viewer: Viewer | None = None, variables: dict[str, Any] | None = None,
            queries_only: bool = False, operation_name: str | None = None) -> Outcome:
        gql = GraphQLRequest(query=query, variables=variables, operation_name=operation_name)
        return self.read(lambda snapshot: execute_request(snapshot, gql, viewer or Viewer(), self.catalogue,
                                                          queries_only=queries_only))

    def data(self, query: str, **kwargs: Any) -> dict[str, Any]:
        outcome = self.run(query, **kwargs)
        assert outcome.status == 200, outcome.document
        assert "errors" not in outcome.document, outcome.document
        return outcome.document["data"]

    def index_ids(self, **query: Any) -> list[str]:
        """Every entry the index lists for ``query``, walking its own cursors."""
        ids: list[str] = []
        cursor = None
        while True:
            page = self.read(lambda s, c=cursor: query_entries(s.conn, EntryQuery(limit=100, cursor=c, **query)))
            ids += [entry["id"] for entry in page.entries]
            if page.next_cursor is None:
                return ids
            cursor = page.next_cursor


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("graphql")
    source = copy_sample(root / "site")
    store = Store(root / "state")
    result = build_site(GitSource(source, "main"), store, previous=None, options=BuildOptions(as_of=AS_OF))
    publish(store, result.build_id)
    return Site(store, LiveIndex(store), MediaCatalogue.load(store, result.build_id))


def error_of(outcome: Outcome, index: int = 0) -> dict[str, Any]:
    return outcome.document["errors"][index]


def code_of(outcome: Outcome) -> str:
    return error_of(outcome)["extensions"]["code"]


def walk(site: Site, *, sort: str | None = None, size: int = 7, backward: bool = False,
         filter_text: str = "") -> list[str]:
    """Every id of a contents listing, page by page (forward, or backward from the end)."""
    ids: list[str] = []
    cursor: str | None = None
    sort_arg = f', sort: "{sort}"' if sort else ""
    filter_arg = f", filter: {{{filter_text}}}" if filter_text else ""
    pages = 0
    while True:
        if backward:
            position = f', before: "{cursor}"' if cursor else ""
            args = f"last: {size}{position}{sort_arg}{filter_arg}"
        else:
            position = f', after: "{cursor}"' if cursor else ""
            args = f"first: {size}{position}{sort_arg}{filter_arg}"
        connection = site.data(f"{{ contents({args}) {{ totalCount edges {{ cursor node {{ id }} }}"
                               " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }")["contents"]
        page_ids = [edge["node"]["id"] for edge in connection["edges"]]
        info = connection["pageInfo"]
        assert len(page_ids) <= size
        assert info["startCursor"] == (connection["edges"][0]["cursor"] if page_ids else None)
        assert info["endCursor"] == (connection["edges"][-1]["cursor"] if page_ids else None)
        pages += 1
        if backward:
            assert info["hasNextPage"] is (cursor is not None)
            ids = page_ids + ids
            if not info["hasPreviousPage"]:
                break
            cursor = info["startCursor"]
        else:
            assert info["hasPreviousPage"] is (cursor is not None)
            ids += page_ids
            if not info["hasNextPage"]:
                break
            cursor = info["endCursor"]
        assert pages < 100
    assert len(ids) == connection["totalCount"]
    return ids


# --------------------------------------------------------------------------- contents


def test_contents_first_page_is_the_index_page_with_its_cursor(site: Site) -> None:
    """The first page is the index's first page, and its endCursor is the index's own cursor."""
    connection = site.data("{ contents(first: 5) { totalCount edges { cursor node { id } }"
                           " pageInfo { hasNextPage endCursor } } }")["contents"]
    page = site.read(lambda s: query_entries(s.conn, EntryQuery(limit=5)))
    assert [edge["node"]["id"] for edge in connection["edges"]] == [entry["id"] for entry in page.entries]
    assert connection["pageInfo"] == {"hasNextPage": True, "endCursor": page.next_cursor}
    assert connection["totalCount"] == page.total == 43


@pytest.mark.parametrize("sort", [None, *SORTS])
def test_contents_walk_forward_is_index_order(site: Site, sort: str | None) -> None:
    """Walking first/after pages lists every live entry once, in the index's order."""
    assert walk(site, sort=sort) == site.index_ids(sort=sort or "-publishedAt")


@pytest.mark.parametrize("sort", ["-publishedAt", "title", "updatedAt"])
@pytest.mark.parametrize("size", [1, 4, 100])
def test_contents_walk_backward_is_index_order(site: Site, sort: str, size: int) -> None:
    """Walking last/before pages from the end gives the same order as walking forward."""
    assert walk(site, sort=sort, size=size, backward=True) == site.index_ids(sort=sort)


def test_contents_backward_page_before_a_forward_cursor(site: Site) -> None:
    """A cursor from a forward page works as `before`: the page just ahead of it."""
    forward = site.data("{ contents(first: 10) { edges { cursor node { id } } } }")["contents"]["edges"]
    back = site.data(f'{{ contents(last: 3, before: "{forward[6]["cursor"]}") {{ edges {{ cursor node {{ id }} }}'
                     " pageInfo { hasNextPage hasPreviousPage } } }")["contents"]
    assert back["edges"] == forward[3:6]
    assert back["pageInfo"] == {"hasNextPage": True, "hasPreviousPage": True}


def test_contents_created_at_sorts_like_published_at(site: Site) -> None:
    """seed 001's sort "-createdAt" is accepted: an entry is created when it is published."""
    assert walk(site, sort="-createdAt", size=20) == walk(site, sort="-publishedAt", size=20)
    assert walk(site, sort="createdAt", size=20) == site.index_ids(sort="publishedAt")


@pytest.mark.parametrize(("args", "message"), [
    ("first: 101", "first must be an integer from 1 to 100"),
    ("first: 0", "first must be an integer from 1 to 100"),
    ("last: -1", "last must be an integer from 1 to 100"),
    ("first: 2, last: 2", "not both"),
    ('sort: "author"', "sort must be one of"),
    ('after: "not-a-cursor"', "cursor"),
    ('filter: {dateFrom: "yesterday"}', "DateTime"),
])
def test_contents_bad_arguments_are_validation_errors(site: Site, args: str, message: str) -> None:
    """Out-of-range pages, unknown sorts, bad cursors and dates: VALIDATION_ERROR, status 422."""
    outcome = site.run(f"{{ contents({args}) {{ totalCount }} }}")
    assert outcome.status == 422
    assert code_of(outcome) == "VALIDATION_ERROR"
    assert error_of(outcome)["extensions"]["statusCode"] == 422
    assert message in error_of(outcome)["message"]


def test_contents_cursor_of_another_sort_is_refused(site: Site) -> None:
    """A cursor names its sort; using it under another sort is a client error."""
    cursor = site.data("{ contents(first: 2) { pageInfo { endCursor } } }")["contents"]["pageInfo"]["endCursor"]
    outcome = site.run(f'{{ contents(first: 2, after: "{cursor}", sort: "title") {{ totalCount }} }}')
    assert code_of(outcome) == "VALIDATION_ERROR"
    assert "made for sort" in error_of(outcome)["message"]


def test_contents_filters_match_a_brute_force_filter(site: Site) -> None:
    """contentType, tag, authorId and the date range select what a plain Python filter selects."""
    records = site.read(lambda s: load_entry_records(s.conn, bodies=False))
    live = [r for r in records.values() if r["live"]]

    def expected(keep: Callable[[dict[str, Any]], bool]) -> list[str]:
        chosen = sorted((r for r in live if keep(r)), key=lambda r: (r["publishedAt"] or "", r["id"]), reverse=True)
        return [r["id"] for r in chosen]

    cases = [
        ('contentType: "blog"', lambda r: r["contentType"] == "blog"),
        ('tag: "caching"', lambda r: "caching" in r["tags"]),
        ('authorId: "ken"', lambda r: r["author"] == "ken"),
        ('dateFrom: "2026-01-01", dateTo: "2026-06-30T23:59:59Z"',
         lambda r: "2026-01-01T00:00:00Z" <= (r["publishedAt"] or "") <= "2026-06-30T23:59:59Z"),
        ('contentType: "blog", authorId: "ada", status: PUBLISHED',
         lambda r: r["contentType"] == "blog" and r["author"] == "ada"),
    ]
    for filter_text, keep in cases:
        assert walk(site, filter_text=filter_text, size=5) == expected(keep), filter_text
        assert expected(keep), filter_text  # each case selects something


def test_contents_search_uses_the_index_search(site: Site) -> None:
    """search is the index's full-text search (plain words, last one a prefix)."""
    ids = walk(site, filter_text='search: "graphql"', size=3)
    assert ids == site.index_ids(search="graphql")
    assert "cnt_" in ids[0] or "doc_" in ids[0]


def test_contents_drafts_need_the_editor_role(site: Site) -> None:
    """Drafts without an editor or admin role: seed 001's UNAUTHENTICATED (401) with no credential,
    FORBIDDEN (403) for a signed-in viewer or a role-less subject; data null either way."""
    for subject, role, code, status in ((None, None, "UNAUTHENTICATED", 401), ("x", "viewer", "FORBIDDEN", 403),
                                        ("x", None, "FORBIDDEN", 403)):
        outcome = site.run("{ contents(filter: {status: DRAFT}) { totalCount } }",
                           viewer=Viewer(subject=subject, role=role))
        assert outcome.status == status
        assert outcome.document["data"] is None
        assert error_of(outcome)["extensions"] == {"code": code, "statusCode": status, "path": ["contents"]}
        assert error_of(outcome)["path"] == ["contents"]
        assert outcome.uses_viewer  # the refusal depends on who asks


def test_contents_editors_see_drafts_and_the_answer_depends_on_them(site: Site) -> None:
    """An editor lists drafts (with dates that are never null); public listings never show them."""
    outcome = site.run("{ contents(first: 100, filter: {status: DRAFT}) { totalCount edges { node {"
                       " id status createdAt updatedAt publishedAt } } } }", viewer=EDITOR)
    assert outcome.status == 200
    assert outcome.uses_viewer
    nodes = [edge["node"] for edge in outcome.document["data"]["contents"]["edges"]]
    assert nodes
    assert {node["status"] for node in nodes} == {"DRAFT"}
    for node in nodes:
        assert node["createdAt"].endswith("Z")
        assert node["updatedAt"].endswith("Z")
    everything = site.data("{ contents(first: 100) { totalCount } }", viewer=EDITOR)["contents"]["totalCount"]
    public = site.run("{ contents(first: 100) { totalCount } }")
    assert not public.uses_viewer
    assert public.document["data"]["contents"]["totalCount"] == 43 < everything


def test_published_means_live_for_editors_too(site: Site) -> None:
    """Seed 001: PUBLISHED is "live and publicly accessible": an editor filtering on it gets the
    public list, not entries whose status is published but whose publishAt is still ahead."""
    query = "{ contents(first: 100, filter: {status: PUBLISHED}) { totalCount edges { node { id } } } }"
    editor = site.data(query, viewer=EDITOR)["contents"]
    public = site.data(query)["contents"]
    assert editor == public
    assert public["totalCount"] == 43


# --------------------------------------------------------------------------- single items


def test_content_by_id_has_seed_fields(site: Site) -> None:
    """content(id) gives seed 001's fields: body HTML, ISO dates with Z, author, media with alt."""
    data = site.data('{ content(id: "cnt_7f3k2m") { id title slug body status publishedAt updatedAt'
                     " createdAt contentType url readingMinutes tags excerpt author { id name email role }"
                     " media { url alt } } }")["content"]
    assert data["id"] == "cnt_7f3k2m"
    assert data["status"] == "PUBLISHED"
    assert data["publishedAt"] == data["createdAt"] == "2025-04-02T09:00:00Z"
    assert data["updatedAt"] == "2025-06-03T08:00:00Z"
    assert data["body"].startswith("<")
    assert data["contentType"] == "blog"
    assert data["url"] == "/blog/etags-explained/"
    assert data["author"] == {"id": "ken", "name": "Ken Matsuda", "email": "ken@flowcms.example",
                              "role": "author"}
    assert data["media"] == [{"url": "/media/diagrams/etag-revalidation.svg",
                              "alt": "A conditional request answered with 304 Not Modified"}]


def test_content_not_found_is_seed_error(site: Site) -> None:
    """A missing id or slug: seed 001's error example as written ("data": null, NOT_FOUND 404
    with the path), because the single-item roots are non-null."""
    outcome = site.run('{ contentBySlug(slug: "old-post") { id } }')
    assert outcome.document == {"data": None, "errors": [{
        "message": "Content with slug 'old-post' not found",
        "locations": [{"line": 1, "column": 3}],
        "path": ["contentBySlug"],
        "extensions": {"code": "NOT_FOUND", "statusCode": 404, "path": ["contentBySlug"]}}]}
    assert outcome.status == 404
    assert error_of(outcome)["message"] == "Content with slug 'old-post' not found"
    assert error_of(outcome)["extensions"] == {"code": "NOT_FOUND", "statusCode": 404, "path": ["contentBySlug"]}
    outcome = site.run('{ content(id: "cnt_abc123") { id } }')
    assert error_of(outcome)["message"] == "Content with id 'cnt_abc123' not found"
    assert error_of(outcome)["path"] == ["content"]


def test_drafts_by_id_are_hidden_from_the_public(site: Site) -> None:
    """A draft's id is NOT_FOUND to the public and found by an editor."""
    draft = site.data("{ contents(first: 1, filter: {status: DRAFT}) { edges { node { id slug } } } }",
                      viewer=EDITOR)["contents"]["edges"][0]["node"]
    assert code_of(site.run(f'{{ content(id: "{draft["id"]}") {{ id }} }}')) == "NOT_FOUND"
    assert code_of(site.run(f'{{ contentBySlug(slug: "{draft["slug"]}") {{ id }} }}')) == "NOT_FOUND"
    assert site.data(f'{{ content(id: "{draft["id"]}") {{ id }} }}', viewer=EDITOR)["content"]["id"] == draft["id"]


def test_content_by_slug_with_content_type(site: Site) -> None:
    """contentBySlug narrows by contentType when given."""
    query = '{{ contentBySlug(slug: "introduction"{}) {{ id contentType }} }}'
    assert site.data(query.format(""))["contentBySlug"] == {"id": "doc_intro01", "contentType": "docs"}
    assert site.data(query.format(', contentType: "docs"'))["contentBySlug"]["id"] == "doc_intro01"
    assert code_of(site.run(query.format(', contentType: "blog"'))) == "NOT_FOUND"


def test_featured_image_is_the_first_image_of_the_body(site: Site) -> None:
    """Without a featuredImage field, an entry's featured image is the first image it shows."""
    data = site.data('{ contentBySlug(slug: "etags-explained") { featuredImage { url width height alt } } }')
    assert data["contentBySlug"]["featuredImage"] == {
        "url": "/media/diagrams/etag-revalidation.svg", "width": 640, "height": 300,
        "alt": "A conditional request answered with 304 Not Modified"}
    assert site.data('{ content(id: "cnt_ad7a592f5333") { featuredImage { url } } }')["content"]["featuredImage"] is None


def test_media_by_id(site: Site) -> None:
    """media(id) describes a file under media/: size from the manifest, pixels from the file."""
    path = "/media/avatars/ada.svg"
    item = site.store.manifest(site.store.live() or "")[path]
    data = site.data(f'{{ media(id: "{media_id(path)}") {{ id filename url mimeType size width height alt'
                     " uploadedAt } }")["media"]
    assert data == {"id": media_id(path), "filename": "ada.svg", "url": path, "mimeType": "image/svg+xml",
                    "size": item.size, "width": 128, "height": 128, "alt": None, "uploadedAt": AS_OF}
    outcome = site.run('{ media(id: "med_xyz789") { id } }')
    assert error_of(outcome)["message"] == "Media with id 'med_xyz789' not found"
    assert code_of(outcome) == "NOT_FOUND"


# --------------------------------------------------------------------------- users


def test_current_user_needs_authentication(site: Site) -> None:
    """No subject from the gateway: UNAUTHENTICATED 401 at ["currentUser"], the field null."""
    outcome = site.run("{ currentUser { id name } }")
    assert outcome.document["data"] == {"currentUser": None}
    assert error_of(outcome)["extensions"] == {"code": "UNAUTHENTICATED", "statusCode": 401,
                                               "path": ["currentUser"]}


def test_current_user_from_gateway_headers(site: Site) -> None:
    """The gateway's identity, completed from authors.yaml when the subject is an author."""
    query = "{ currentUser { id name email role avatar organization { name slug } } }"
    outcome = site.run(query, viewer=Viewer(subject="grace", role="editor", organization="flowcms"))
    assert outcome.uses_viewer
    assert outcome.document["data"]["currentUser"] == {
        "id": "grace", "name": "Grace Lindqvist", "email": "grace@flowcms.example", "role": "editor",
        "avatar": "/media/avatars/grace.svg", "organization": {"name": "flowcms", "slug": "flowcms"}}
    stranger = site.data(query, viewer=Viewer(subject="u_42", name="Sam", email="sam@example.org"))
    assert stranger["currentUser"] == {"id": "u_42", "name": "Sam", "email": "sam@example.org", "role": "viewer",
                                       "avatar": None, "organization": None}


def test_authors_lists_every_author(site: Site) -> None:
    authors = site.data("{ authors { id name email role avatar } }")["authors"]
    assert [author["id"] for author in authors] == ["ada", "grace", "ken", "linus"]
    assert authors[0] == {"id": "ada", "name": "Ada Okafor", "email": "ada@flowcms.example", "role": "author",
                          "avatar": "/media/avatars/ada.svg"}


# --------------------------------------------------------------------------- batching, keys


def test_answers_are_the_bytes_json_dumps_would_write(site: Site) -> None:
    """Answer bytes (and so ETags) are compact JSON in the executor's key order, UTF-8 as is."""
    documents = [
        site.run("{ contents(first: 5) { edges { cursor node { id title body createdAt author { name } } } } }").document,
        site.run('{ content(id: "nope") { id } }').document,  # data, then errors with extensions
        {"data": {"title": "Café ☕ 日本", "n": 2**53, "none": None, "flag": True}},
    ]
    for document in documents:
        assert graphql_api._dumps(document) == json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    assert graphql_api._dumps({"data": {"big": 2**70}}) == b'{"data":{"big":1180591620717411303424}}'


def test_every_resolver_is_synchronous() -> None:
    """execute_request runs with check_sync=False: an async resolver would go unnoticed."""
    resolvers = [field.resolve for named in graphql_schema.SCHEMA.type_map.values()
                 if isinstance(named, GraphQLObjectType) for field in named.fields.values() if field.resolve]
    assert len(resolvers) > 10
    assert not [r for r in resolvers if inspect.iscoroutinefunction(r) or inspect.isasyncgenfunction(r)]


def test_edge_cursors_are_made_only_when_asked_for(site: Site) -> None:
    """Cursors are the same whichever fields a query asks for, and pageInfo's match the edges'."""
    page = site.data("{ contents(first: 3) { edges { cursor node { id } } pageInfo { startCursor endCursor } } }")
    cursors = [edge["cursor"] for edge in page["contents"]["edges"]]
    assert page["contents"]["pageInfo"] == {"startCursor": cursors[0], "endCursor": cursors[-1]}
    ids = [edge["node"]["id"] for edge in page["contents"]["edges"]]
    after = site.data(f'{{ contents(first: 1, after: "{cursors[0]}") {{ edges {{ node {{ id }} }} }} }}')
    assert [edge["node"]["id"] for edge in after["contents"]["edges"]] == ids[1:2]


def test_index_reads_are_batched_per_request(site: Site) -> None:
    """A page of 40 nodes with authors costs four statements with nothing decoded yet (the
    count, the page, its records, the authors), then two (records and authors are kept
    per index file): never one per node."""
    statements: list[str] = []
    gql = GraphQLRequest(query="{ contents(first: 40) { edges { node { id author { name } media { url } }"
                               " } } authors { id } }")

    def traced(snapshot: Snapshot) -> Outcome:
        snapshot.conn.set_trace_callback(statements.append)
        try:
            return execute_request(snapshot, gql, Viewer(), site.catalogue)
        finally:
            snapshot.conn.set_trace_callback(None)

    cold = RecordCache()  # nothing decoded yet, whatever the tests before read
    for expected in (4, 2):
        statements.clear()
        outcome = site.read(lambda snapshot: traced(dataclasses.replace(snapshot, records=cold)))
        assert outcome.status == 200
        assert len(outcome.document["data"]["contents"]["edges"]) == 40
        assert len(statements) == expected, statements


def test_surrogate_keys_name_what_the_answer_shows(site: Site) -> None:
    """Keys: api:contents, api:<id> per entry shown, api:authors / api:media when used (publish.purge_set)."""
    outcome = site.run('{ content(id: "cnt_7f3k2m") { title author { name } media { url } } }')
    assert set(outcome.keys) == {"api:contents", "api:cnt_7f3k2m", "api:authors", "api:media"}
    outcome = site.run("{ contents(first: 2) { edges { node { id } } } }")
    ids = [edge["node"]["id"] for edge in outcome.document["data"]["contents"]["edges"]]
    assert set(outcome.keys) == {"api:contents", *(f"api:{i}" for i in ids)}


# --------------------------------------------------------------------------- requests, errors, limits


def test_syntax_error_is_400(site: Site) -> None:
    outcome = site.run("{ contents(first: ) }")
    assert outcome.status == 400
    assert "data" not in outcome.document  # a request error: execution never began (GraphQL spec §7.1.1)
    assert error_of(outcome)["extensions"] == {"code": "VALIDATION_ERROR", "statusCode": 400, "path": None}
    assert error_of(outcome)["locations"] == [{"line": 1, "column": 19}]


def test_unknown_fields_and_mutations_fail_validation(site: Site) -> None:
    """The API is read-only: a mutation is not in the schema, so it fails validation (422)."""
    for query in ("{ contents { nope } }", 'mutation { createContent(input: {title: "x"}) { id } }',
                  "subscription { contentCreated { id } }"):
        outcome = site.run(query)
        assert outcome.status == 422, query
        assert code_of(outcome) == "VALIDATION_ERROR"


def test_mutation_over_get_is_405(site: Site) -> None:
    """A GET executes queries only: any other operation is refused with 405."""
    outcome = site.run("mutation DeletePost($id: ID!) { deleteContent(id: $id) }", queries_only=True)
    assert outcome.status == 405
    assert site.run("{ authors { id } }", queries_only=True).status == 200


def test_variables_are_coerced_and_checked(site: Site) -> None:
    query = "query Page($n: Int, $type: String) { contents(first: $n, filter: {contentType: $type}) { totalCount } }"
    assert site.data(query, variables={"n": 2, "type": "docs"})["contents"]["totalCount"] == 13
    outcome = site.run(query, variables={"n": "two"})
    assert outcome.status == 422
    assert code_of(outcome) == "VALIDATION_ERROR"
    outcome = site.run("query A { authors { id } } query B { authors { name } }")
    assert code_of(outcome) == "VALIDATION_ERROR"
    assert site.data("query A { authors { id } } query B { authors { name } }",
                     operation_name="B")["authors"][0] == {"name": "Ada Okafor"}


def test_depth_limit(site: Site) -> None:
    """Deeper than MAX_DEPTH levels: VALIDATION_ERROR naming the limit, before any execution."""
    deep = ("{ contents { totalCount } __schema { types { fields { type { fields { type { fields { type { fields"
            " { type { name" + " }" * 11)
    outcome = site.run(deep)
    assert outcome.status == 422
    assert error_of(outcome)["message"] == f"query depth 11 exceeds the limit of {MAX_DEPTH}"
    assert site.run("{ contents { edges { node { author { organization { name } } } } } }").status == 200


def test_introspection_tools_get_the_schema_and_nests_are_still_refused(site: Site) -> None:
    """GraphiQL's, Apollo's and codegen's introspection query (depth 15) passes the introspection
    limits; a nest of lists through the schema (fields { type { fields … }) is refused on cost,
    and a deep chain past MAX_INTROSPECTION_DEPTH on depth."""
    from graphql import get_introspection_query

    from pipeline.origin.graphql_api import MAX_INTROSPECTION_DEPTH

    standard = site.run(get_introspection_query(descriptions=True))
    assert standard.status == 200, standard.document
    assert {t["name"] for t in standard.document["data"]["__schema"]["types"]} >= {"Query", "Content", "User"}
    nest = site.run("{ __schema { types { fields { type { fields { type { fields { type { fields { type { fields"
                    " { name" + " }" * 12)
    assert nest.status == 422
    assert "query cost" in error_of(nest)["message"]
    chain = "{ __type(name: \"Content\") { " + "ofType { " * 20 + "name" + " }" * 22
    refused = site.run(chain)
    assert error_of(refused)["message"] == f"query depth 22 exceeds the limit of {MAX_INTROSPECTION_DEPTH}"


def test_a_fragment_cycle_through_another_fragment_is_a_validation_error(site: Site) -> None:
    """F → G → F: the limits' walk stops at the cycle and validation names it (was a RecursionError, a 500)."""
    outcome = site.run("query { contents(first: 1) { edges { node { ...F } } } }"
                       " fragment F on Content { author { ...G } } fragment G on User { ...F }")
    assert outcome.status == 422
    assert "Cannot spread fragment" in error_of(outcome)["message"]


def test_cost_limit(site: Site) -> None:
    """Alias floods of full pages cost more than MAX_COST: refused, with a message naming the limit."""
    flood = "{ " + " ".join(f"p{i}: contents(first: 100) {{ edges {{ node {{ id }} }} }}" for i in range(30)) + " }"
    outcome = site.run(flood)
    assert outcome.status == 422
    assert error_of(outcome)["message"].startswith(f"query cost 6030 exceeds the limit of {MAX_COST}")
    variables = site.run("query($n: Int) { a: contents(first: $n) { edges { node { id } } }"
                         " b: contents(first: $n) { edges { node { id } } } }", variables={"n": 100})
    assert variables.status == 200


@pytest.mark.parametrize(("query", "depth", "cost"), [
    ("{ contents { totalCount } }", 2, 1),
    ("{ contents(first: 5) { edges { node { id author { name } } } pageInfo { hasNextPage } } }", 5, 17),
    ("query($n: Int = 50) { contents(first: $n) { ...E } } fragment E on ContentConnection"
     " { edges { node { id } } }", 4, 101),
    ("{ authors { id } content(id: \"x\") { media { url } } }", 3, 10 + 1 + 10),
    ("{ ...F } fragment F on Query { authors { ...G } } fragment G on User { ...G organization { id } }", 3, 20),
])
def test_measure(query: str, depth: int, cost: int) -> None:
    """Depth counts field levels; cost counts objects, a page of n as n, other lists as 10."""
    document = parse(query)
    operation = document.definitions[0]
    assert measure(document, operation, {}) == (depth, cost)  # type: ignore[arg-type]


def test_unexpected_failures_are_internal_errors(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug or damaged build answers INTERNAL_ERROR without internals, and is kept for the log."""
    def broken(*_args: object, **_kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error at /secret/path")

    monkeypatch.setattr(graphql_schema, "query_entries", broken)
    outcome = site.run("{ contents { totalCount } }")
    assert outcome.status == 500
    assert error_of(outcome)["message"] == "internal error"
    assert error_of(outcome)["extensions"] == {"code": "INTERNAL_ERROR", "statusCode": 500, "path": ["contents"]}
    assert isinstance(outcome.failures[0], sqlite3.OperationalError)


def test_datetime_scalar_normalises_to_utc_z(site: Site) -> None:
    """DateTime inputs in any ISO 8601 form filter like their UTC instant."""
    a = walk(site, filter_text='dateFrom: "2026-03-01T10:00:00+02:00"', size=50)
    b = walk(site, filter_text='dateFrom: "2026-03-01T08:00:00Z"', size=50)
    assert a == b
    assert a


def test_entry_record_sort_values_match_the_index(site: Site) -> None:
    """Edge cursors computed from records equal the index's keyset cursors for every sort."""
    for sort in SORTS:
        page = site.read(lambda s, sort=sort: query_entries(s.conn, EntryQuery(limit=3, sort=sort)))
        edges = site.data(f'{{ contents(first: 3, sort: "{sort}") {{ edges {{ cursor }} }} }}')
        assert edges["contents"]["edges"][-1]["cursor"] == page.next_cursor, sort
    assert site.read(lambda s: get_entry(s.conn, "cnt_7f3k2m")) is not None


# --------------------------------------------------------------------------- image sizes


def _png(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height) + b"\x08\x02\x00\x00\x00"


def test_image_size_reads_headers() -> None:
    """Pixel sizes from PNG, GIF, JPEG and SVG heads; None when the file does not say."""
    assert image_size(_png(640, 480), "image/png") == (640, 480)
    assert image_size(b"GIF89a" + struct.pack("<HH", 12, 34), "image/gif") == (12, 34)
    jpeg = (b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"\x00" * 14
            + b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 200, 300) + b"\x00" * 10)
    assert image_size(jpeg, "image/jpeg") == (300, 200)
    assert image_size(b'<svg width="10px" height="20">', "image/svg+xml") == (10, 20)
    assert image_size(b'<?xml?><svg viewBox="0 0 64 32">', "image/svg+xml") == (64, 32)
    assert image_size(b'<svg width="100%">', "image/svg+xml") is None
    assert image_size(base64.b64decode("AAAA"), "application/pdf") is None


def test_media_ids_are_stable_and_distinct(tmp_path: Path) -> None:
    assert media_id("/media/a.png") == media_id("media/a.png")
    assert media_id("/media/a.png") != media_id("/media/b.png")
    assert media_id("/media/a.png").startswith("med_")
