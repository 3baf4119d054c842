# ruff: noqa

"""Builds a job's command line from the job description."""


def command_for(job):
    return "process --input " + job["input"]
