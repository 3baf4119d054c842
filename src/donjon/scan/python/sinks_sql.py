"""SQL injection (DJ-PY-003) through any database API, not only DB-API ``.execute``.

Three shapes of API:

- methods whose first argument is a statement whatever the library
  (``.execute``/``.executemany``/``.raw``... in sinks.py, ``.exec_driver_sql`` here);
- methods with generic names (``.query``, ``.run``, asyncpg's ``.fetch``...), which
  are a statement only when the text is known to be SQL: its known prefix starts
  with an SQL verb (``db.query("SELECT ... " + x)``), so ``df.query(expr)`` or
  ``asyncio.run(main(event))`` are not read as SQL;
- the AWS data APIs, whose statement is a keyword argument: RDS Data API
  ``execute_statement(sql=...)``, Redshift Data API ``execute_statement(Sql=...)``,
  Athena and Timestream ``QueryString=``, DynamoDB PartiQL ``Statement=`` (also inside
  ``Statements=[{"Statement": ...}]`` and ``TransactStatements=``).

Grading is the rule's own: event data in the statement -> high confidence; a
statement built by formatting from values Donjon could not trace -> low; constants
and placeholders with separate parameters (``Parameters=[...]``, ``?``, ``%s``,
``:name``) -> nothing, because parameters are not part of the statement's text.
"""

from __future__ import annotations

import ast
import re

from donjon.scan.model import Confidence
from donjon.scan.python.hits import CallSite
from donjon.scan.python.values import Value

__all__ = ["SQL_CALLS", "check_sql_api", "grade_sql"]

_HIGH, _LOW = Confidence.HIGH, Confidence.LOW

#: Functions whose first argument is SQL text.
SQL_CALLS = frozenset(
    {
        "pandas.read_sql",
        "pandas.read_sql_query",
        "pandas.io.sql.read_sql",
        "pandas.io.sql.read_sql_query",
        "sqlalchemy.text",
        "sqlalchemy.sql.text",
        "sqlalchemy.sql.expression.text",
        "django.db.models.RawSQL",
        "django.db.models.expressions.RawSQL",
        "psycopg2.sql.SQL",
        "psycopg.sql.SQL",
    }
)
#: Methods whose first argument is a statement, whatever the object.
_STATEMENT_METHODS = frozenset({"exec_driver_sql"})
#: Methods that take a statement in some database libraries and mean something else
#: in others: a statement only when its text is known to be SQL.
_GENERIC_METHODS = frozenset(
    {"query", "run", "fetch", "fetchrow", "fetchval", "fetch_all", "fetch_one", "fetch_val"}
)
_SQL_TEXT = re.compile(
    r"\s*\(?\s*(?:SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|DROP|ALTER|TRUNCATE|REPLACE|MERGE"
    r"|UPSERT|CALL|EXEC|EXECUTE|GRANT|REVOKE|SHOW|DESCRIBE|EXPLAIN|PRAGMA|UNLOAD|COPY)\b",
    re.IGNORECASE,
)
#: AWS data APIs: method -> keywords holding one statement, or a list of statements.
_AWS_STATEMENT = {
    "execute_statement": ("sql", "Sql", "Statement"),
    "batch_execute_statement": ("sql", "Sqls"),
    "start_query_execution": ("QueryString",),
    "query": ("QueryString",),
}
#: AWS data APIs whose keyword holds a list of {"Statement": ..., "Parameters": ...}.
_AWS_STATEMENT_LISTS = {
    "batch_execute_statement": "Statements",
    "execute_transaction": "TransactStatements",
}


def grade_sql(site: CallSite, query: Value | None, what: str, *, traced: bool = True) -> None:
    """Report `query` reaching `what`: high when event data is in it (if `traced`, the
    statement itself was seen), low when it is built from values of unknown origin."""
    if query is None or query.const:
        return
    if query.taint is not None and traced:
        site.report(
            "DJ-PY-003",
            _HIGH,
            f"event data reaches the SQL of {what}",
            value=query,
            sink_note=f"reaches {what}",
        )
    elif query.taint is not None:
        site.report("DJ-PY-003", _LOW, f"statements for {what} are built from event data")
    elif query.built:
        site.report("DJ-PY-003", _LOW, f"SQL for {what} is built by string formatting")


def _statement(site: CallSite) -> Value | None:
    return site.arg(0, "sql") or site.arg(0, "query") or site.arg(0, "statement")


def _statement_list(site: CallSite, keyword: str, what: str) -> None:
    """``Statements=[{"Statement": ..., "Parameters": [...]}, ...]``: each statement on
    its own, so event data in the parameters is not read as part of the SQL."""
    node = site.keyword_node(keyword)
    if node is None:
        return
    if isinstance(node, ast.List | ast.Tuple) and site.evaluate is not None:
        for item in node.elts:
            if not isinstance(item, ast.Dict):
                break
            for key, value in zip(item.keys, item.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "Statement":
                    grade_sql(site, site.evaluate(value), what)
        else:
            return
    grade_sql(site, site.kwargs.get(keyword), what, traced=False)


def check_sql_api(site: CallSite) -> None:
    """The SQL sinks of database APIs beyond DB-API's ``.execute`` (see the module doc)."""
    method = site.method or ""
    what = f".{method}()"
    if method in _STATEMENT_METHODS:
        grade_sql(site, _statement(site), what)
        return
    for keyword in _AWS_STATEMENT.get(method, ()):
        if keyword in site.kwargs:
            grade_sql(site, site.kwargs[keyword], f"{what} ({keyword}=)")
            return
    if method in _AWS_STATEMENT and "**" in site.kwargs:
        # execute_statement(**params): the statement is somewhere in `params`, beside
        # parameters that may rightly hold event data.
        grade_sql(site, site.kwargs["**"], f"{what} (**)", traced=False)
        return
    if method in _AWS_STATEMENT_LISTS:
        _statement_list(site, _AWS_STATEMENT_LISTS[method], what)
        return
    if method in _GENERIC_METHODS:
        query = _statement(site)
        if query is not None and query.prefix is not None and _SQL_TEXT.match(query.prefix):
            grade_sql(site, query, what)
