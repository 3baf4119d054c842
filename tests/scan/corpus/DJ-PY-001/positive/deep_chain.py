# ruff: noqa

"""Event data passed down nine helpers before it reaches a shell."""

import os


def step0(value):
    return step1(value)


def step1(value):
    return step2(value)


def step2(value):
    return step3(value)


def step3(value):
    return step4(value)


def step4(value):
    return step5(value)


def step5(value):
    return step6(value)


def step6(value):
    return step7(value)


def step7(value):
    return step8(value)


def step8(value):
    return step9(value)


def step9(value):
    os.system("echo " + value)  # expect: DJ-PY-001@high


def handler(event, context):
    step0(event["text"])
