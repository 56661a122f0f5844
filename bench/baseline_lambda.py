"""The baseline of bench/cold_start.py: a minimal FastAPI + Mangum + boto3 Lambda doing the same
GET from the same DynamoDB table, written the way a first version usually is."""

import os

import boto3
from fastapi import FastAPI, HTTPException
from mangum import Mangum

TABLE = os.environ["BASELINE_TABLE"]
dynamodb = boto3.client("dynamodb")
app = FastAPI()


@app.get("/v1/users/{user_id}")
async def get_user(user_id: str) -> dict[str, str]:
    key = {"pk": {"S": f"USER#{user_id}"}, "sk": {"S": "USER"}}
    item = dynamodb.get_item(TableName=TABLE, Key=key).get("Item")
    if item is None:
        raise HTTPException(404)
    return {name: next(iter(value.values())) for name, value in item.items()}


handler = Mangum(app)
