"""The invoke route's answers captured from a live node, for a before/after comparison
(`direct`, docs/performance.md): run it with each tree's interpreter, then `--compare`.

    /work/wt-base34/.venv/bin/python bench/direct_answers.py --out before.json
    .venv/bin/python bench/direct_answers.py --out after.json
    python bench/direct_answers.py --compare before.json after.json

It starts `donjon serve` (tests/harness.py, this interpreter's tree) with the settings of
tests/security/test_attack_direct_route.py, sends every shape of request there alone on
a fresh TLS connection, and records each answer and what the connection did next, with the
date and random ids made fixed. For measurement only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "security"))


def capture(out: Path) -> None:
    import test_attack_direct_route as t  # type: ignore[import-not-found]  # tests/security

    from harness import FUNCTIONS, start_node

    root = Path(tempfile.mkdtemp(prefix="direct-answers-"))
    node = start_node(
        root / "data",
        {
            "DONJON_BODY_TIMEOUT_S": "2",
            "DONJON_BODY_DEADLINE_S": "4",
            "DONJON_REFUSAL_HOLD_S": str(t.HOLD_S),
        },
    )
    try:
        warm = root / "probe-warm"
        warm.mkdir()
        for f in (FUNCTIONS / "probe").iterdir():
            (warm / f.name).write_bytes(f.read_bytes())
        manifest = (warm / "donjon.yaml").read_text()
        (warm / "donjon.yaml").write_text(
            manifest.replace("name: probe", "name: probe-warm") + "isolation: warm\n"
        )
        node.deploy(warm)
        schema = root / "schema"
        schema.mkdir()
        (schema / "donjon.yaml").write_text(
            "name: direct-schema\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
            "isolation: warm\nlimits: {body: 1KiB}\n"
            "input_schema: {type: object, required: [url]}\n"
        )
        (schema / "main.py").write_text("def handler(event, context):\n    return event\n")
        node.deploy(schema)
        quar = root / "quar"
        quar.mkdir()
        (quar / "donjon.yaml").write_text(
            "name: direct-quar\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
        )
        (quar / "main.py").write_text("def handler(event, context):\n    return {}\n")
        node.deploy(quar)
        with node.client() as c:
            r = c.post("/v1/functions/direct-quar/quarantine", json={"reason": "review"})
            assert r.status_code in (200, 201), r.text
        key = node.admin_key
        limited = t._key(node, ["probe-warm"], rate="1/hour", burst=1)
        r = t._request
        shapes = {
            "ok": r(key=key),
            "ok-close": r(key=key, extra="Connection: close\r\n"),
            "ok-1.0": r(key=key, version="1.0"),
            "ok-1.0-keep-alive": r(key=key, version="1.0", extra="Connection: keep-alive\r\n"),
            "ok-no-body": r(key=key, body=b"", length=""),
            "async": r(key=key, extra="Prefer: respond-async\r\n"),
            "not-json": r(key=key, body=b"{nope"),
            "too-deep": r(key=key, body=b"[" * 200 + b"]" * 200),
            "no-key": r(),
            "bad-key": r(key="dj_nope_" + "x" * 40),
            "not-granted": r(key=t._key(node, ["direct-schema"])),
            "no-function": t._filler(node),
            "too-large-declared": r(
                path="/v1/functions/direct-schema/invoke", key=key, body=b"", length="4096"
            ),
            "huge-body": r(key=key, body=b"", length=str(100 * 1024 * 1024)),
            "short-body": r(key=key, body=b'{"op": "echo"}', length="100"),
            "schema": r(path="/v1/functions/direct-schema/invoke", key=key, body=b"{}"),
            "function-raises": r(key=key, body=b'{"op": "raise", "text": "x"}'),
            "quarantined": r(path="/v1/functions/direct-quar/invoke", key=key, body=b"{}"),
            "timeout": r(key=key, body=b'{"op": "sleep", "s": 3}'),
            "get": r(method="GET", key=key, body=b""),
            "head": r(method="HEAD", key=key, body=b""),
            "limited-ok": r(key=limited),
            "limited-429": r(key=limited),
        }
        answers = {}
        for name, request in shapes.items():
            answer, after = t._direct(node, request, head_only=name == "head")
            answers[name] = [
                t._normal(answer).decode("latin-1"),
                t._normal(after).decode("latin-1"),
            ]
        out.write_text(json.dumps(answers, indent=1))
    finally:
        node.stop()


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    differ = 0
    for name in a:
        same = a[name] == b.get(name)
        differ += not same
        print(f"{'same  ' if same else 'DIFFER'} {name}: {a[name][0].split(chr(13))[0]}")
        if not same:
            print("  before:", a[name])
            print("  after: ", b.get(name))
    print(f"{len(a) - differ} of {len(a)} shapes identical")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path)
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    capture(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
