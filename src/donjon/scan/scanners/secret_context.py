"""Where a secret-looking value sits, and how much that says about it.

Test suites, fixtures and sample events are full of made-up credentials (a fake key for a
local emulator, a recorded Kinesis event); documentation lines (comments, docstrings) hold
examples. Findings there are still reported, but graded below the deploy gate: the code
that runs is what the gate is for.
"""

from __future__ import annotations

from pathlib import PurePosixPath

__all__ = ["CODE_SUFFIXES", "is_comment_line", "is_sample_path"]

#: Directory names whose files are tests, fixtures, sample events or examples.
_SAMPLE_DIRS = frozenset(
    {
        "test",
        "tests",
        "testing",
        "testdata",
        "test_data",
        "fixtures",
        "fixture",
        "__fixtures__",
        "__tests__",
        "__mocks__",
        "mocks",
        "samples",
        "sample",
        "examples",
        "example",
    }
)
#: Directories of recorded events and payloads: their data files are samples (an
#: ``events/`` package of handler code is code).
_EVENT_DIRS = frozenset({"events", "sample_events", "payloads"})
_DATA_SUFFIXES = frozenset({".json", ".yaml", ".yml", ".xml", ".txt"})
#: Files that are tests wherever they live.
_TEST_SUFFIXES = ("_test.py", "_tests.py", ".test.js", ".test.ts", ".spec.js", ".spec.ts")
#: Languages where an unquoted value after ``key:`` or ``key =`` is an expression, not text.
CODE_SUFFIXES = frozenset(
    {".py", ".pyw", ".pyi", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".go", ".java",
     ".kt", ".rb", ".php", ".swift", ".cs", ".c", ".cc", ".cpp", ".h", ".rs", ".scala"}
)  # fmt: skip
_COMMENT_STARTS = ("#", "//", "/*", "* ", "--", ";", "<!--")


def is_sample_path(rel: str) -> bool:
    """Whether the file at `rel` is a test, a fixture, a sample event or an example."""
    path = PurePosixPath(rel)
    name = path.name
    if name == "conftest.py" or (name.startswith("test_") and name.endswith(".py")):
        return True
    if name.endswith(_TEST_SUFFIXES):
        return True
    dirs = {part.lower() for part in path.parts[:-1]}
    if dirs & _SAMPLE_DIRS:
        return True
    return bool(dirs & _EVENT_DIRS) and path.suffix.lower() in _DATA_SUFFIXES


def is_comment_line(line: str) -> bool:
    """Whether the whole line is a comment (documentation, not configuration or code)."""
    return line.lstrip().startswith(_COMMENT_STARTS)
