# ruff: noqa

"""Cross-module SQL injection: a repository module and a database helper build or run SQL
the handler's event reaches (a module alias, a class of another module and its instances, a package)."""
import app.db as db
from app import repo
from app.queries import reports
from app.repo import UserRepo

store = UserRepo()


def handler(event, context):
    user = repo.find_user(event["user"])
    db.run_sql("DELETE FROM sessions WHERE token = '%s'" % event["token"])
    UserRepo.rename(event["id"], event["name"])
    store.touch(event["id"])  # an instance made at module level
    UserRepo().purge(event["before"])
    return {"user": user, "sales": reports.monthly(event["month"])}
