"""bench_invoke.py's rows for how cost grows (scale), overload and the audit append."""

from __future__ import annotations

import math
from typing import Any

from report_cells import MIB, Row, _mib, _ms, _rate, _ratio, _verdict, _x, rate_info


def _scale_rows(sc: dict[str, Any] | None) -> list[Row]:
    """Issue 14, point 5: the node with N functions deployed against 10 (bench/scale.py)."""
    if not sc:
        return []
    n = sc["functions"]
    big, small = sc[str(n)], sc["10"]
    at = f"{n:,} functions vs 10"

    def grow(label: str, a: float, b: float, fmt: Any, limit: float) -> Row:
        r = _ratio(a, b)
        ok = _verdict(r <= limit)
        return Row(f"scale: {label}, {at}", fmt(a), fmt(b), _x(r), f"<= {limit}x", ok)

    d_big, d_small = big["deploy"]["median_s"], small["deploy"]["median_s"]
    rows = [
        grow("deploy per function (one at a time, scan on)", d_big, d_small, _ms, 1.5),
        grow("gateway RSS", big["idle"]["gateway_rss"], small["idle"]["gateway_rss"], _mib, 1.5),
        grow("gateway USS", big["idle"]["gateway_uss"], small["idle"]["gateway_uss"], _mib, 1.5),
        grow(
            "idle node, sandboxes reaped (tree USS)",
            big["idle"]["tree_uss"],
            small["idle"]["tree_uss"],
            _mib,
            1.5,
        ),
        grow("warm 1-conn p50", big["c1_p50_ms"] / 1000, small["c1_p50_ms"] / 1000, _ms, 1.5),
        grow("warm 1-conn p99", big["c1_p99_ms"] / 1000, small["c1_p99_ms"] / 1000, _ms, 2.0),
    ]
    r = _ratio(big["c32_rps"], small["c32_rps"])
    rows.append(
        Row(
            f"scale: warm req/s, 32 conns, {at}",
            _rate(big["c32_rps"]),
            _rate(small["c32_rps"]),
            _x(r),
            ">= 0.8x",
            _verdict(r >= 0.8),
        )
    )
    inst = (big.get("instance") or {}).get("uss", math.nan)
    rows.append(
        Row(
            f"scale: warm instance USS with {n:,} deployed",
            _mib(inst),
            _mib((small.get("instance") or {}).get("uss", math.nan)),
            _x(_ratio(inst, (small.get("instance") or {}).get("uss", math.nan))),
            "< 15 MiB",
            _verdict(inst < 15 * MIB),
        )
    )
    bulk = sc.get("bulk")
    if bulk:
        rows.append(
            Row(
                f"scale: bulk deploy, {bulk['count']:,} functions (4 clients)",
                _rate(bulk["count"] / bulk["seconds"]),
                "-",
                "-",
                "-",
                "info",
            )
        )
    if not (big["idle"]["reaped"] and small["idle"]["reaped"]):
        warn = "scale: WARNING the idle node still ran sandboxes"
        rows.append(Row(warn, "-", "-", "-", "-", "info"))
    return rows


def _overload_rows(ov: dict[str, Any] | None) -> list[Row]:
    """Issue 14, point 6: 4x the sustainable rate, open loop (bench/overload.py)."""
    if not ov:
        return []
    load, unloaded = ov["open_loop"], ov["unloaded"]
    acc, shed = load["accepted"], load["shed"]
    offered = max(1, load["offered"])
    r = _ratio(acc["p99_ms"], unloaded["p99_ms"])
    factor = ov["offered_rps"] / max(ov["sustainable_rps"], 1e-9)  # 4 unless --factor
    label = (
        f"overload: {ov['offered_rps']:,.0f}/s offered "
        f"({factor:.0f}x {ov['sustainable_rps']:,.0f}/s)"
    )
    return [
        Row(
            f"{label}, accepted p99 (vs unloaded p99)",
            _ms(acc["p99_ms"] / 1000),
            _ms(unloaded["p99_ms"] / 1000),
            _x(r),
            "<= 3x",
            _verdict(r <= 3),
        ),
        Row(
            f"overload: shed with 503/429, share of {offered:,} offered",
            f"{shed['count'] / offered:.0%}",
            "-",
            "-",
            "-",
            "info",
        ),
        Row(
            "overload: shed answer p50 / p99",
            f"{shed['p50_ms']:.1f} / {shed['p99_ms']:.1f} ms",
            _ms(acc["p99_ms"] / 1000),
            _x(_ratio(shed["p99_ms"], acc["p99_ms"])),
            "< accepted p99",
            _verdict(shed["count"] > 0 and shed["p99_ms"] < acc["p99_ms"]),
        ),
        Row(
            "overload: accepted req/s during (vs sustainable)",
            _rate(load["accepted_rps"]),
            _rate(ov["sustainable_rps"]),
            _x(_ratio(load["accepted_rps"], ov["sustainable_rps"])),
            "-",
            "info",
        ),
        Row(
            "overload: gateway RSS peak during (vs before)",
            _mib(ov["rss_peak"]),
            _mib(ov["rss_before"]),
            _x(_ratio(ov["rss_peak"], ov["rss_before"])),
            "<= 1.5x",
            _verdict(ov["rss_peak"] <= 1.5 * ov["rss_before"]),
        ),
        Row(
            "overload: gateway RSS 2 s after (vs before)",
            _mib(ov["rss_after"]),
            _mib(ov["rss_before"]),
            _x(_ratio(ov["rss_after"], ov["rss_before"])),
            "-",
            "info",
        ),
        *_overload_where(ov),
    ]


def _overload_where(ov: dict[str, Any]) -> list[Row]:
    """Where an accepted call's time went (the client's wait for a free connection, the
    node's part), and the CPU of the node and of the client during the load."""
    load = ov["open_loop"]
    if "accepted_wire" not in load:
        return []
    pinned = " (node on CPU 0, client apart)" if ov.get("pinned") else ""
    secs = max(ov.get("load_wall_s", load["seconds"]), 1e-9)
    answered = max(1, load["answered"])
    floor = ov.get("client_floor")
    client = []
    if floor:  # the same open loop against a bare server: the client's own p99
        fp99 = floor["open_loop"]["accepted"]["p99_ms"]
        bar = 3 * ov["unloaded"]["p99_ms"]
        client.append(
            Row(
                "overload: the client's own accepted p99, bare server (vs 3x unloaded)",
                _ms(fp99 / 1000),
                _ms(bar / 1000),
                _x(_ratio(fp99, bar)),
                "-",
                "info",
            )
        )
    return [
        *client,
        Row(
            "overload: accepted p99, waiting for a free connection / sent to answered",
            f"{load['accepted_queued']['p99_ms']:.1f} / {load['accepted_wire']['p99_ms']:.1f} ms",
            "-",
            "-",
            "-",
            "info",
        ),
        Row(
            f"overload: CPU during, node tree / load client, in cores{pinned}",
            f"{ov['node_cpu_s'] / secs:.2f} / {ov['client_cpu_s'] / secs:.2f}",
            "-",
            "-",
            "-",
            "info",
        ),
        Row(
            "overload: node CPU per answer (accepted and shed)",
            f"{ov['node_cpu_s'] / answered * 1e6:.0f} us",
            "-",
            "-",
            "-",
            "info",
        ),
    ]


def _audit_rows(a: dict[str, Any]) -> list[Row]:
    floor = a["floor_batch_rps"]
    rows = [
        Row(
            f"audit record(), {a['waiters']} waiters, writer process (vs sqlite3 alone)",
            _rate(a["group_rps"]),
            _rate(floor),
            _x(_ratio(a["group_rps"], floor)),
            ">= 0.5x",
            _verdict(_ratio(a["group_rps"], floor) >= 0.5),
        ),
    ]
    if "group_loop_cpu_us" in a:
        rows.append(
            Row(
                "audit record(), CPU per record: the loop's process / the writer process",
                f"{a['group_loop_cpu_us']:.1f} / {a['group_writer_cpu_us']:.1f} µs",
                "-",
                "-",
                "-",
                "info",
            )
        )
    if "group_thread_rps" in a:
        rows.append(
            Row(
                f"audit record(), {a['waiters']} waiters, writer thread (before issue 14)",
                _rate(a["group_thread_rps"]),
                _rate(floor),
                _x(_ratio(a["group_thread_rps"], floor)),
                "-",
                "info",
            )
        )
    if "floor_blocks_rps" in a:
        rows.append(
            rate_info(
                "audit record() vs sqlite3 alone bound the writer's way (256-row INSERTs)",
                a["group_rps"],
                a["floor_blocks_rps"],
            )
        )
    if "floor_waiters_rps" in a:
        rows.append(
            rate_info(
                f"sqlite3 alone, batches of {a['waiters']} (one commit per group)",
                a["floor_waiters_rps"],
                floor,
            )
        )
    rows += [
        Row(
            "audit _write, batches of 1000 (vs sqlite3 alone)",
            _rate(a["batch_rps"]),
            _rate(floor),
            _x(_ratio(a["batch_rps"], floor)),
            ">= 50,000/s",
            _verdict(a["batch_rps"] >= 50_000),
        ),
        Row("audit record_now, one commit each", _rate(a["record_now_rps"]), "-", "-", "-", "info"),
    ]
    n = a["verify_records"]
    per_million = a["verify_s"] * 1_000_000 / n
    scan = a["floor_scan_s"] * 1_000_000 / n
    label = (
        "audit verify_log, 1,000,000 records"
        if n == 1_000_000
        else (f"audit verify_log, {n:,} records scaled to 1M")
    )
    if a.get("verify_processes", 1) > 1:
        label += f", {a['verify_processes']} processes"
    rows.append(
        Row(
            label + " (vs bare scan)",
            f"{per_million:.2f} s",
            f"{scan:.2f} s",
            _x(_ratio(per_million, scan)),
            "< 5 s",
            _verdict(per_million < 5 and a["verify_ok"]),
        )
    )
    return rows
