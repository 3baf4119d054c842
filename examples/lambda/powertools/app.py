"""An aws-lambda-powertools function, as written for AWS Lambda."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service="todos")
app = APIGatewayRestResolver()


@app.get("/lambda/todos")
def list_todos() -> dict:
    owner = app.current_event.get_query_string_value(name="owner", default_value="everyone")
    logger.info("listing todos", extra={"owner": owner})
    return {"owner": owner, "todos": [{"id": 1, "title": "deploy to Donjon"}]}


@app.post("/lambda/todos")
def add_todo() -> tuple[dict, int]:
    todo = app.current_event.json_body
    logger.info("adding a todo", extra={"title": todo.get("title")})
    return {"id": 2, "title": todo.get("title")}, 201


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
