"""Size limits: modules <= 400 lines, functions <= 60 lines.

ruff's complexity rules (C901, PLR0912, PLR0915 in pyproject.toml) approximate these; this test holds the
exact line counts. Tests are exempt from the function limit (a scenario reads top to bottom) but not from the
module limit.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("core", "schemas", "connectors", "streams", "bench", "highway")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _python_files(*packages: str) -> list[tuple[str, Path]]:
    files = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            files.append((rel, path))
    assert files, f"no python files found under {packages}"
    return files


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def function_sizes(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function and method, counted from its first decorator."""
    sizes = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            assert node.end_lineno is not None
            sizes.append((node.name, start, node.end_lineno - start + 1))
    return sizes


def test_modules_are_at_most_400_lines() -> None:
    offenders = [
        f"{rel}: {lines} lines"
        for rel, path in _python_files(*SOURCE_PACKAGES, "tests")
        if (lines := _line_count(path)) > MAX_MODULE_LINES
    ]
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(offenders)


def test_functions_are_at_most_60_lines() -> None:
    offenders = [
        f"{rel}:{line} {name}() is {size} lines"
        for rel, path in _python_files(*SOURCE_PACKAGES)
        for name, line, size in function_sizes(path.read_text(encoding="utf-8"))
        if size > MAX_FUNCTION_LINES
    ]
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


def test_function_size_counts_from_the_first_decorator_to_the_last_line() -> None:
    source = "@a\n@b(\n    1,\n)\ndef f() -> None:\n    x = 1\n\n    return None\n"
    assert function_sizes(source) == [("f", 1, 8)]
