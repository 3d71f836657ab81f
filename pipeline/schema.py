"""Content-type schemas (``types/<name>.yaml``) and field validation.

Validation never stops at the first problem: it returns every ``ContentError`` of a
file so one build run reports all of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pipeline import dates
from pipeline.errors import ContentError
from pipeline.frontmatter import FrontMatter

FIELD_TYPES = ("string", "text", "integer", "number", "boolean", "datetime", "list", "url")
STATUSES = ("draft", "published", "archived")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_URL_RE = re.compile(r"^(?:https?://\S+|/\S*)$")

# Front-matter fields every entry may carry, with their types.
STANDARD_FIELDS: dict[str, str] = {
    "id": "string",
    "title": "string",
    "slug": "string",
    "status": "string",
    "contentType": "string",
    "tags": "list",
    "author": "string",
    "publishedAt": "datetime",
    "updatedAt": "datetime",
    "publishAt": "datetime",
    "unpublishAt": "datetime",
    "excerpt": "text",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    type: str
    required: bool = False
    enum: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentType:
    name: str
    title: str
    description: str = ""
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)

    def spec(self, key: str) -> FieldSpec | None:
        if key in self.fields:
            return self.fields[key]
        standard = STANDARD_FIELDS.get(key)
        return FieldSpec(type=standard) if standard else None

    def fingerprint_data(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "description": self.description}


def parse_content_type(path: str, text: str) -> ContentType:
    """``types/blog.yaml`` → ContentType; raises ContentError pointing at the file."""
    name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    try:
        data = yaml.load(text, Loader=yaml.CSafeLoader) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ContentError(
            path, (mark.line + 1) if mark else 1, (mark.column + 1) if mark else 1,
            "yaml", f"invalid YAML: {exc.problem}",
        ) from None
    if not isinstance(data, dict):
        raise ContentError(path, 1, 1, "schema", "a content type must be a mapping")
    unknown = set(data) - {"title", "description", "fields"}
    if unknown:
        raise ContentError(path, 1, 1, "schema", f"unknown key {sorted(unknown)[0]!r}")
    fields: dict[str, FieldSpec] = {}
    raw_fields = data.get("fields") or {}
    if not isinstance(raw_fields, dict):
        raise ContentError(path, 1, 1, "schema", "'fields' must be a mapping")
    for key, raw in raw_fields.items():
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ContentError(path, 1, 1, "schema", f"field {key!r} must be a mapping")
        ftype = raw.get("type", STANDARD_FIELDS.get(key, "string"))
        if ftype not in FIELD_TYPES:
            raise ContentError(
                path, 1, 1, "schema",
                f"field {key!r} has unknown type {ftype!r} (one of {', '.join(FIELD_TYPES)})",
            )
        if key in STANDARD_FIELDS and ftype != STANDARD_FIELDS[key]:
            raise ContentError(path, 1, 1, "schema", f"standard field {key!r} is a {STANDARD_FIELDS[key]}")
        enum = raw.get("enum")
        if enum is not None and not isinstance(enum, list):
            raise ContentError(path, 1, 1, "schema", f"field {key!r}: enum must be a list")
        fields[key] = FieldSpec(
            type=ftype, required=bool(raw.get("required", False)),
            enum=tuple(enum) if enum is not None else None,
        )
    title = data.get("title", name.capitalize())
    return ContentType(
        name=name, title=str(title), description=str(data.get("description", "") or ""),
        fields=fields,
    )


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "mapping"}.get(type(value), type(value).__name__)


def check_value(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """(normalised value, problem or None)."""
    t = spec.type
    if t in ("string", "text", "url"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # `version: 1.2` reads as a float; authors mean text
        if not isinstance(value, str):
            return value, f"must be a string, not a {_type_name(value)}"
        if t == "url" and not _URL_RE.match(value):
            return value, f"{value!r} is not a URL (http(s)://… or /path)"
    elif t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"must be an integer, not a {_type_name(value)}"
    elif t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"must be a number, not a {_type_name(value)}"
    elif t == "boolean":
        if not isinstance(value, bool):
            return value, f"must be true or false, not {value!r}"
    elif t == "datetime":
        try:
            value = dates.normalise(value)
        except dates.DateParseError as exc:
            return value, str(exc)
    elif t == "list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            return value, "must be a list of strings"
        value = [str(v) for v in value]
    if spec.enum is not None:
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in spec.enum]
        if bad:
            allowed = ", ".join(str(e) for e in spec.enum)
            return value, f"{bad[0]!r} is not one of: {allowed}"
    return value, None


def validate_fields(
    path: str, fm: FrontMatter, ctype: ContentType
) -> tuple[dict[str, Any], list[ContentError]]:
    """Check every front-matter field against the type; return normalised values and all problems."""
    values: dict[str, Any] = {}
    errors: list[ContentError] = []
    for key, raw in fm.meta.items():
        key = str(key)
        spec = ctype.spec(key)
        if spec is None:
            allowed = sorted(set(STANDARD_FIELDS) | set(ctype.fields))
            errors.append(ContentError(
                path, fm.line_of(key), 1, "unknown-field",
                f"unknown field {key!r} for content type {ctype.name!r} "
                f"(allowed: {', '.join(allowed)}; declare it in types/{ctype.name}.yaml)",
            ))
            continue
        if raw is None:
            continue
        value, problem = check_value(spec, raw)
        if problem:
            errors.append(ContentError(path, fm.line_of(key), 1, "type", f"{key}: {problem}"))
            continue
        values[key] = value
    for key, spec in ctype.fields.items():
        if spec.required and values.get(key) in (None, "", []) and not any(
            e.line == fm.line_of(key) and e.message.startswith(key) for e in errors
        ):
            errors.append(ContentError(
                path, 1, 1, "required", f"missing required field {key!r} ({ctype.name})"
            ))
    return values, errors
