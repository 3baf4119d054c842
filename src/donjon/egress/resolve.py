"""Name resolution for the egress proxy: the proxy resolves, checks and dials itself.

The function never resolves a name that the proxy then trusts: the proxy asks its own
resolver, checks every address it got (addresses.py), and dials one it checked, so a
name whose answer changes between the check and the connection (DNS rebinding) cannot
slip a loopback address through. Two resolvers: the system's (``getaddrinfo`` on
threads of its own) and a given DNS server (DONJON_EGRESS_DNS, ``host:port``), queried
for A and AAAA with dnspython, for nodes (and tests) whose egress names are served by
a DNS server of their own.

``getaddrinfo`` blocks its thread until the system's resolver answers or gives up (with
glibc's defaults, 10 s and more per server), whoever stopped waiting for it. On the
loop's own executor a function granted a wildcard whose names a server never answers
held all four of libuv's threads with a handful of lookups, and every other function's
names then failed to resolve, /etc/hosts' too, until glibc gave up (helper-122's
review). So the system resolver runs lookups on `LOOKUP_THREADS` threads of its own and
lets one function have at most `LOOKUPS_PER_FUNCTION` of them running, counted until
each lookup's thread is done with it, not until its caller stops waiting. The DNS
server's resolver runs its questions the same way: dnspython parses an answer whole,
which for the widest one a DNS message allows is too long for the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import itertools
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from donjon.egress.addresses import IPAddress, parse_ip_literal
from donjon.errors import Error

__all__ = [
    "DnsServerResolver",
    "ResolveError",
    "Resolver",
    "SystemResolver",
    "make_resolver",
    "parse_dns_server",
]

T = TypeVar("T")

#: The most addresses one answer is taken from (the rest are ignored).
MAX_ADDRESSES = 16
#: Seconds one resolution may take, both record types together.
RESOLVE_TIMEOUT_S = 5.0
#: Threads the system resolver runs lookups on, and of them one function's at most.
LOOKUP_THREADS = 32
LOOKUPS_PER_FUNCTION = 4


class ResolveError(Error):
    """A name could not be resolved to any address."""

    title = "Egress name not resolved"


class Resolver(Protocol):
    """Resolves a DNS name to its addresses (A and AAAA)."""

    async def resolve(self, host: str, caller: str = "") -> list[IPAddress]:
        """The addresses of `host` (a name, never an IP literal), asked for function
        `caller`; `ResolveError` if none."""
        ...


def _name(host: str) -> str:
    if parse_ip_literal(host) is not None:
        raise ResolveError(f"{host!r} is an IP address, not a name to resolve")
    return host


def _unique(addresses: list[IPAddress], host: str) -> list[IPAddress]:
    """The first `MAX_ADDRESSES` distinct `addresses`, in order. Linear: an answer may
    hold thousands (a 64 KiB DNS message over TCP), and searching the list being built
    stalled the node's event loop for seconds (tests/security/test_attack_egress_wide_answer.py)."""
    out = list(dict.fromkeys(addresses))[:MAX_ADDRESSES]
    if not out:
        raise ResolveError(f"{host} has no address")
    return out


class _LookupThreads:
    """Daemon threads that run blocking lookups, started as needed up to `size`.

    Not concurrent.futures' pool: its threads are joined when the interpreter exits,
    and a lookup may block for glibc's whole timeout after its caller gave up, holding
    the node's stop for that long."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]
        self._jobs = queue.SimpleQueue()
        self._threads = 0
        self._unfinished = 0  # jobs queued or running
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """`fn`'s future; RuntimeError (nothing counted, nothing queued) when it needs a
        thread and none could be started."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._unfinished + 1 > self._threads and self._threads < self._size:
                thread = threading.Thread(target=self._run, name="egress-dns", daemon=True)
                thread.start()  # may raise (no thread left to the process): nothing changed
                self._threads += 1
            self._unfinished += 1
        self._jobs.put((future, fn))
        return future

    def _run(self) -> None:
        while True:
            future, fn = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as e:  # handed to the waiting caller, if any
                    future.set_exception(e)
                else:
                    future.set_result(result)
            with self._lock:
                self._unfinished -= 1


class _Lookups:
    """Blocking lookups on threads of their own (`_LookupThreads`), at most
    `per_function` of one function running, counted until each lookup's thread is done
    with it (see the module)."""

    def __init__(self, threads: int, per_function: int) -> None:
        self._threads = _LookupThreads(threads)
        self._per_function = per_function
        self._running: dict[str, int] = {}

    def running(self, caller: str) -> int:
        """`caller`'s lookups whose threads are not done with them."""
        return self._running.get(caller, 0)

    async def run(self, host: str, caller: str, lookup: Callable[[], T]) -> T:
        """`lookup()` on a lookup thread, awaited at most `RESOLVE_TIMEOUT_S`; what it
        raises is handed on, but a timeout and a thread refused are `ResolveError`."""
        running = self.running(caller)
        if running >= self._per_function:
            raise ResolveError(
                f"{host} was not looked up: {running} earlier lookups of this function are"
                " still running"
            )
        loop = asyncio.get_running_loop()
        try:
            future = self._threads.submit(lookup)
        except RuntimeError as e:  # no thread could be started for it
            raise ResolveError(f"{host} was not looked up: {e}") from None
        self._running[caller] = running + 1

        def done(_: concurrent.futures.Future[Any]) -> None:  # in the lookup's thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to count
                loop.call_soon_threadsafe(self._done, caller)

        future.add_done_callback(done)
        try:
            result: T = await asyncio.wait_for(asyncio.wrap_future(future), RESOLVE_TIMEOUT_S)
        except TimeoutError:
            raise ResolveError(f"{host} did not resolve (timed out)") from None
        return result

    def _done(self, caller: str) -> None:
        left = self._running.get(caller, 0) - 1
        if left > 0:
            self._running[caller] = left
        else:
            self._running.pop(caller, None)


class SystemResolver:
    """The host's resolver (``getaddrinfo``, /etc/hosts and /etc/resolv.conf), on threads
    of its own, at most `per_function` lookups of one function running (see the module)."""

    def __init__(
        self, threads: int = LOOKUP_THREADS, per_function: int = LOOKUPS_PER_FUNCTION
    ) -> None:
        self._lookups = _Lookups(threads, per_function)

    def running(self, caller: str) -> int:
        """`caller`'s lookups whose threads are not done with them."""
        return self._lookups.running(caller)

    async def resolve(self, host: str, caller: str = "") -> list[IPAddress]:
        name = _name(host)
        try:
            infos = await self._lookups.run(
                host, caller, lambda: socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            )
        except (OSError, UnicodeError) as e:
            raise ResolveError(f"{host} did not resolve ({e})") from None
        addresses: list[IPAddress] = []
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                text = str(sockaddr[0]).split("%", 1)[0]
                addresses.append(ipaddress.ip_address(text))
        return _unique(addresses, host)


class DnsServerResolver:
    """Asks one DNS server (A, then AAAA), nothing else (no /etc/hosts).

    On lookup threads, as the system resolver: dnspython parses an answer whole, and one
    over TCP may be 64 KiB (6,000 records, about 0.2 s of parsing on a loaded node); on
    the event loop that stalled every request of every tenant as long, each question."""

    def __init__(
        self,
        server: IPAddress,
        port: int = 53,
        threads: int = LOOKUP_THREADS,
        per_function: int = LOOKUPS_PER_FUNCTION,
    ) -> None:
        # dnspython only where a DNS server is configured: settings and the grants
        # import this module, and most nodes use the system resolver.
        import dns.resolver

        self.server = server
        self.port = port
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [str(server)]
        resolver.port = port
        resolver.lifetime = RESOLVE_TIMEOUT_S / 2  # each question: both within the whole
        resolver.timeout = RESOLVE_TIMEOUT_S / 4
        resolver.cache = None
        self._resolver = resolver
        self._lookups = _Lookups(threads, per_function)

    async def resolve(self, host: str, caller: str = "") -> list[IPAddress]:
        name = _name(host)
        addresses, problems = await self._lookups.run(host, caller, lambda: self._both(name))
        if not addresses:
            raise ResolveError(problems[0] if problems else f"{host} has no address")
        return _unique(addresses, host)

    def _both(self, name: str) -> tuple[list[IPAddress], list[str]]:
        """A's and AAAA's addresses, and what went wrong with either (a lookup thread's)."""
        addresses: list[IPAddress] = []
        problems: list[str] = []
        for kind in ("A", "AAAA"):
            try:
                addresses += self._query(name, kind)
            except ResolveError as e:
                problems.append(e.message)
        return addresses, problems

    def _query(self, name: str, kind: str) -> list[IPAddress]:
        import dns.exception
        import dns.resolver

        try:
            answer = self._resolver.resolve(name, kind, search=False)
        except dns.resolver.NoAnswer:
            return []
        except dns.resolver.NXDOMAIN:
            raise ResolveError(f"{name} does not exist (NXDOMAIN)") from None
        except dns.exception.DNSException as e:
            raise ResolveError(f"{name} did not resolve ({e})") from None
        # An RRset holds no duplicates: the first MAX_ADDRESSES are all `_unique` keeps.
        records = itertools.islice(answer, MAX_ADDRESSES)
        return [ipaddress.ip_address(record.address) for record in records]


def parse_dns_server(text: str) -> tuple[IPAddress, int]:
    """DONJON_EGRESS_DNS: ``IP``, ``IP:PORT`` or ``[IPv6]:PORT``; `ResolveError` if not."""
    host, port = text.strip(), "53"
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host = inner
        if rest:
            if not rest.startswith(":"):
                host = ""
            port = rest[1:]
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ResolveError(
            f"DONJON_EGRESS_DNS {text!r} is not a DNS server address",
            hint="give an IP address and optional port, e.g. 10.0.0.2 or 127.0.0.1:5353",
        )
    return address, int(port)


def make_resolver(dns_server: str | None) -> Resolver:
    """The system resolver (None), or one that asks the DNS server at `dns_server`."""
    if dns_server is None:
        return SystemResolver()
    address, port = parse_dns_server(dns_server)
    return DnsServerResolver(address, port)
