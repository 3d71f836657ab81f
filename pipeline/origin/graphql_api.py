"""GraphQL over HTTP at /graphql: POST and cacheable GET, limits, errors, the playground.

Theory of operation: the route turns an HTTP request into a ``GraphQLRequest`` (or a
refusal: bad JSON 400, too large 413, wrong media type 415, at capacity 503), then runs
``execute_request`` (parse → depth/cost limits → validation → ``execute_sync``) inside
one ``LiveIndex.read`` call: one thread hop per request, with graphql-core resolving
synchronously in that thread (DEPS.md). The resulting ``Outcome`` carries the response
document and what the answer depends on, and the route decides the caching headers:

* POST answers are ``no-store``.
* GET answers (queries only: anything else is 405) get an ETag (blake3 of the body), 304
  on ``If-None-Match``, ``X-Build``, and ``Surrogate-Key`` (``api:contents``, ``api:<id>``
  per entry shown, ``api:authors``/``api:media`` when used: the keys ``publish.purge_set``
  purges). They are shared-cacheable like pages only when they have no errors and did not
  depend on the X-Flowcms-* identity headers the edge gateway sets.
* A browser's GET without a query gets the offline playground page.

GET and HEAD with a query normally arrive from the ASGI fast lane (``lane.py``), which calls
``GraphQLApi.answer`` and decides the 304 itself; the Quart view ``endpoint`` serves the rest.

Status: 200 when the answer has data (errors then are partial), else the first error's
``statusCode`` (400 syntax, 405, 413, 422 validation, 401, 403, 404, 429, 500, 503).
At capacity (``MAX_IN_FLIGHT``) the answer is 503 with ``Retry-After``, seed 002's "capacity
reached": 429 is a client's own rate limit (the gateway's), and an edge may answer a 503
from a stale copy (``stale-if-error``) where it must pass a 429 on.
Every error is ``{message, locations?, path, extensions: {code, statusCode, path}}``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any

import blake3
import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    execute_sync,
    get_named_type,
    get_operation_ast,
    is_composite_type,
    is_list_type,
    is_non_null_type,
    parse,
    validate,
)
from graphql.type import SchemaMetaFieldDef, TypeMetaFieldDef
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from pipeline.errors import QueryError
from pipeline.index import MAX_LIMIT
from pipeline.origin.conditional import none_match
from pipeline.origin.graphql_schema import (
    DEFAULT_PAGE_SIZE,
    SCHEMA,
    ApiError,
    ErrorCode,
    Execution,
    MediaCatalogue,
    Viewer,
)
from pipeline.origin.live import LiveIndex, NoLiveBuild, Snapshot
from pipeline.origin.static import PAGE_CACHE_CONTROL

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_COST",
    "MAX_DEPTH",
    "MAX_QUERY_BYTES",
    "GraphQLApi",
    "GraphQLRequest",
    "Outcome",
    "Reply",
    "error_document",
    "execute_request",
    "measure",
    "register",
]

log = logging.getLogger(__name__)

#: The deepest selection accepted; the schema's deepest real path
#: (contents → edges → node → author → organization → name) is 6 levels.
MAX_DEPTH = 10
#: The most expensive query accepted (see ``measure``): a page of 100 entries with their
#: author, media and featured image costs about 1,500; alias floods and nested lists far more.
MAX_COST = 5_000
#: An operation that only asks about the schema (``__schema``/``__type`` at its root) gets these
#: instead: the introspection query of GraphiQL, Apollo and codegen tools (graphql-core's
#: ``get_introspection_query``: depth 15, cost 16,424) must pass, and a nest of
#: ``fields { type { fields …`` still costs ten times more per level and is refused.
MAX_INTROSPECTION_DEPTH = 20
MAX_INTROSPECTION_COST = 20_000
#: Lists without first/last (tags, media, authors, introspection) count as this many items.
LIST_SIZE_ESTIMATE = 10
#: A query text longer than this is refused (413): real queries are a few KB.
MAX_QUERY_BYTES = 20 * 1024
#: Tokens per document: parsing stops early on token floods, before any validation work.
MAX_TOKENS = 6_000
#: A POST body longer than this is refused from its Content-Length, before reading it.
MAX_BODY_BYTES = 10_000_000  # seed 000: "10 MB (JSON)", as the edge gateway counts it
#: Requests executing or waiting for a worker thread; more get 503. An execution costs
#: 0.25-1 ms of the one core the origin uses, so 512 is under half a second of queued work:
#: bursts of concurrent clients wait (an h2c client alone opens 100 streams), a flood is shed.
MAX_IN_FLIGHT = 512
METHODS = ["GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"]
ALLOW = "GET, HEAD, POST, OPTIONS"
#: Headers the edge gateway sets after authentication (it strips client-sent copies).
IDENTITY_HEADERS = ("X-Flowcms-Subject", "X-Flowcms-Role", "X-Flowcms-Name", "X-Flowcms-Email",
                    "X-Flowcms-Org")
#: What a cacheable GET answer varies on: the media type, and the role that can reveal drafts.
VARY = "Accept, X-Flowcms-Role"
GRAPHQL_RESPONSE_TYPE = "application/graphql-response+json"
INTERNAL_MESSAGE = "internal error"


# --------------------------------------------------------------------------- execution


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphQLRequest:
    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One executed or refused request.

    ``status`` is the HTTP status the answer calls for; ``uses_viewer`` is true when the
    X-Flowcms-* headers changed the answer; ``keys`` are its surrogate keys; ``failures``
    are unexpected exceptions, for the caller to log.
    """

    document: dict[str, Any]
    status: int
    keys: tuple[str, ...] = ()
    uses_viewer: bool = False
    failures: tuple[BaseException, ...] = ()

    @property
    def has_errors(self) -> bool:
        return bool(self.document.get("errors"))


def execute_request(
    snapshot: Snapshot, gql: GraphQLRequest, viewer: Viewer, catalogue: MediaCatalogue,
    *, queries_only: bool = False,
) -> Outcome:
    """Parse, limit, validate and execute one request against one snapshot (synchronous).

    ``queries_only`` (GET) refuses any other operation with 405: a GET must be safe.
    """
    try:
        document, valid = _parsed(gql.query)
    except GraphQLSyntaxError as exc:
        return _request_error([_coded(exc, ErrorCode.VALIDATION_ERROR, status=400)])
    operation = get_operation_ast(document, gql.operation_name)
    if queries_only and operation is not None and operation.operation is not OperationType.QUERY:
        message = f"a {operation.operation.value} cannot be sent with GET: use POST"
        return _request_error([_coded(GraphQLError(message, operation), ErrorCode.VALIDATION_ERROR, status=405)])
    errors = (_limit_errors(document, operation, gql.variables or {}) if operation is not None else []) \
        or ([] if valid else validate(SCHEMA, document))
    if errors:
        return _request_error([_coded(error, ErrorCode.VALIDATION_ERROR) for error in errors])
    context = Execution(snapshot, viewer, catalogue)
    # No awaitable checks (check_sync=False): every resolver is synchronous (DEPS.md: async
    # ones break under trio; a test holds the schema to it), and checking every value of a
    # 10-node page was a tenth of its execution.
    result = execute_sync(SCHEMA, document, context_value=context, variable_values=gql.variables,
                          operation_name=gql.operation_name, check_sync=False)
    assert isinstance(result, ExecutionResult)
    errors = [_classified(error) for error in result.errors or ()]
    if result.data is None and errors and not any(error.path for error in errors):
        return _request_error(errors)  # variables that do not fit, no such operation: execution never began
    failures = tuple(error.original_error for error in errors if error.original_error is not None
                     and (error.extensions or {}).get("code") == ErrorCode.INTERNAL_ERROR)
    return _outcome(result.data, errors, keys=tuple(context.keys), uses_viewer=context.uses_viewer,
                    failures=failures)


@functools.lru_cache(maxsize=512)
def _parsed(query: str) -> tuple[DocumentNode, bool]:
    """A query's document and whether it validates against the schema, once per distinct text.

    Clients repeat the same few queries; parsing and validating them again was a third of a
    GraphQL miss at the origin (bench/api.py profile). Documents are only read afterwards.
    Variables do not take part (the depth/cost limits that read them run per request).
    """
    document = parse(query, max_tokens=MAX_TOKENS)
    return document, not validate(SCHEMA, document)


def _limit_errors(
    document: DocumentNode, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> list[GraphQLError]:
    max_depth, max_cost = ((MAX_INTROSPECTION_DEPTH, MAX_INTROSPECTION_COST) if _introspection_only(operation)
                           else (MAX_DEPTH, MAX_COST))
    depth, cost = measure(document, operation, variables)
    errors = []
    if depth > max_depth:
        errors.append(GraphQLError(f"query depth {depth} exceeds the limit of {max_depth}", operation))
    if cost > max_cost:
        errors.append(GraphQLError(f"query cost {cost} exceeds the limit of {max_cost}: ask for smaller"
                                   " pages (first/last) or fewer nested lists", operation))
    return errors


def _introspection_only(operation: OperationDefinitionNode) -> bool:
    """Every root field is ``__schema``, ``__type`` or ``__typename`` (fragments are not followed:
    a spread at the root counts as data)."""
    selections = operation.selection_set.selections
    return bool(selections) and all(isinstance(node, FieldNode) and node.name.value in _INTROSPECTION_FIELDS
                                    for node in selections)


_INTROSPECTION_FIELDS = frozenset(("__schema", "__type", "__typename"))


def _classified(error: GraphQLError) -> GraphQLError:
    """seed 001's code for an execution error, from what raised it."""
    original = error.original_error
    if isinstance(original, ApiError):
        return _coded(error, original.code, status=original.status)
    if isinstance(original, QueryError):
        return _coded(error, ErrorCode.VALIDATION_ERROR)
    if not error.path and (original is None or isinstance(original, GraphQLError)):
        # A request error: variables that do not fit their types, no such operation.
        return _coded(error, ErrorCode.VALIDATION_ERROR)
    # A bug or a damaged build: say so without internals (the caller logs ``failures``).
    return _coded(GraphQLError(INTERNAL_MESSAGE, error.nodes, path=error.path, original_error=original or error),
                  ErrorCode.INTERNAL_ERROR)


def _coded(error: GraphQLError, code: ErrorCode, *, status: int | None = None) -> GraphQLError:
    error.extensions = {"code": str(code), "statusCode": code.status if status is None else status}
    return error


def _request_error(errors: list[GraphQLError]) -> Outcome:
    """A request refused before execution: no ``data`` entry at all (GraphQL spec §7.1.1;
    GraphQL over HTTP reads its absence), the first error's status."""
    document = {"errors": [format_error(error) for error in errors]}
    return Outcome(document=document, status=int(document["errors"][0]["extensions"]["statusCode"]))


def _outcome(data: dict[str, Any] | None, errors: list[GraphQLError], **kwargs: Any) -> Outcome:
    document: dict[str, Any] = {"data": data}
    if errors:
        document["errors"] = [format_error(error) for error in errors]
    status = 200 if data is not None or not errors else int(document["errors"][0]["extensions"]["statusCode"])
    return Outcome(document=document, status=status, **kwargs)


def format_error(error: GraphQLError) -> dict[str, Any]:
    """seed 001's error shape: message, path and extensions {code, statusCode, path}."""
    extensions = error.extensions or {}
    path = list(error.path) if error.path else None
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    formatted["path"] = path
    formatted["extensions"] = {"code": extensions.get("code", str(ErrorCode.INTERNAL_ERROR)),
                               "statusCode": extensions.get("statusCode", 500), "path": path}
    return formatted


def error_document(code: ErrorCode, message: str, *, status: int | None = None) -> dict[str, Any]:
    """The document of a request refused before execution: no ``data`` (GraphQL spec §7.1.1)."""
    return {"errors": [format_error(_coded(GraphQLError(message), code, status=status))]}


# --------------------------------------------------------------------------- limits


def measure(
    document: DocumentNode, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> tuple[int, int]:
    """(depth, cost) of ``operation``, fragments expanded, before validation.

    Depth counts field levels (``{ contents { totalCount } }`` is 2). Cost estimates the
    objects an answer can hold: 1 per object, where a connection's edges are a list of
    its page size (first/last, default 10) and any other list counts as
    ``LIST_SIZE_ESTIMATE`` items; scalars are free (they come with their row). A fragment
    is measured once per place, so fragment fan-out cannot make this walk exponential.
    """
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    defaults = {d.variable.name.value: int(d.default_value.value) for d in operation.variable_definitions or ()
                if isinstance(d.default_value, IntValueNode)}
    memo: dict[tuple[str, int, int | None], tuple[int, int]] = {}
    expanding: set[str] = set()  # fragments being walked on this path: a cycle through them adds nothing

    def page_size(node: FieldNode) -> int:
        for argument in node.arguments or ():
            if argument.name.value in ("first", "last"):
                value: Any = argument.value
                if isinstance(value, IntValueNode):
                    value = int(value.value)
                elif isinstance(value, VariableNode):
                    name = value.name.value
                    value = variables.get(name, defaults.get(name))
                if isinstance(value, int) and not isinstance(value, bool):
                    return max(0, min(value, MAX_LIMIT))
        return DEFAULT_PAGE_SIZE

    def walk(
        selections: SelectionSetNode, parent: GraphQLNamedType | None, depth: int, page: int | None
    ) -> tuple[int, int]:
        """``page``: the size of the lists directly below (a connection's edges)."""
        deepest, cost = depth, 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                definition = _field(parent, node.name.value)
                if definition is None:
                    continue  # __typename, or a field validation will reject
                named = get_named_type(definition.type)
                connection = "first" in definition.args or "last" in definition.args
                inner = (walk(node.selection_set, named, depth + 1, page_size(node) if connection else None)
                         if node.selection_set else (depth + 1, 0))
                deepest = max(deepest, inner[0])
                if _is_list(definition):
                    size = LIST_SIZE_ESTIMATE if page is None else page
                    cost += size * (int(is_composite_type(named)) + inner[1])
                elif is_composite_type(named):
                    cost += 1 + inner[1]
                continue
            if isinstance(node, InlineFragmentNode):
                condition = SCHEMA.get_type(node.type_condition.name.value) if node.type_condition else parent
                inner = walk(node.selection_set, condition, depth, page)
            elif isinstance(node, FragmentSpreadNode):
                key = (node.name.value, depth, page)
                fragment = fragments.get(node.name.value)
                if fragment is None:
                    continue
                if node.name.value in expanding:
                    continue  # a cycle (F → G → F, which validation rejects): not walked again
                if key not in memo:
                    expanding.add(node.name.value)
                    condition = SCHEMA.get_type(fragment.type_condition.name.value)
                    memo[key] = walk(fragment.selection_set, condition, depth, page)
                    expanding.discard(node.name.value)
                inner = memo[key]
            else:
                continue
            deepest, cost = max(deepest, inner[0]), cost + inner[1]
        return deepest, cost

    return walk(operation.selection_set, SCHEMA.get_root_type(operation.operation), 0, None)


def _field(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    if parent is not None and parent is SCHEMA.query_type and name in ("__schema", "__type"):
        return SchemaMetaFieldDef if name == "__schema" else TypeMetaFieldDef
    if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
        return parent.fields.get(name)
    return None


def _is_list(definition: GraphQLField) -> bool:
    kind = definition.type
    return is_list_type(kind.of_type if is_non_null_type(kind) else kind)


# --------------------------------------------------------------------------- HTTP


def request_from_args(args: MultiDict[str, str]) -> GraphQLRequest:
    """A GET's ``query``, ``variables`` (JSON) and ``operationName`` parameters."""
    query = args.get("query")
    if query is None:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "GET /graphql needs a query parameter", status=400)
    variables: Any = None
    if args.get("variables"):
        try:
            variables = json.loads(args["variables"])
        except ValueError:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "variables is not valid JSON", status=400) from None
    return _checked(query, variables, args.get("operationName") or None)


def request_from_body(body: bytes, mimetype: str) -> GraphQLRequest:
    """A POST body: JSON ``{query, variables, operationName}``, or a bare application/graphql query."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "the body is not UTF-8", status=400) from None
    if mimetype == "application/graphql":
        return _checked(text, None, None)
    if mimetype != "application/json":  # none at all too: GraphQL over HTTP says a server SHOULD refuse
        shown = repr(mimetype) if mimetype else "(none)"
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"unsupported Content-Type {shown}: send"
                       " application/json", status=415)
    try:
        payload = json.loads(text)
    except ValueError:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "the body is not valid JSON", status=400) from None
    if not isinstance(payload, dict):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "the body must be a JSON object with a query"
                       " (batches are not supported)", status=400)
    return _checked(payload.get("query"), payload.get("variables"), payload.get("operationName"))


def _checked(query: Any, variables: Any, operation_name: Any) -> GraphQLRequest:
    if not isinstance(query, str) or not query.strip():
        raise ApiError(ErrorCode.VALIDATION_ERROR, "query must be a non-empty string", status=400)
    if len(query.encode("utf-8", "surrogatepass")) > MAX_QUERY_BYTES:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"the query is longer than {MAX_QUERY_BYTES} bytes",
                       status=413)
    if variables is not None and not isinstance(variables, dict):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "variables must be a JSON object", status=400)
    if operation_name is not None and not isinstance(operation_name, str):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "operationName must be a string", status=400)
    return GraphQLRequest(query=query, variables=variables, operation_name=operation_name)


def viewer_from(headers: Any) -> Viewer:
    """The identity the edge gateway vouches for; absent headers mean an anonymous reader."""
    values = [(headers.get(name) or "").strip() or None for name in IDENTITY_HEADERS]
    subject, role, name, email, organization = values
    return Viewer(subject=subject, role=role.lower() if role else None, name=name, email=email,
                  organization=organization)


def response_type(accept: str | None) -> str:
    """The answer's Content-Type: the Accept negotiation outcome (GraphQL over HTTP §4.1)."""
    if accept and GRAPHQL_RESPONSE_TYPE in accept:
        return GRAPHQL_RESPONSE_TYPE + "; charset=utf-8"
    return "application/json; charset=utf-8"


def wants_html(accept: str | None) -> bool:
    """A browser: a GET without a query then gets the playground page."""
    return bool(accept) and "text/html" in str(accept)


def _etag(body: bytes, media_type: str = "") -> str:
    """Strong, so unique per representation (RFC 9110 §8.8.3): the media type is hashed too, as
    the same bytes go out as application/json or application/graphql-response+json."""
    hasher = blake3.blake3(media_type.encode())
    hasher.update(b"\n")
    hasher.update(body)
    return f'"{hasher.hexdigest()[:32]}"'


def _response(body: bytes, status: int, headers: dict[str, str]) -> Response:
    response = Response(body, status=status)
    for name, value in headers.items():
        response.headers[name] = value
    if status in (204, 304):
        # RFC 9110 §15.3.5, §15.4.5: no content, so no content headers (a 304 keeps its validators)
        del response.headers["Content-Type"]
        del response.headers["Content-Length"]
    return response


class Playground:
    """The offline playground page, with a CSP that allows only its own inline code."""

    def __init__(self, page: bytes) -> None:
        self.page = page
        self.etag = _etag(page)
        text = page.decode()
        hashes = {kind: [_csp_hash(code) for code in re.findall(rf"<{kind}\b[^>]*>(.*?)</{kind}>", text, re.S)]
                  for kind in ("script", "style")}
        self.csp = ("default-src 'none'; connect-src 'self'; img-src 'self' data:; base-uri 'none';"
                    " form-action 'none'; frame-ancestors 'none';"
                    f" script-src {' '.join(hashes['script'])}; style-src {' '.join(hashes['style'])}")

    @classmethod
    def load(cls) -> Playground:
        return cls(resources.files("pipeline.origin").joinpath("playground.html").read_bytes())

    def response(self, if_none_match: str | None) -> Response:
        headers = {"Content-Type": "text/html; charset=utf-8", "ETag": self.etag, "Cache-Control": "no-cache",
                   "Vary": "Accept", "Content-Security-Policy": self.csp, "X-Content-Type-Options": "nosniff"}
        if none_match(if_none_match, self.etag):
            return _response(b"", 304, headers)
        return _response(self.page, 200, headers)


def _csp_hash(code: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished /graphql answer before If-None-Match: the Quart view and the ASGI fast lane
    (``lane.py``) both turn it into a response (a 304 when ``not_modified``)."""

    status: int
    headers: dict[str, str]
    body: bytes
    deterministic: bool = False
    """A pure function of (build, request): no load refusal (503), no fault (5xx, a failed
    resolver), so the origin may keep it for the build (``answer_cache``)."""

    def not_modified(self, if_none_match: str | None) -> bool:
        """RFC 9110 §13.1.2: a GET answer with an ETag matching ``If-None-Match`` becomes a 304."""
        etag = self.headers.get("ETag")
        return etag is not None and none_match(if_none_match, etag)


class GraphQLApi:
    """The /graphql endpoint over one ``LiveIndex``."""

    def __init__(self, live: LiveIndex, *, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.live = live
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.playground = Playground.load()
        self._catalogue: MediaCatalogue | None = None

    def __repr__(self) -> str:
        return f"<GraphQLApi [in flight: {self.in_flight}/{self.max_in_flight}]>"

    async def endpoint(self) -> Response:
        method = request.method
        accept = request.headers.get("Accept")
        try:
            if method in ("GET", "HEAD"):
                if "query" not in request.args and wants_html(accept):
                    return self.playground.response(request.headers.get("If-None-Match"))
                gql = request_from_args(request.args)
            elif method == "POST":
                gql = request_from_body(await _read_body(), request.mimetype)
            elif method == "OPTIONS":
                return _response(b"", 204, {"Allow": ALLOW})
            else:
                raise ApiError(ErrorCode.VALIDATION_ERROR, f"{method} is not allowed: use GET or POST",
                               status=405)
        except ApiError as exc:
            return _http(self.refusal(exc, accept), None)
        reply = await self.answer(gql, viewer_from(request.headers), queries_only=method != "POST", accept=accept,
                                  path=request.path)
        return _http(reply, request.headers.get("If-None-Match"))

    async def answer(self, gql: GraphQLRequest, viewer: Viewer, *, queries_only: bool, accept: str | None,
                     path: str = "/graphql") -> Reply:
        """Execute ``gql`` for ``viewer`` against the live build; ``queries_only`` for GET/HEAD."""
        if self.in_flight >= self.max_in_flight:
            return self.refusal(ApiError(ErrorCode.INTERNAL_ERROR, "the origin is at capacity (too many GraphQL"
                                         " requests in progress): retry in a second", status=503),
                                accept, {"Retry-After": "1"})
        self.in_flight += 1
        try:
            outcome, build_id = await self.live.read(partial(self._execute, gql, viewer, queries_only))
        except NoLiveBuild:
            return self.refusal(ApiError(ErrorCode.INTERNAL_ERROR, "nothing is published yet", status=503),
                                accept, {"Retry-After": "5"})
        finally:
            self.in_flight -= 1
        for failure in outcome.failures:
            log.error("graphql %s: resolver failed", path, exc_info=failure)
        body = _dumps(outcome.document)
        headers = {"Content-Type": response_type(accept), "X-Build": build_id}
        if outcome.status == 405:
            headers["Allow"] = ALLOW
        elif outcome.status == 401:  # RFC 9110 §15.5.2: a 401 names its challenge
            headers["WWW-Authenticate"] = 'Bearer realm="flowcms"'
        deterministic = not outcome.failures and outcome.status < 500 and outcome.status != 429
        if not queries_only:
            headers["Cache-Control"] = "no-store"
            return Reply(outcome.status, headers, body, deterministic)
        cacheable = outcome.status == 200 and not outcome.has_errors and not outcome.uses_viewer
        headers.update({"ETag": _etag(body, headers["Content-Type"]), "Vary": VARY, "Surrogate-Key": " ".join(outcome.keys),
                        "Cache-Control": PAGE_CACHE_CONTROL if cacheable else "no-store"})
        return Reply(outcome.status, headers, body, deterministic)

    def _execute(
        self, gql: GraphQLRequest, viewer: Viewer, queries_only: bool, snapshot: Snapshot
    ) -> tuple[Outcome, str]:
        """The worker-thread half: everything the request reads, in this one call."""
        try:
            catalogue = self._catalogue
            if catalogue is None or catalogue.build_id != snapshot.build_id:
                catalogue = self._catalogue = MediaCatalogue.load(snapshot.store, snapshot.build_id)
            return execute_request(snapshot, gql, viewer, catalogue, queries_only=queries_only), snapshot.build_id
        except Exception as exc:  # a damaged build or a bug: INTERNAL_ERROR, logged, never a stack trace
            document = error_document(ErrorCode.INTERNAL_ERROR, INTERNAL_MESSAGE)
            return Outcome(document=document, status=500, failures=(exc,)), snapshot.build_id

    def refusal(self, error: ApiError, accept: str | None, extra: dict[str, str] | None = None) -> Reply:
        """A request refused before execution (never memoized: cheap, and 429/503 depend on the moment)."""
        headers = {"Content-Type": response_type(accept), "Cache-Control": "no-store", **(extra or {})}
        if error.status == 405:
            headers["Allow"] = ALLOW
        return Reply(error.status, headers, _dumps(error_document(error.code, error.message, status=error.status)))


def _http(reply: Reply, if_none_match: str | None) -> Response:
    if reply.not_modified(if_none_match):
        return _response(b"", 304, reply.headers)
    return _response(reply.body, reply.status, reply.headers)


def unrouted(path: str, accept: str | None) -> Response:
    """A path under ``/graphql/`` that is not the endpoint: a 404 in GraphQL's error shape."""
    body = _dumps(error_document(ErrorCode.NOT_FOUND, f"no GraphQL endpoint at {path[:200]}: it is /graphql",
                                 status=404))
    return _response(body, 404, {"Content-Type": response_type(accept), "Cache-Control": "no-store"})


def body_too_large() -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, f"the body is larger than {MAX_BODY_BYTES} bytes", status=413)


async def _read_body() -> bytes:
    """The request body, refused with 413 past ``MAX_BODY_BYTES`` (by Content-Length first)."""
    too_large = body_too_large()
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.body:
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)
    except RequestEntityTooLarge:
        raise too_large from None
    return b"".join(chunks)


def _dumps(document: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON in the document's own key order (``data`` before ``errors`` is the
    executor's). orjson writes json.dumps's bytes at a fraction of the cost; what it
    refuses (integers beyond 64 bits from a custom scalar) goes to the stdlib encoder."""
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def register(app: QuartTrio, api: GraphQLApi) -> None:
    """Route /graphql on the origin app (before the live site's catch-all)."""
    app.add_url_rule("/graphql", "graphql", api.endpoint, methods=METHODS)
