"""The results table, the ratios against the bare proxy and the upstream, and the
verdict on every target of the issue."""

from __future__ import annotations

from collections.abc import Callable, Mapping

Figures = Mapping[str, float | None]
UPSTREAM, BARE, LLMGW = "upstream", "bare proxy", "llmgw"

# (label, key, unit); unit: "rate", "ms" (stored as ms), "s" (stored as s, shown as ms),
# "share" (0..1, shown as %), "mib"; a row with key "" is a section heading.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("Non-streamed", "", ""),
    ("max req/s, 64 connections", "rps", "rate"),
    ("CPU ms per request, 64 connections", "cpu_ms", "ms"),
    ("proxied doing llmgw's duties, req/s (miss duty floor)", "miss_duty_rps", "rate"),
    ("CPU ms per request doing llmgw's duties (miss duty floor)", "miss_duty_cpu_ms", "ms"),
    ("latency p50, 8 connections (ms)", "p50_8", "s"),
    ("latency p99, 8 connections (ms)", "p99_8", "s"),
    ("latency p50 at a light fixed rate (ms)", "light_p50", "s"),
    ("latency p99 at a light fixed rate (ms)", "light_p99", "s"),
    ("  added over direct, p50 (ms)", "light_add_p50", "s"),
    ("  added over direct, p99 (ms)", "light_add_p99", "s"),
    ("Streamed, 50 chunks", "", ""),
    ("streams/s, 64 connections, unpaced", "stream_rps", "rate"),
    ("CPU ms per stream, unpaced", "stream_cpu_ms", "ms"),
    ("CPU ms per stream, paced (20 ms, 32 at once)", "paced_cpu_ms", "ms"),
    ("time to first byte p50 (ms)", "ttfb_p50", "s"),
    ("time to first byte p99 (ms)", "ttfb_p99", "s"),
    ("  added over direct, p50 (ms)", "ttfb_add_p50", "s"),
    ("  added over direct, p99 (ms)", "ttfb_add_p99", "s"),
    ("paced streams on time (<= 1.1 x ideal)", "paced_on_time", "share"),
    ("paced stream duration p50 (ms)", "paced_p50", "s"),
    ("paced stream duration max (ms)", "paced_max", "s"),
    ("Cache hits", "", ""),
    ("non-streamed hits req/s, 64 connections", "hit_rps", "rate"),
    ("CPU ms per non-streamed hit", "hit_cpu_ms", "ms"),
    ("streamed hits/s, 64 connections", "hit_stream_rps", "rate"),
    ("CPU ms per streamed hit", "hit_stream_cpu_ms", "ms"),
    ("aiohttp answering from memory, req/s (floor)", "answer_rps", "rate"),
    ("CPU ms per answer from memory (floor)", "answer_cpu_ms", "ms"),
    ("hits doing llmgw's duties, req/s (duty floor)", "duty_rps", "rate"),
    ("CPU ms per hit doing llmgw's duties (duty floor)", "duty_cpu_ms", "ms"),
    ("1,000 paced streams held open", "", ""),
    ("streams on time (<= 1.1 x ideal)", "held_on_time", "share"),
    ("stream duration p50 (ms)", "held_p50", "s"),
    ("stream duration max (ms)", "held_max", "s"),
    ("  of which time to first byte, p50 (ms)", "held_ttfb_p50", "s"),
    ("  of which time to first byte, max (ms)", "held_ttfb_max", "s"),
    ("  first byte to last, max (ms)", "held_body_max", "s"),
    ("  first byte to last on time (<= 1.1 x ideal)", "held_body_on_time", "share"),
    ("peak RSS (MiB)", "held_rss", "mib"),
    ("server core busy (all processes)", "held_server_core", "share"),
    ("load generator core busy (all processes)", "held_load_core", "share"),
)
_NO_RATIO = {"share", "mib"}


def add_derived(results: dict[str, dict[str, float | None]]) -> None:
    """Added latency and time to first byte of every proxy, over the upstream alone."""
    direct = results.get(UPSTREAM, {})
    for name, figures in results.items():
        if name == UPSTREAM:
            continue
        for key, base in (("light_add", "light"), ("ttfb_add", "ttfb")):
            for q in ("p50", "p99"):
                mine, theirs = figures.get(f"{base}_{q}"), direct.get(f"{base}_{q}")
                ok = mine is not None and theirs is not None
                figures[f"{key}_{q}"] = mine - theirs if ok else None  # type: ignore[operator]


def _show(value: float | None, unit: str, missing: str) -> str:
    if value is None:
        return missing
    if unit == "rate":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}"
    if unit == "s":
        return f"{value * 1000:.2f}"
    if unit == "share":
        return f"{value * 100:.1f}%"
    return f"{value:.0f}"


def _ratio(mine: float | None, base: float | None) -> str:
    if mine is None or base is None or base == 0:
        return "-"
    return f"{mine / base:.2f}x"


def table(results: Mapping[str, Figures], cache_note: str) -> str:
    names = list(results)
    proxies = [n for n in names if n not in (UPSTREAM, BARE)]
    header = ["", *names]
    header += [f"{n} / bare" for n in proxies] + [f"{n} / upstream" for n in proxies[:1]]
    lines: list[list[str]] = [header]
    for label, key, unit in ROWS:
        if not key:
            lines.append([f"[{label}]"] + [""] * (len(header) - 1))
            continue
        missing = cache_note if key.startswith("hit") else "-"
        row = [label] + [
            _show(results[n].get(key), unit, missing if n == LLMGW else "-") for n in names
        ]
        for name in proxies:
            base = results.get(BARE, {})
            row.append("" if unit in _NO_RATIO else _ratio(results[name].get(key), base.get(key)))
        if proxies:
            direct = results.get(UPSTREAM, {})
            mine = results[proxies[0]].get(key)
            row.append("" if unit in _NO_RATIO else _ratio(mine, direct.get(key)))
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def _check(
    label: str, value: float | None, passes: Callable[[float], bool], shown: str
) -> tuple[str, str, str]:
    if value is None:
        return label, "-", "NOT MEASURED"
    return label, shown.format(value), "PASS" if passes(value) else "FAIL"


def _over(
    results: Mapping[str, Figures], name: str, key: str, base: str, base_key: str | None = None
) -> float | None:
    mine, theirs = results.get(name, {}).get(key), results.get(base, {}).get(base_key or key)
    return None if mine is None or not theirs else mine / theirs


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def targets(results: Mapping[str, Figures], name: str = LLMGW) -> list[tuple[str, str, str]]:
    mine = results.get(name, {})
    return [
        _check("CPU per non-streamed request <= 1.3x bare proxy",
               _over(results, name, "cpu_ms", BARE), lambda v: v <= 1.3, "{:.2f}x"),
        _check("CPU per 50-chunk stream <= 1.3x bare proxy (unpaced)",
               _over(results, name, "stream_cpu_ms", BARE), lambda v: v <= 1.3, "{:.2f}x"),
        _check("CPU per 50-chunk stream <= 1.3x bare proxy (paced)",
               _over(results, name, "paced_cpu_ms", BARE), lambda v: v <= 1.3, "{:.2f}x"),
        _check("added latency at light load <= 1 ms p50 over direct",
               _ms(mine.get("light_add_p50")), lambda v: v <= 1, "{:.3f} ms"),
        _check("time to first byte <= 1 ms added (p50)",
               _ms(mine.get("ttfb_add_p50")), lambda v: v <= 1, "{:.3f} ms"),
        _check("cache hits >= 2x bare proxy req/s (non-streamed)",
               _over(results, name, "hit_rps", BARE, "rps"), lambda v: v >= 2, "{:.2f}x"),
        _check("cache hits >= 2x bare proxy req/s (streamed)",
               _over(results, name, "hit_stream_rps", BARE, "stream_rps"), lambda v: v >= 2, "{:.2f}x"),
        _check("1,000 paced streams all within 10% of ideal (from request sent)",
               mine.get("held_on_time"), lambda v: v >= 1.0, "{:.1%} on time"),
        _check("1,000 paced streams all within 10% of ideal (from first byte)",
               mine.get("held_body_on_time"), lambda v: v >= 1.0, "{:.1%} on time"),
        _check("peak RSS <= 250 MiB with 1,000 streams",
               mine.get("held_rss"), lambda v: v <= 250, "{:.0f} MiB"),
    ]  # fmt: skip


def verdicts(checks: list[tuple[str, str, str]]) -> str:
    width = max(len(label) for label, _, _ in checks)
    return "\n".join(
        f"{label.ljust(width)}  {value:>16}  {verdict}" for label, value, verdict in checks
    )


def reach(results: Mapping[str, Figures]) -> list[str]:
    """How far the hit and non-streamed targets are reachable at all here: each duty
    floor against the bare proxy, and llmgw against each duty floor."""
    lines = []
    floor = _over(results, BARE, "duty_rps", BARE, "rps")
    if floor is not None:
        mine = _over(results, LLMGW, "hit_rps", BARE, "duty_rps")
        lines.append(
            f"the duty floor serves hits at {floor:.2f}x the bare proxy's req/s (target 2x)"
            + ("" if mine is None else f"; llmgw's non-streamed hits at {mine:.2f}x its rate")
        )
    floor = _over(results, BARE, "miss_duty_cpu_ms", BARE, "cpu_ms")
    if floor is not None:
        mine = _over(results, LLMGW, "cpu_ms", BARE, "miss_duty_cpu_ms")
        lines.append(
            f"the miss duty floor costs {floor:.2f}x the bare proxy's CPU per request"
            " (target 1.3x)"
            + ("" if mine is None else f"; llmgw's non-streamed requests {mine:.2f}x its CPU")
        )
    return lines
