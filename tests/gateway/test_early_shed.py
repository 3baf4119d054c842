"""EarlyShed's count of the heads on their way: only invokers count before a shed, each
head is asked once, and a call the recount lets through still meets the lag shed.

The pool here is a stand-in with one rule (it sheds past `room` calls on their way);
the real pool's answers and a real node are in tests/security/test_attack_keyless_heads.py.
"""

from __future__ import annotations

import asyncio
import gc
import random
from types import FrameType, SimpleNamespace
from typing import Any, cast

import pytest

from donjon.gateway import early_shed
from donjon.gateway.early_shed import _LAG_DETAIL, EarlyShed, _OnWay
from donjon.gateway.limited_callers import LimitedCallers
from donjon.identity import Principal
from donjon.sandbox import CallShed

GOOD = "dj_may-invoke"
#: A key that may invoke, over its own rate in the tests that say so.
OVER = "dj_over-its-rate"
_URL = b"/v1/functions/f/invoke"


class _Pool:
    """Sheds a call once `room` calls are on their way, or any call once `full`; records
    what it was asked."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.full = False
        #: Its refusals are at the node's bound alone (other functions filled the node).
        self.node_only = False
        self.asked: list[int] = []
        self.refused = 0
        #: The refusals that say the function's queue is full (`counts`).
        self.counted = 0

    def check_in_flight(self, config: Any, in_flight: int) -> None:
        self.asked.append(in_flight)
        if self.full or in_flight >= self.room:
            raise CallShed("overloaded: full", retry_after_s=2.0, node_only=self.node_only)

    def refused_at_head(self, config: Any, shed: CallShed, *, counts: bool = True) -> None:
        self.refused += 1
        self.counted += counts


class _Keys:
    """A key index that knows two keys; counts the keys it is asked to check."""

    def __init__(self) -> None:
        self.checks = 0

    def check(self, token: str) -> tuple[Principal | None, None]:
        self.checks += 1
        label = {GOOD: "key:good", OVER: "key:over"}.get(token)
        return (None if label is None else cast(Principal, SimpleNamespace(label=label))), None


class _Lag:
    """A lag shed that sheds every call it is asked about; records what armed it."""

    def __init__(self, sheds: bool = True) -> None:
        self.asked = 0
        self.shed_all = sheds
        self.armed: list[str] = []

    def sheds(self, name: str) -> bool:
        self.asked += 1
        return self.shed_all

    def overflowed(self, name: str) -> None:
        self.armed.append(name)


class _Denials:
    async def deny(self, event: Any, client: str) -> None:
        pass


def _shed(room: int, lag: _Lag | None = None) -> tuple[EarlyShed, _Pool, _Keys]:
    pool, keys = _Pool(room), _Keys()
    node = SimpleNamespace(
        pool=pool,
        throttles=SimpleNamespace(in_force={}),
        limited=LimitedCallers(),
        key_index=keys,
        registry=SimpleNamespace(
            by_name={"f": SimpleNamespace(config=SimpleNamespace(function="f"))}
        ),
    )
    metrics = SimpleNamespace(shed=lambda name: None)
    return (
        EarlyShed(cast(Any, node), cast(Any, _Denials()), cast(Any, metrics), cast(Any, lag)),
        pool,
        keys,
    )


def _kept() -> bool:
    """The connection stays open after a 503 (what the protocol's `_keeps` answers)."""
    return True


def _head(token: str | None) -> list[tuple[bytes, bytes]]:
    head = [(b"host", b"node")]
    if token is not None:
        head.append((b"authorization", f"Bearer {token}".encode()))
    return head


@pytest.fixture(autouse=True)
def _policy_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every principal the key index knows may invoke (the policy is not what is tested)."""
    monkeypatch.setattr(early_shed, "decide", lambda *_: SimpleNamespace(allowed=True))


def _status(answer: bytes | None) -> int:
    return 200 if answer is None else int(answer.split(b" ", 2)[1])


def test_on_way_counts_every_head_and_asks_each_once_oldest_first() -> None:
    """Heads added, some known, some not: all count; `invokers` asks only the unasked,
    once; `pop` takes the oldest out, its verdict with it, and says when none is left."""
    table: dict[str, _OnWay] = {}
    on_way = table["f"] = _OnWay(table, "f")
    asked: list[bytes] = []

    def invoker(head: list[tuple[bytes, bytes]]) -> bool:
        asked.append(head[0][1])
        return head[0][1] == b"yes"

    on_way.add(True)
    on_way.add([(b"h", b"no")])
    on_way.add(True)  # known, behind an unasked head
    on_way.add([(b"h", b"yes")])
    assert on_way.count == 4
    assert on_way.invokers(invoker) == 3
    assert asked == [b"no", b"yes"]
    assert on_way.invokers(invoker) == 3 and asked == [b"no", b"yes"]  # asked once
    on_way.add([(b"h", b"no")])
    assert on_way.invokers(invoker) == 3 and asked == [b"no", b"yes", b"no"]
    assert not on_way.pop()  # the first, an invoker
    assert on_way.count == 4 and on_way.invokers(invoker) == 2
    assert not on_way.pop() and on_way.invokers(invoker) == 2  # "no"
    assert not on_way.pop() and not on_way.pop()
    assert on_way.invokers(invoker) == 0 and table == {"f": on_way}
    assert on_way.pop() and table == {}  # the last, and with it the function's entry


def test_heads_without_a_key_are_let_through_and_do_not_shed_an_invoker() -> None:
    """Room for one call: three keyless heads go through (the app answers them 401);
    the invoker's head behind them is not shed, the next invoker's is; each head's key
    is checked once; the pop `answer` gave each takes the count back to nothing."""

    async def run() -> None:
        shed, pool, keys = _shed(room=1)
        let_through = [
            shed.answer(b"POST", _URL, _head(token), "client", _kept)
            for token in (None, "dj_unknown", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln", GOOD)
        ]
        assert [answer for _, answer in let_through] == [None] * 4
        shed_off = shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)
        assert shed_off[0] is None and _status(shed_off[1]) == 503
        assert keys.checks == 3  # the unknown key and the two invokers (none, JWT: unasked)
        assert pool.refused == 1 and shed.shed == 1
        for done, _ in let_through:
            assert shed._on_way["f"].count > 0
            assert done is not None
            done()
        assert shed._on_way == {}
        assert _status(shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1]) == 200

    asyncio.run(run())


def test_a_call_the_recount_lets_through_still_meets_the_lag_shed() -> None:
    """While the loop lags (a lag shed that sheds all): an invoker's call behind keyless
    heads that the recount lets through is shed by the lag shed, as it is alone."""

    async def run() -> None:
        lag = _Lag()
        shed, _, _ = _shed(room=1, lag=lag)
        alone = shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1]
        assert alone is not None and _LAG_DETAIL.encode() in alone
        shed, _, _ = _shed(room=1, lag=lag)
        for _ in range(3):
            assert shed.answer(b"POST", _URL, _head("dj_unknown"), "attacker", _kept)[1] is None
        behind = shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1]
        assert behind is not None and _LAG_DETAIL.encode() in behind

    asyncio.run(run())


def test_many_keyed_sheds_behind_keyless_heads_check_each_key_once() -> None:
    """500 keyless heads let through unasked, then the pool is full: 200 invokers' calls
    are all shed, and 700 keys were checked in all (each head once), not one per head on
    its way per shed."""

    async def run() -> None:
        shed, pool, keys = _shed(room=1000)
        for i in range(500):
            assert shed.answer(b"POST", _URL, _head(f"dj_bad{i}"), "attacker", _kept)[1] is None
        assert keys.checks == 0  # the pool took them: nothing asked
        pool.full = True
        answers = [shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1] for _ in range(200)]
        assert {_status(a) for a in answers} == {503}
        assert keys.checks == 700
        assert pool.asked[-2:] == [500, 0]  # every head on its way, then the invokers

    asyncio.run(run())


def test_a_refusal_leaves_nothing_for_the_garbage_collector() -> None:
    """Refusals from the head, plain and after a recount, make no reference cycles: a
    refusal kept in a local of the frame its traceback holds made one (8 objects a
    refusal, collected only by the cyclic collector: about 3.5 us a refusal on a node).
    What the collector finds is kept and looked at: no refusal and no frame of
    early_shed.py among it (anything another thread of the test process leaves in a
    cycle meanwhile is not this test's to judge)."""

    async def run() -> list[object]:
        shed, pool, _ = _shed(room=3)
        for _ in range(3):
            assert shed.answer(b"POST", _URL, _head("dj_unknown"), "attacker", _kept)[1] is None
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(100):  # the recount lets the first 3 through, then refuses
                shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)
            pool.full = True
            for _ in range(100):
                shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)
            assert shed.shed == 197
            gc.collect()
            return [
                o
                for o in gc.garbage
                if isinstance(o, CallShed)
                or (isinstance(o, FrameType) and o.f_code.co_filename == early_shed.__file__)
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    assert asyncio.run(run()) == []


@pytest.mark.parametrize("share", [None, "f"])
def test_heads_of_a_caller_over_its_own_rate_do_not_shed_another_callers_call(
    share: str | None,
) -> None:
    """A caller over its own rate (or its share of f's) gets 429 at admission and never
    queues: room for one call, three of its heads on their way, then another caller's
    head, which is let through; once its rate has room again its head counts."""

    async def run() -> None:
        shed, _, _ = _shed(room=1)
        node = cast(Any, shed.node)
        node.limited.refused("key:over", share, 60.0)
        let_through = [shed.answer(b"POST", _URL, _head(OVER), "over", _kept) for _ in range(3)]
        let_through.append(shed.answer(b"POST", _URL, _head(GOOD), "client", _kept))
        assert [answer for _, answer in let_through] == [None] * 4
        for done, _ in let_through:
            assert done is not None
            done()
        assert shed._on_way == {}
        node.limited = LimitedCallers()  # its rate has room again
        assert shed.answer(b"POST", _URL, _head(OVER), "over", _kept)[1] is None
        assert _status(shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1]) == 503

    asyncio.run(run())


def test_a_caller_over_its_own_rate_shed_at_the_head_does_not_count_as_a_full_queue() -> None:
    """A head of a key known to be over its own rate is still shed when the function is
    full, but its refusal does not tell the pool the queue is full (its call would have
    got 429 and never queued, so it must not make the queue overflow); another caller's
    does."""

    async def run() -> tuple[int, int]:
        shed, pool, _ = _shed(room=0)
        cast(Any, shed.node).limited.refused("key:over", None, 60.0)
        for _ in range(20):
            assert _status(shed.answer(b"POST", _URL, _head(OVER), "over", _kept)[1]) == 503
        over = pool.counted
        assert _status(shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1]) == 503
        return over, pool.counted - over

    assert asyncio.run(run()) == (0, 1)


def test_a_refusal_at_the_nodes_bound_alone_does_not_arm_the_lag_shed() -> None:
    """Other functions' calls filled the node's bound, so f's call is refused with f's
    own queue not full (`node_only`): the refusal is counted, but f is not marked as
    overflowing for the lag shed, which would shed a share of f's calls for a flood
    that is not f's. A refusal at f's own bounds still arms it."""

    async def run() -> tuple[list[str], list[str]]:
        lag = _Lag(sheds=False)
        shed, pool, _ = _shed(room=0, lag=lag)
        pool.node_only = True
        for _ in range(20):
            assert _status(shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1]) == 503
        assert pool.refused == 20  # each refusal is still told to the pool
        by_node = list(lag.armed)
        pool.node_only = False
        assert _status(shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1]) == 503
        return by_node, lag.armed

    by_node, armed = asyncio.run(run())
    assert by_node == []
    assert armed == ["f"]


def test_on_way_count_is_always_every_head_on_its_way() -> None:
    """`count`, kept as heads come and go, equals the heads held (asked and unasked)
    after every step of a long mixed run: adds of known and unknown heads, recounts and
    pops, down to none (when the function's entry leaves the table)."""
    rng = random.Random(210)  # noqa: S311 - a repeatable run of steps, not a secret
    table: dict[str, _OnWay] = {}
    on_way = table["f"] = _OnWay(table, "f")
    held = 0
    for _ in range(5000):
        step = rng.random()
        if step < 0.45 or held == 0:
            on_way.add(rng.random() < 0.5 if rng.random() < 0.5 else [(b"h", b"x")])
            held += 1
        elif step < 0.6:
            on_way.invokers(lambda head: rng.random() < 0.5)
        else:
            held -= 1
            assert on_way.pop() == (held == 0)
            if held == 0:
                assert table == {}
                on_way = table["f"] = _OnWay(table, "f")
        assert on_way.count == held == len(on_way._asked) + len(on_way._unasked)


def test_keep_alive_is_asked_only_for_a_503_and_its_answer_is_in_the_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection's `keep_alive` is asked once for each 503 (overload and lag alike)
    and never for a head let through; the 503 is `shed_response`'s for its answer, byte
    for byte but the request id: `connection: close` exactly when it says so."""

    async def run() -> None:
        asked: list[bool] = []

        def keeps(answer: bool) -> Any:
            def ask() -> bool:
                asked.append(answer)
                return answer

            return ask

        lag = _Lag(sheds=False)
        shed, _, _ = _shed(room=1, lag=lag)
        done, through = shed.answer(b"POST", _URL, _head(GOOD), "client", keeps(True))
        assert through is None and asked == []  # let through: not asked
        for answer in (True, False):
            _, got = shed.answer(b"POST", _URL, _head(GOOD), "client", keeps(answer))
            assert got is not None
            rid = got.split(b"x-request-id: ", 1)[1].split(b"\r\n", 1)[0]
            with monkeypatch.context() as same_id:  # the same request id, to compare bytes
                same_id.setattr(early_shed, "mint_request_id", rid.decode)
                assert got == early_shed.shed_response(2, answer)
            assert (b"connection: close" in got) is (not answer)
        assert asked == [True, False]
        assert done is not None
        done()
        lag.shed_all = True  # the lag shed's 503 asks it too
        _, got = shed.answer(b"POST", _URL, _head(GOOD), "client", keeps(False))
        assert got is not None and b"connection: close" in got and asked == [True, False, False]

    asyncio.run(run())


def test_throttles_in_force_and_registry_are_read_at_each_head() -> None:
    """While a throttle is in force every head goes to the app (none asked of the pool);
    a function deployed after the early shed was made is found (the registry held is
    the node's own, read at each head)."""

    async def run() -> None:
        shed, pool, _ = _shed(room=0)
        node = cast(Any, shed.node)
        node.throttles.in_force[("key", "x")] = object()
        assert shed.answer(b"POST", _URL, _head(GOOD), "client", _kept) == (None, None)
        assert pool.asked == []
        node.throttles.in_force.clear()
        assert _status(shed.answer(b"POST", _URL, _head(GOOD), "client", _kept)[1]) == 503
        later = b"/v1/functions/g/invoke"
        assert shed.answer(b"POST", later, _head(GOOD), "client", _kept) == (None, None)
        node.registry.by_name["g"] = SimpleNamespace(config=SimpleNamespace(function="g"))
        assert _status(shed.answer(b"POST", later, _head(GOOD), "client", _kept)[1]) == 503

    asyncio.run(run())


def test_a_known_head_is_counted_at_once_unless_an_unasked_one_is_before_it() -> None:
    """`add` of a verdict (True or False, told apart from fields by their type) with no
    head unasked before it goes with the asked ones, counted; behind an unasked head it
    waits its turn with the unasked, its fields never asked of."""
    table: dict[str, _OnWay] = {}
    on_way = table["f"] = _OnWay(table, "f")
    on_way.add(True)
    on_way.add(False)
    assert list(on_way._asked) == [True, False] and not on_way._unasked
    assert on_way.invokers(lambda head: pytest.fail("nothing is unasked")) == 1
    fields = [(b"authorization", b"Bearer x")]
    on_way.add(fields)
    on_way.add(True)
    assert list(on_way._unasked) == [fields, True]
    assert on_way.invokers(lambda head: head is fields) == 3
    assert on_way.count == 4
