"""Pure-core modules do no I/O: they import none of the I/O or clock modules (STYLE.md 2.1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "pipeline/errors.py", "pipeline/config.py", "pipeline/dates.py", "pipeline/frontmatter.py",
    "pipeline/entry.py", "pipeline/schema.py", "pipeline/markdown.py", "pipeline/graph.py",
    "pipeline/cursor.py", "pipeline/render.py", "pipeline/documents.py", "pipeline/origin/conditional.py",
    "pipeline/origin/answer_cache.py",
    "edgeproxy/errors.py", "edgeproxy/headers.py", "edgeproxy/policy.py", "edgeproxy/cache.py",
    "edgeproxy/http1.py", "edgeproxy/stats.py", "edgeproxy/purge.py", "edgeproxy/h2wire.py",
    "edgeproxy/publish_metrics.py", "edgeproxy/ranges.py", "edgeproxy/encoding.py",
]
PURE_NAMES = {m.removesuffix(".py").replace("/", ".") for m in PURE}
FORBIDDEN = {"trio", "socket", "sqlite3", "os", "time", "pathlib", "shutil", "subprocess",
             "logging", "multiprocessing", "ssl", "h11", "h2"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    package = module.split("/")[0]
    bad = {name for name in imported_modules(ROOT / module)
           if name.split(".")[0] in FORBIDDEN
           or (name.startswith(("pipeline", "edgeproxy")) and name not in PURE_NAMES and name != package)}
    assert not bad, f"{module} imports {sorted(bad)}"


def test_pipeline_and_edgeproxy_do_not_import_each_other() -> None:
    for path in (ROOT / "pipeline").rglob("*.py"):
        assert not any(n.split(".")[0] == "edgeproxy" for n in imported_modules(path)), path
    for path in (ROOT / "edgeproxy").rglob("*.py"):
        assert not any(n.split(".")[0] == "pipeline" for n in imported_modules(path)), path
