# ruff: noqa

from jobs import jobs


def handler(event, context):
    jobs.launch(event["job"])
