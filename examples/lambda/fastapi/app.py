"""A FastAPI app on Lambda through Mangum, unchanged."""

from fastapi import FastAPI, Response
from mangum import Mangum
from pydantic import BaseModel, Field

app = FastAPI()


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    price: float = Field(gt=0)


@app.get("/lambda/hello")
def hello(name: str = "world") -> dict:
    return {"message": f"hello {name}"}


@app.post("/lambda/items", status_code=201)
def create_item(item: Item, response: Response) -> dict:
    response.set_cookie("last-item", item.name, path="/fn/lambda/items")
    return {"item": item.model_dump(), "total": round(item.price * 1.2, 2)}


handler = Mangum(app, lifespan="off")
