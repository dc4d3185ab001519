"""Held-out F1 by adapter version as an inline SVG: drawn on the server, so the page needs no chart library.

Each version is a point at its held-out F1 (0..1), joined in version order; the serving one is filled; a version
without a held-out F1 (zero-label, imported) is an open mark on the axis, labeled "n/a". Text is escaped.
"""

from __future__ import annotations

from html import escape

from stream.console.models import VersionRow

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 16, 40


def f1_svg(rows: tuple[VersionRow, ...]) -> str:
    if not rows:
        return (
            f'<svg class="f1-plot" role="img" aria-label="no adapter versions yet" width="{WIDTH}" height="60">'
            '<text x="8" y="32">No adapter version yet: the base scores this system zero-shot.</text></svg>'
        )
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = inner_w / max(len(rows) - 1, 1)

    def x(i: int) -> float:
        return LEFT + (i * step if len(rows) > 1 else inner_w / 2)

    def y(f1: float) -> float:
        return TOP + (1 - f1) * inner_h

    parts = [
        f'<svg class="f1-plot" role="img" aria-label="held-out F1 by version" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11">{tick:.2f}</text>'
        )
    scored = [(i, row.f1) for i, row in enumerate(rows) if row.f1 is not None]
    if len(scored) > 1:
        points = " ".join(f"{x(i):.1f},{y(f1):.1f}" for i, f1 in scored)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#2b6cb0" stroke-width="2"/>')
    for i, row in enumerate(rows):
        fill = "#2b6cb0" if row.serving else "#fff"
        name = escape(row.version)
        if row.f1 is None:
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(0):.1f}" r="5" fill="{fill}" stroke="#999" stroke-dasharray="2"/>'
                f'<text x="{x(i):.1f}" y="{y(0) - 9:.1f}" text-anchor="middle" font-size="10">n/a</text>'
            )
        else:
            parts.append(
                f'<circle class="f1-point" data-version="{name}" data-f1="{row.f1:.3f}" cx="{x(i):.1f}" '
                f'cy="{y(row.f1):.1f}" r="5" fill="{fill}" stroke="#2b6cb0"><title>{name}: F1 {row.f1:.3f}</title>'
                f'</circle><text x="{x(i):.1f}" y="{y(row.f1) - 9:.1f}" text-anchor="middle" font-size="10">'
                f"{row.f1:.2f}</text>"
            )
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11">{name}</text>'
        )
    parts.append(
        f'<text x="{LEFT + inner_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11">'
        "adapter version (filled: serving)</text></svg>"
    )
    return "".join(parts)
