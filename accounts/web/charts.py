"""Charts as inline SVG drawn on the server (no JavaScript): daily usage bars and load curves.
Pure functions of their data; the page gives each an accessible title and a table fallback."""
from __future__ import annotations

from html import escape

W, H, PAD = 640, 200, 28
COLOURS = {"electricity": "#d97706", "water": "#2563eb", "gas": "#7c3aed", "heat": "#dc2626"}


def _scale(vmax: float) -> float:
    return (H - 2 * PAD) / vmax if vmax > 0 else 0.0


def bars(points: list[tuple[str, float]], title: str, unit: str = "") -> str:
    """A bar per ``(label, value)``; labels on the first and last bar."""
    if not points:
        return ""
    vmax = max(v for _, v in points)
    k, n = _scale(vmax), len(points)
    bw = (W - 2 * PAD) / n
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
           f"<title>{escape(title)}</title>",
           f'<text x="{PAD}" y="{PAD - 10}" class="axis">{vmax:.1f} {escape(unit)}</text>']
    for i, (label, v) in enumerate(points):
        h = v * k
        out.append(f'<rect x="{PAD + i * bw + 1:.1f}" y="{H - PAD - h:.1f}" width="{max(bw - 2, 1):.1f}" '
                   f'height="{h:.1f}"><title>{escape(label)}: {v:.2f} {escape(unit)}</title></rect>')
    out.append(f'<text x="{PAD}" y="{H - 8}" class="axis">{escape(points[0][0])}</text>')
    out.append(f'<text x="{W - PAD}" y="{H - 8}" class="axis" text-anchor="end">{escape(points[-1][0])}</text>')
    out.append("</svg>")
    return "".join(out)


def lines(series: dict[str, list[tuple[str, float]]], title: str) -> str:
    """One polyline per series name (its own scale: utilities have different units), labelled."""
    if not any(series.values()):
        return ""
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
           f"<title>{escape(title)}</title>"]
    for j, (name, pts) in enumerate(sorted(series.items())):
        if not pts:
            continue
        vmax, n = max(v for _, v in pts), len(pts)
        k, dx = _scale(vmax), (W - 2 * PAD) / max(n - 1, 1)
        xy = " ".join(f"{PAD + i * dx:.1f},{H - PAD - v * k:.1f}" for i, (_, v) in enumerate(pts))
        colour = COLOURS.get(name, "#374151")
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{xy}">'
                   f"<title>{escape(name)} (max {vmax:.1f})</title></polyline>")
        out.append(f'<text x="{PAD + 120 * j}" y="{PAD - 10}" fill="{colour}" class="axis">{escape(name)} '
                   f"max {vmax:,.1f}</text>")
        if j == 0:
            out.append(f'<text x="{PAD}" y="{H - 8}" class="axis">{escape(pts[0][0])}</text>')
            out.append(f'<text x="{W - PAD}" y="{H - 8}" class="axis" text-anchor="end">{escape(pts[-1][0])}</text>')
    out.append("</svg>")
    return "".join(out)
