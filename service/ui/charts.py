"""The version page's score histogram, drawn server-side as an inline SVG.

Grey bars: the calibration scores' share per bin; orange steps: the live `/anomaly-score` scores'
share per bin since start-up (`service.drift`); red line: the threshold. Scores outside the range
are counted in the first or last bin.
"""

from __future__ import annotations

from markupsafe import Markup

from service.drift import DriftSnapshot

WIDTH, HEIGHT, PAD = 640, 220, 34


def score_histogram_svg(s: DriftSnapshot) -> Markup:
    """The calibration histogram with the threshold, and the live one over it."""
    edges = s.display_edges
    lo, hi = float(edges[0]), float(edges[-1])
    top = max(float(s.calibration_display.max()), float(s.live_display.max()), 1e-9)
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(v: float) -> float:
        return PAD + (v - lo) / (hi - lo) * plot_w

    def y(share: float) -> float:
        return HEIGHT - PAD - share / top * plot_h

    bw = plot_w / len(s.calibration_display)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="hist" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="score histogram">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#444"/>',
    ]
    for i, share in enumerate(s.calibration_display):
        h = HEIGHT - PAD - y(float(share))
        parts.append(
            f'<rect x="{PAD + i * bw:.1f}" y="{y(float(share)):.1f}" width="{bw - 1:.1f}" height="{h:.1f}" '
            'fill="#b8c2cc"/>'
        )
    if s.n:
        points = []
        for i, share in enumerate(s.live_display):
            yy = y(float(share))
            points += [f"{PAD + i * bw:.1f},{yy:.1f}", f"{PAD + (i + 1) * bw:.1f},{yy:.1f}"]
        parts.append(
            f'<polyline class="live" points="{" ".join(points)}" fill="none" stroke="#e8730c" '
            'stroke-width="2"/>'
        )
    tx = x(min(max(s.threshold, lo), hi))
    parts += [
        f'<line class="threshold" x1="{tx:.1f}" y1="{PAD - 8}" x2="{tx:.1f}" y2="{HEIGHT - PAD}" '
        'stroke="#d0021b" stroke-width="2"/>',
        f'<text x="{tx + 4:.1f}" y="{PAD - 10}" font-size="11" fill="#d0021b">threshold {s.threshold:.4g}'
        f" (expected {s.promised_above:.1%} above)</text>",
        f'<text x="{PAD}" y="{HEIGHT - 12}" font-size="11">{lo:.3g}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 12}" font-size="11" text-anchor="end">{hi:.3g}</text>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" font-size="11" text-anchor="middle">anomaly score</text>',
        f'<text x="{WIDTH - PAD}" y="14" font-size="11" text-anchor="end">'
        f'<tspan fill="#8795a1">■ calibration</tspan>  <tspan fill="#e8730c">▬ live ({s.n} scores)</tspan>'
        "</text>",
        "</svg>",
    ]
    return Markup("".join(parts))
