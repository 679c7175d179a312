#!/usr/bin/env python3
"""Summarises chat-bench reports written by docs/bench/run.sh.

    python3 docs/bench/summary.py OUT_DIR [CHART.svg]

Prints the Markdown tables of docs/BENCHMARKS.md (medians where there are several runs) and
writes the room-size chart (deliveries/s and server memory per room size, one line per
server) as an SVG, by default docs/bench/rooms.svg. Standard library only.
"""

import json
import statistics
import sys
from pathlib import Path

SERVERS = ["tlschat", "ngircd", "inspircd"]
NAMES = {"tlschat": "tlschat", "ngircd": "ngIRCd 26", "inspircd": "InspIRCd 3.15"}
COLORS = {"tlschat": "#1b7f3b", "ngircd": "#1f5fbf", "inspircd": "#c0392b"}
ROOM_SIZES = [10, 100, 1000, 5000]


def load(out, server, name):
    path = out / f"{server}-{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def runs(out, server, scenario):
    found = out.glob(f"{server}-{scenario}-*.json")
    numbered = sorted((int(p.stem.rsplit("-", 1)[1]), p) for p in found if p.stem.rsplit("-", 1)[1].isdigit())
    return [json.loads(p.read_text()) for _, p in numbered]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec, suffix=""):
    return "–" if value is None else format(value, spec) + suffix


def clean(reports):
    if not reports:
        return "–"
    bad = [r for r in reports if not r.get("clean")]
    return "yes" if not bad else f"no ({len(bad)} of {len(reports)} runs)"


def main_table(out):
    print("| server | deliveries/s (saturation, median) | p50 / p99 ms at 100k deliveries/s (median) "
          "| KiB per idle connection | 10,000 held, chat flowing | logins/s (storm of 1,000) | clean |")
    print("|---|---|---|---|---|---|---|")
    for server in SERVERS:
        sat = runs(out, server, "saturate")
        rate = runs(out, server, "rate")
        idle = load(out, server, "idle")
        held = load(out, server, "held")
        logins = load(out, server, "logins")
        if not (sat or rate or idle or held or logins):
            continue
        dps = median([r["traffic"]["deliveries_per_second"] for r in sat])
        p50 = median([r["traffic"]["latency"]["p50_ms"] for r in rate])
        p99 = median([r["traffic"]["latency"]["p99_ms"] for r in rate])
        kib = idle.get("server_kib_per_connection") if idle else None
        held_text = "–"
        if held:
            held_text = (f"{held['connect']['connected']} held, "
                         f"{held['traffic']['lost']} lost of {held['traffic']['expected']}")
        login_rate = logins["logins"]["per_second"] if logins else None
        everything = sat + rate + [r for r in (idle, held, logins) if r]
        print(f"| {NAMES[server]} | {fmt(dps and dps / 1e6, '.2f', 'M')} | {fmt(p50, '.1f')} / {fmt(p99, '.1f')} "
              f"| {fmt(kib, '.1f')} | {held_text} | {fmt(login_rate, '.1f')} | {clean(everything)} |")


def runs_table(out):
    print()
    print("| server | run | scenario | deliveries/s | p50 | p90 | p99 | max ms | server CPU % | bench CPU % | lost | gaps | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for server in SERVERS:
        for scenario in ["saturate", "rate"]:
            for i, r in enumerate(runs(out, server, scenario), 1):
                t = r["traffic"]
                lat = t["latency"]
                cpu = r.get("cpu_percent", {})
                print(f"| {NAMES[server]} | {i} | {scenario} | {t['deliveries_per_second'] / 1e3:.0f}k "
                      f"| {lat['p50_ms']:.1f} | {lat['p90_ms']:.1f} | {lat['p99_ms']:.1f} | {lat['max_ms']:.1f} "
                      f"| {fmt(cpu.get('server'), '.0f')} | {fmt(cpu.get('bench'), '.0f')} "
                      f"| {t['lost']} | {t['gaps']} | {t['errors']} |")


def logins_table(out):
    print()
    print("| server | logins | seconds | logins/s | hashing bound/s | of bound | chatter p50 / p99 ms | failures |")
    print("|---|---|---|---|---|---|---|---|")
    for server in SERVERS:
        r = load(out, server, "logins")
        if not r:
            continue
        l = r["logins"]
        lat = r["traffic"]["latency"]
        of_bound = l.get("of_bound")
        print(f"| {NAMES[server]} | {l['succeeded']} of {l['count']} | {l['seconds']:.1f} | {l['per_second']:.1f} "
              f"| {fmt(l.get('hash_bound_per_second'), '.1f')} | {fmt(of_bound and of_bound * 100, '.0f', '%')} "
              f"| {lat['p50_ms']:.1f} / {lat['p99_ms']:.1f} | {l['failures']} |")


def room_points(out):
    points = {}
    for server in SERVERS:
        for size in ROOM_SIZES:
            r = load(out, server, f"room-{size}")
            if not r:
                continue
            rss = r.get("server_rss_kib", {}).get("window_end")
            points.setdefault(server, []).append(
                (size, r["traffic"]["deliveries_per_second"], rss and rss / 1024, r.get("clean")))
    return points


def rooms_table(points):
    print()
    print("| server | room size | deliveries/s | server RSS MiB | clean |")
    print("|---|---|---|---|---|")
    for server, rows in points.items():
        for size, dps, rss, ok in rows:
            print(f"| {NAMES[server]} | {size} | {dps / 1e3:.0f}k | {fmt(rss, '.1f')} | {'yes' if ok else 'no'} |")


def chart(points, path):
    import math

    width, height = 940, 380
    panel_w, panel_h = 360, 260
    panels = [(70, "deliveries per second", 1, 1e6, "M"), (530, "server memory (RSS, MiB)", 2, 1, "")]
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">'
           'Fan-out by room size (saturation: 10 senders, window 8, 64-byte payloads; one core each)</text>']
    xs = [math.log10(s) for s in ROOM_SIZES]
    x_min, x_max = xs[0], xs[-1]
    for left, title, index, scale, unit in panels:
        top = 50
        values = [p[index] for rows in points.values() for p in rows if p[index] is not None]
        y_max = max(values) * 1.1 if values and max(values) > 0 else 1
        svg.append(f'<text x="{left + panel_w / 2}" y="{top - 8}" text-anchor="middle">{title}</text>')
        svg.append(f'<rect x="{left}" y="{top}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#888"/>')

        def px(size):
            return left + (math.log10(size) - x_min) / (x_max - x_min) * panel_w

        def py(value):
            return top + panel_h - value / y_max * panel_h

        for size in ROOM_SIZES:
            svg.append(f'<text x="{px(size)}" y="{top + panel_h + 16}" text-anchor="middle">{size}</text>')
        svg.append(f'<text x="{left + panel_w / 2}" y="{top + panel_h + 34}" text-anchor="middle">'
                   'members in the room</text>')
        for i in range(5):
            value = y_max * i / 4
            y = py(value)
            label = f"{value / scale:.1f}{unit}" if scale > 1 else f"{value:.0f}"
            svg.append(f'<line x1="{left}" x2="{left + panel_w}" y1="{y}" y2="{y}" stroke="#eee"/>')
            svg.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{label}</text>')
        for server, rows in points.items():
            coords = [(px(p[0]), py(p[index])) for p in rows if p[index] is not None]
            if not coords:
                continue
            path_d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
            svg.append(f'<path d="{path_d}" fill="none" stroke="{COLORS[server]}" stroke-width="2"/>')
            for x, y in coords:
                svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{COLORS[server]}"/>')
    for i, server in enumerate(s for s in SERVERS if s in points):
        x = 70 + i * 160
        svg.append(f'<rect x="{x}" y="{height - 22}" width="14" height="4" fill="{COLORS[server]}"/>')
        svg.append(f'<text x="{x + 20}" y="{height - 16}">{NAMES[server]}</text>')
    svg.append("</svg>")
    Path(path).write_text("\n".join(svg) + "\n")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    chart_path = sys.argv[2] if len(sys.argv) > 2 else "docs/bench/rooms.svg"
    main_table(out)
    runs_table(out)
    logins_table(out)
    points = room_points(out)
    if points:
        rooms_table(points)
        chart(points, chart_path)
        print(f"\nchart written to {chart_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
