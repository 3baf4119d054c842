"""`ServerlessFormat`: the Serverless Framework service files of a project read into
`App`s (functions, their APIs, and the buckets, queues, log groups and identity pools
of ``resources.Resources``, read as CloudFormation by the cfn package)."""

from __future__ import annotations

from donjon.scan.iac.cfn.props import as_bool, child
from donjon.scan.iac.cfn.resources import (
    build_buckets,
    build_log_groups,
    build_queues,
    build_user_pools,
)
from donjon.scan.iac.cfn.values import RMap
from donjon.scan.iac.interface import IacError, Loaded, TemplateFormat
from donjon.scan.iac.model import App, Function, HttpApi, TemplateKind, TriggerKind, Val, Where
from donjon.scan.iac.serverless.document import Document, decode, is_candidate
from donjon.scan.iac.serverless.events import cors_credentials, cors_origins
from donjon.scan.iac.serverless.functions import build_functions
from donjon.scan.iac.serverless.literals import literals
from donjon.scan.project import Project

__all__ = ["ServerlessFormat", "read_text"]


def _access_log(provider: RMap, key: str) -> Val[bool]:
    """``provider.logs.restApi``/``httpApi``: ``true`` or a mapping turns them on."""
    value, line = child(provider, "logs", key)
    if value is None:
        return Val()
    flag = as_bool(value)
    return Val.of(flag if flag is not None else isinstance(value, dict), line)


def _apis(doc: Document, functions: tuple[Function, ...]) -> tuple[HttpApi, ...]:
    """The REST API and HTTP API Serverless makes when some function has such events."""
    provider = doc.section("provider")
    out: list[HttpApi] = []
    for kind, name, logs in (
        (TriggerKind.REST_API, "ApiGatewayRestApi", "restApi"),
        (TriggerKind.HTTP_API, "HttpApi", "httpApi"),
    ):
        routes = [t for f in functions for t in f.triggers if t.kind is kind]
        if not routes:
            continue
        where = Where(doc.path, routes[0].where.line, name)
        cors: Val[str] = Val()
        credentials: Val[bool] = Val()
        if kind is TriggerKind.HTTP_API:
            value, line = child(provider, "httpApi", "cors")
            cors = cors_origins(value, line, False)
            credentials = cors_credentials(value, line)
        tracing, line = child(provider, "tracing", "apiGateway")
        out.append(
            HttpApi(
                where,
                kind,
                cors_origins=cors,
                access_log=_access_log(provider, logs),
                tracing=Val.of(as_bool(tracing) is True, line) if tracing is not None else Val(),
                cors_credentials=credentials,
            )
        )
    return tuple(out)


def build_app(doc: Document) -> App:
    functions = build_functions(doc)
    groups = build_log_groups(doc.resources)
    return App(
        doc.path,
        TemplateKind.SERVERLESS,
        functions=functions,
        buckets=build_buckets(doc.resources),
        queues=build_queues(doc.resources),
        apis=_apis(doc, functions),
        log_groups=tuple(dict.fromkeys(groups.values())),
        user_pools=build_user_pools(doc.resources),
        literals=literals(doc),
    )


def read_text(path: str, text: str) -> App | None:
    """The app of one service file, None when it is not one. Raises `IacError`."""
    if not is_candidate(path):
        return None
    doc = decode(path, text)
    if doc is None:
        return None
    try:
        return build_app(doc)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as e:
        # A shape the loader did not expect: reported, never fatal to the scan.
        raise IacError(
            f"{path}: could not be read as a Serverless service ({type(e).__name__}: {e})"
        ) from e


class ServerlessFormat(TemplateFormat):
    """Serverless Framework ``serverless.yml`` / ``.yaml`` / ``.json``."""

    name = "serverless"

    def load(self, project: Project) -> Loaded:
        apps: list[App] = []
        notes: list[str] = []
        for source in project.files:
            if not is_candidate(source.rel):
                continue
            try:
                app = read_text(source.rel, source.text)
            except IacError as e:
                notes.append(e.message)
                continue
            if app is not None:
                apps.append(app)
        return Loaded(tuple(apps), tuple(notes))
