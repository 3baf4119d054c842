"""The tables bench_invoke.py prints: raw load figures, then Donjon beside its baselines."""

from __future__ import annotations

import math
from typing import Any

from report_cells import MIB, Row, _mib, _ms, _rate, _ratio, _verdict, _x, rate_info
from report_load import _audit_rows, _overload_rows, _scale_rows


def print_header(m: dict[str, Any], mode: str) -> None:
    print(
        f"Donjon invoke bench ({mode}) - donjon {m['donjon']}, Python {m['python']}, "
        f"{m['cpus']} x {m['cpu']}, Linux {m['kernel']}"
    )
    print(
        f"donjon imported from {m['donjon_path']}; sandboxes run {m['sandbox_python']} as "
        f"host uid {m['sandbox_user']}"
    )
    print(
        f"load client: {m['client']}; load average {' '.join(m['loadavg'])}, "
        f"CPU busy before start {m['busy_before']:.0%}"
    )
    print("Clients and servers share this machine's cores: every figure is per machine, and the")
    print("ratios compare servers measured the same way in the same run.")
    if m["busy_before"] > 0.15:
        print(
            f"WARNING: the machine was {m['busy_before']:.0%} busy before the bench started; "
            "figures will be noisy."
        )
    print(flush=True)


def _load_table(load: dict[str, Any]) -> None:
    print("Load, 32 keep-alive connections unless said (best of the rounds by throughput):")
    print(
        f"  {'server':18} {'req/s':>9} {'p50':>9} {'p99':>9} {'1-conn p50':>11} "
        f"{'1-conn p99':>11} {'CPU/req':>9} {'errors':>7}"
    )
    for name, r in load.items():
        print(
            f"  {name:18} {r['rps']:9.0f} {r['p50_ms']:7.2f}ms {r['p99_ms']:7.2f}ms "
            f"{r['c1_p50_ms']:9.2f}ms {r['c1_p99_ms']:9.2f}ms {r['cpu_ms_per_req']:7.3f}ms "
            f"{r['errors']:7d}"
        )
    print(
        "  (CPU/req: CPU time of the server's whole process tree, sandboxes included, per "
        "request)\n"
    )


def _warm_rows(load: dict[str, Any]) -> list[Row]:
    w, s, h, f = (
        load[k] for k in ("donjon-warm", "starlette-tls", "starlette-http", "flask-waitress")
    )
    rows = []
    for label, base, target in (
        ("warm req/s vs bare Starlette, HTTPS (like for like)", s, 0.5),
        ("warm req/s vs bare Starlette, plain HTTP", h, 0.5),
        ("warm req/s vs Flask + waitress (plain HTTP)", f, 2.0),
    ):
        r = _ratio(w["rps"], base["rps"])
        rows.append(
            Row(
                label,
                _rate(w["rps"]),
                _rate(base["rps"]),
                _x(r),
                f">= {target}x",
                _verdict(r >= target),
            )
        )
    for label, key in (
        ("warm p50 latency, 32 conns", "p50_ms"),
        ("warm p99 latency, 32 conns", "p99_ms"),
        ("warm p50 latency, 1 conn", "c1_p50_ms"),
    ):
        rows.append(
            Row(
                label + " (vs Starlette HTTPS)",
                f"{w[key]:.2f} ms",
                f"{s[key]:.2f} ms",
                _x(_ratio(w[key], s[key])),
                "-",
                "info",
            )
        )
    rows.append(
        Row(
            "warm CPU per request (vs Starlette HTTPS)",
            f"{w['cpu_ms_per_req']:.3f} ms",
            f"{s['cpu_ms_per_req']:.3f} ms",
            _x(_ratio(w["cpu_ms_per_req"], s["cpu_ms_per_req"])),
            "-",
            "info",
        )
    )
    return rows


def _design_floor_rows(load: dict[str, Any]) -> list[Row]:
    """Target 1's floor (bench/warm_floor.py): the warm path's processes and hops (HTTPS,
    a worker process, a group-committed durable append in a writer process) with no
    control, beside Starlette, and Donjon beside it: the design's share, the controls'.
    Then the same floor with eight workers and the controls at their leanest
    (bench/floor_controls.py, Donjon's detectors): what any Python gateway of this
    design pays at least."""
    fl, s, w = load.get("design-floor"), load["starlette-tls"], load["donjon-warm"]
    if fl is None:
        return []
    rows = [
        rate_info(
            "design floor req/s vs bare Starlette HTTPS (worker + writer, no control)",
            fl["rps"],
            s["rps"],
        ),
        rate_info("warm req/s vs the design floor (what the controls cost)", w["rps"], fl["rps"]),
    ]
    pairs = [
        ("design floor CPU per request vs bare Starlette HTTPS", fl, s),
        ("warm CPU per request vs the design floor", w, fl),
    ]
    lean = load.get("lean-controls")
    if lean is not None:  # the floor with target 1's controls at their leanest
        rows.append(
            rate_info(
                "lean controls req/s vs bare Starlette HTTPS (floor, 8 workers, the controls lean)",
                lean["rps"],
                s["rps"],
            )
        )
        pairs.append(("lean controls CPU per request vs bare Starlette HTTPS", lean, s))
    for label, a, b in pairs:
        ca, cb = a["cpu_ms_per_req"], b["cpu_ms_per_req"]
        rows.append(Row(label, f"{ca:.3f} ms", f"{cb:.3f} ms", _x(_ratio(ca, cb)), "-", "info"))
    return rows


def _clone_floor_rows(gateway: dict[str, Any], inv: float, sb: dict[str, Any]) -> list[Row]:
    """Issue 14 point 2: the pool's invocation and the gateway's rate against one
    clone(NEWPID|NEWNS|NEWIPC) + wait inside bwrap, measured in the same run."""
    cf = sb.get("clone_floor")
    if not cf:
        return []
    clone = cf["clone_s"]
    r = _ratio(inv, clone)
    rate = _ratio(gateway["rps"], 1 / clone)
    return [
        Row(
            "clone floor in bwrap: clone(NEWPID|NEWNS|NEWIPC) + wait (vs fork + wait)",
            f"{_ms(clone)} ({_rate(1 / clone)})",
            f"{_ms(cf['fork_s'])} ({_rate(1 / cf['fork_s'])})",
            _x(_ratio(clone, cf["fork_s"])),
            "-",
            "info",
        ),
        Row(
            "  the same clone with CLONE_NEWNET too (a worker's network namespace)",
            _ms(cf["clone_net_s"]),
            _ms(clone),
            _x(_ratio(cf["clone_net_s"], clone)),
            "-",
            "info",
        ),
        Row(
            "invocation per call, pool (vs clone floor)",
            _ms(inv),
            _ms(clone),
            _x(r),
            "<= 1.5x",
            _verdict(r <= 1.5),
        ),
        Row(
            "invocation req/s, gateway (vs clone floor's rate)",
            _rate(gateway["rps"]),
            _rate(1 / clone),
            _x(rate),
            ">= 0.5x",
            _verdict(rate >= 0.5),
        ),
    ]


def _invocation_rows(load: dict[str, Any], sb: dict[str, Any]) -> list[Row]:
    i, w = load["donjon-invocation"], load["donjon-warm"]
    rows = [
        Row(
            "invocation req/s, gateway (vs Donjon warm)",
            _rate(i["rps"]),
            _rate(w["rps"]),
            _x(_ratio(i["rps"], w["rps"])),
            "-",
            "info",
        ),
        Row(
            "invocation p50 / p99, gateway, 32 conns",
            f"{i['p50_ms']:.1f} / {i['p99_ms']:.1f} ms",
            f"{w['p50_ms']:.1f} / {w['p99_ms']:.1f} ms",
            _x(_ratio(i["p50_ms"], w["p50_ms"])),
            "-",
            "info",
        ),
    ]
    floor = sb["fork_floor_s"]
    inv = _median(sb["invocation"]["per_call_s"])
    warm = _median(sb["warm"]["per_call_s"])
    rows += _clone_floor_rows(i, inv, sb)
    r = _ratio(inv, floor)
    rows.append(
        Row(
            "invocation per call, pool (vs fork+wait floor)",
            _ms(inv),
            _ms(floor),
            _x(r),
            "-",
            "info",
        )
    )
    r = _ratio(inv - warm, floor)
    rows.append(
        Row(
            "isolation's own cost: pool invocation - warm",
            _ms(inv - warm),
            _ms(floor),
            _x(r),
            "<= 1.5x",
            _verdict(r <= 1.5),
        )
    )
    rows.append(
        Row(
            "warm per call, pool (IPC + handler)",
            _ms(warm),
            _ms(floor),
            _x(_ratio(warm, floor)),
            "-",
            "info",
        )
    )
    if "fork_floor_bwrap_s" in sb:
        rows.append(
            Row(
                "fork+wait floor inside bwrap (vs outside)",
                _ms(sb["fork_floor_bwrap_s"]),
                _ms(floor),
                _x(_ratio(sb["fork_floor_bwrap_s"], floor)),
                "-",
                "info",
            )
        )
    rate = sb["invocation"]["concurrent_rate"]
    rows.append(
        Row(
            "invocation calls/s, pool, 8 in flight (vs 1/floor)",
            _rate(rate),
            _rate(1 / floor),
            _x(_ratio(rate, 1 / floor)),
            "-",
            "info",
        )
    )
    return rows


def _cold_rows(gw: dict[str, Any], sb: dict[str, Any]) -> list[Row]:
    floor = sb["import_floor_s"]
    cold = sb.get("coldstart") or {}
    # Issue 14, point 3: against bwrap + the handler's import with the function's own
    # command line (bench/coldstart.py), timed in the same rounds.
    same = cold.get("floor_median_s", math.nan)
    rows = []
    for mode in ("warm", "invocation"):
        v = gw[mode]["first_s"]
        rows.append(
            Row(
                f"cold: first call after deploy, gateway ({mode})",
                _ms(v),
                _ms(same),
                _x(_ratio(v, same)),
                "< 10 ms",
                _verdict(v < 0.010),
            )
        )
    for mode in ("warm", "invocation"):
        if f"{mode}_median_s" not in cold:
            continue
        v = cold[f"{mode}_median_s"]
        r = _ratio(v, same)
        rows.append(
            Row(
                f"cold: true cold start, pool ({mode}) vs bwrap + import, same profile",
                _ms(v),
                _ms(same),
                _x(r),
                "<= 1.5x",
                _verdict(r <= 1.5),
            )
        )
    if "warm_cpu_median_s" in cold:
        v, base = cold["warm_cpu_median_s"], cold["floor_cpu_median_s"]
        rows.append(
            Row(
                "cold: CPU of a true cold start's sandbox (warm) vs the floor's whole run",
                _ms(v),
                _ms(base),
                _x(_ratio(v, base)),
                "-",
                "info",
            )
        )
    for mode in ("warm", "invocation"):
        v = _median(sb[mode]["cold_s"])
        rows.append(
            Row(
                f"cold: sandbox start + 1st call, pool ({mode}), vs bare import",
                _ms(v),
                _ms(floor),
                _x(_ratio(v, floor)),
                "-",
                "info",
            )
        )
    for mode in ("warm", "invocation"):
        d = gw[mode]["deploy_s"]
        rows.append(
            Row(
                f"deploy request, incl. sandbox start ({mode})",
                _ms(d),
                _ms(floor),
                _x(_ratio(d, floor)),
                "-",
                "info",
            )
        )
    if "import_floor_bwrap_s" in sb:
        v = sb["import_floor_bwrap_s"]
        rows.append(
            Row(
                "bwrap + python -c 'import main' (no Donjon code)",
                _ms(v),
                _ms(floor),
                _x(_ratio(v, floor)),
                "-",
                "info",
            )
        )
    return rows


def _memory_rows(mem: dict[str, Any]) -> list[Row]:
    bare = mem["bare"]
    rows = []
    warm = mem.get("warm")
    if warm:
        uss = warm["total"]["uss"]
        rows.append(
            Row(
                f"warm instance USS ({warm['processes']} processes under bwrap; "
                f"{warm.get('instances', 1)} instance(s) up)",
                _mib(uss),
                _mib(bare["uss"]),
                _x(_ratio(uss, bare["uss"])),
                "< 15 MiB",
                _verdict(uss < 15 * MIB),
            )
        )
        rows.append(
            Row(
                "warm instance PSS",
                _mib(warm["total"]["pss"]),
                _mib(bare["pss"]),
                _x(_ratio(warm["total"]["pss"], bare["pss"])),
                "-",
                "info",
            )
        )
        if warm["n_interpreters"]:
            uss = warm["interpreters"]["uss"]
            label = f"warm instance: its {warm['n_interpreters']} interpreter(s) alone, USS"
            rows.append(
                Row(label, _mib(uss), _mib(bare["uss"]), _x(_ratio(uss, bare["uss"])), "-", "info")
            )
    inv = mem.get("invocation")
    if inv:
        rows.append(
            Row(
                "invocation sandbox tree USS (idle, a worker ready)",
                _mib(inv["total"]["uss"]),
                _mib(bare["uss"]),
                _x(_ratio(inv["total"]["uss"], bare["uss"])),
                "-",
                "info",
            )
        )
    return rows


def _median(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return math.nan
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def print_tables(results: dict[str, Any]) -> None:
    node, sb, audit = results["node"], results["sandbox"], results["audit"]
    print()
    _load_table(node["load"])
    rows = (
        _warm_rows(node["load"])
        + _design_floor_rows(node["load"])
        + _invocation_rows(node["load"], sb)
        + _cold_rows(node["gateway_cold"], sb)
        + _memory_rows(node["memory"])
        + _scale_rows(results.get("scale"))
        + _overload_rows(node.get("overload"))
        + _audit_rows(audit)
    )
    header = Row("metric", "Donjon", "baseline", "ratio", "target", "")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in Row.__dataclass_fields__]
    for r in [header, *rows]:
        cells = [getattr(r, f) for f in Row.__dataclass_fields__]
        print(
            "  "
            + "  ".join(
                c.ljust(w) if k == 0 else c.rjust(w)
                for k, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    gated = [r for r in rows if r.verdict != "info"]
    passed = sum(r.verdict == "PASS" for r in gated)
    print(f"\n{passed} of {len(gated)} targets met. Resource control: {node['resource_control']}.")
    inv = node["memory"].get("invocation") or {}
    print(
        f"Fork floor process RSS {_mib(sb['fork_floor_rss'])}"
        + (
            f"; the invocation sandbox's largest interpreter: RSS "
            f"{_mib(inv['largest_interpreter_rss'])}."
            if inv.get("n_interpreters")
            else "."
        )
    )
    leaked = node.get("leaked_cgroups", 0) + sb.get("leaked_cgroups", 0)
    if leaked:
        print(
            f"NOTE: Donjon left {leaked} empty cgroup directories behind after its sandboxes "
            "were stopped (Instance.close removes them before the killed processes have "
            "left); the bench removed them."
        )
    errors = {k: v["errors"] for k, v in node["load"].items() if v["errors"]}
    if errors:
        print(f"WARNING: requests failed during load (non-2xx or socket errors): {errors}")
    print(
        f"CPU busy before {results['machine']['busy_before']:.0%}, after "
        f"{results['machine']['busy_after']:.0%}; whole run {results['seconds']:.0f} s."
    )
