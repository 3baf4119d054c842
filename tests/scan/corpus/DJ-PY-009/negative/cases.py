# ruff: noqa

"""Private temporary files and directories."""
import tempfile


def handler(event, context):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        out.write(event["csv"].encode())
    fd, path = tempfile.mkstemp()
    with tempfile.TemporaryDirectory() as workdir:
        with open(f"{workdir}/report.csv", "w") as report:
            report.write("x")
    return {"path": path, "fd": fd}
