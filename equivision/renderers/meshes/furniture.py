"""Procedural furniture families: chair, table, sofa, bench, bed, bookshelf, lamp.

Convention while building: Z up, the floor at z = 0, the front of the object towards -Y, lengths in
metres (normalisation happens in ``Parts.build``). Each family draws its proportions, part counts
and colours from the generator it is given and nothing else.
"""

from __future__ import annotations

import numpy as np

from equivision.renderers.meshes.shapes import (
    DARK,
    FABRIC,
    METAL,
    WOOD,
    Parts,
    R,
    T,
    box,
    box_between,
    cylinder_z,
    ellipsoid,
    family,
    hexrgb,
    jitter,
    pick,
    revolve,
    rod,
    shell,
    smooth_profile,
    sphere,
    tube,
)

X, Y, Z = (1, 0, 0), (0, 1, 0), (0, 0, 1)


def _legs(parts: Parts, xs, ys, z0: float, z1: float, size: float, round_: bool, color) -> None:
    """One leg at every (x, y) in the grid xs × ys, from z0 to z1."""
    for x in xs:
        for y in ys:
            if round_:
                parts.add(cylinder_z(size / 2, z0, z1, x, y, sections=12), color)
            else:
                parts.add(
                    box_between((x - size / 2, y - size / 2, z0), (x + size / 2, y + size / 2, z1)), color
                )


@family("chair")
def chair(rng: np.random.Generator) -> Parts:
    """3 (round seat), 4 (corner) or 5 (swivel star base) legs; slatted, railed or panel back; arms or not."""
    p = Parts()
    style = rng.choice(["four", "three", "swivel"], p=[0.6, 0.15, 0.25])
    frame = pick(rng, WOOD) if style != "swivel" and rng.random() < 0.75 else pick(rng, METAL)
    seat_color = frame if style != "swivel" and rng.random() < 0.5 else pick(rng, FABRIC)
    w, d = rng.uniform(0.4, 0.55), rng.uniform(0.38, 0.52)
    h, t = rng.uniform(0.4, 0.5), rng.uniform(0.03, 0.07)
    if style == "swivel":  # padded seat and back
        t = rng.uniform(0.07, 0.11)
    leg = rng.uniform(0.025, 0.05)

    if style == "three":
        r = w / 2
        p.add(cylinder_z(r, h - t, h), seat_color)
        for k in range(3):
            a = np.pi / 2 + 2 * np.pi * k / 3
            top = (0.75 * r * np.cos(a), 0.75 * r * np.sin(a), h - t)
            foot = (0.95 * r * np.cos(a), 0.95 * r * np.sin(a), 0.0)
            p.add(rod(foot, top, leg / 2), frame)
        post_x, post_y = 0.55 * r, 0.8 * r
    else:
        p.add(box((w, d, t), (0, 0, h - t / 2)), seat_color)
        post_x, post_y = w / 2 - leg / 2, d / 2 - leg / 2
    if style == "four":
        round_legs = rng.random() < 0.4
        xs, ys = (-(w / 2 - leg / 2), w / 2 - leg / 2), (-(d / 2 - leg / 2), d / 2 - leg / 2)
        _legs(p, xs, ys, 0.0, h - t, leg, round_legs, frame)
        if rng.random() < 0.5:  # stretchers between front and back legs
            zs = rng.uniform(0.1, 0.2)
            for x in xs:
                p.add(rod((x, ys[0], zs), (x, ys[1], zs), leg / 3), frame)
    elif style == "swivel":
        metal = pick(rng, METAL)
        p.add(cylinder_z(rng.uniform(0.02, 0.03), 0.07, h - t), metal)
        p.add(cylinder_z(0.05, 0.05, 0.1), metal)
        spoke = rng.uniform(0.25, 0.33)
        for k in range(5):
            a = 2 * np.pi * k / 5 + np.pi / 2
            end = np.array([spoke * np.cos(a), spoke * np.sin(a), 0.05])
            p.add(rod((0, 0, 0.07), end, 0.018, sections=8), metal)
            p.add(sphere(0.03, end - (0, 0, 0.02), subdivisions=1), hexrgb(DARK))

    back = Parts()
    bh = rng.uniform(0.45, 0.65) if style == "swivel" else rng.uniform(0.35, 0.55)
    back_style = "panel" if style == "swivel" else rng.choice(["slats", "rails", "panel"])
    pw = leg if style == "four" else 0.03
    rail_h = rng.uniform(0.05, 0.1)
    if back_style == "panel":
        inset = rng.uniform(0.0, 0.08)
        lo, depth = (h + rng.uniform(0.02, 0.08), rng.uniform(0.05, 0.08)) if style == "swivel" else (h, 0.04)
        back.add(
            box_between(
                (-post_x - pw / 2 + inset, post_y - depth / 2, lo),
                (post_x + pw / 2 - inset, post_y + depth / 2, h + bh),
            ),
            seat_color,
        )
        if style == "swivel":
            back.add(
                box_between((-0.03, post_y, h - t), (0.03, post_y + depth / 2 + 0.02, lo + 0.1)),
                pick(rng, METAL),
            )
    else:
        for sx in (-1, 1):
            back.add(
                box_between(
                    (sx * post_x - pw / 2, post_y - pw / 2, h),
                    (sx * post_x + pw / 2, post_y + pw / 2, h + bh),
                ),
                frame,
            )
        back.add(
            box_between((-post_x, post_y - pw / 2, h + bh - rail_h), (post_x, post_y + pw / 2, h + bh)), frame
        )
        n = int(rng.integers(2, 6)) if back_style == "slats" else int(rng.integers(2, 5))
        if back_style == "slats":
            sw = rng.uniform(0.02, 0.05)
            for x in np.linspace(-post_x, post_x, n + 2)[1:-1]:
                back.add(
                    box_between(
                        (x - sw / 2, post_y - 0.01, h + 0.04), (x + sw / 2, post_y + 0.01, h + bh - rail_h)
                    ),
                    frame,
                )
        else:
            for z in np.linspace(h + 0.06, h + bh - rail_h, n + 1)[:-1]:
                back.add(
                    box_between((-post_x, post_y - 0.012, z), (post_x, post_y + 0.012, z + rail_h * 0.6)),
                    frame,
                )
    p.merge(back, R(-rng.uniform(0.0, 0.25), X, (0, post_y, h)))

    if style != "three" and rng.random() < (0.6 if style == "swivel" else 0.3):  # armrests
        ah = h + rng.uniform(0.18, 0.26)
        for sx in (-1, 1):
            x = sx * (w / 2 + 0.02)
            p.add(box_between((x - 0.025, -d / 2, ah - 0.03), (x + 0.025, d / 2, ah)), frame)
            p.add(box_between((x - 0.015, -d / 2 + 0.02, h - t), (x + 0.015, -d / 2 + 0.05, ah)), frame)
    return p


@family("table")
def table(rng: np.random.Generator) -> Parts:
    """Rectangular or round top; 4 legs, a trestle, a pedestal or 3 legs; apron and lower shelf or not."""
    p = Parts()
    top_color = pick(rng, WOOD) if rng.random() < 0.7 else pick(rng, ("#f0f0f0", "#1e1e1e", "#7d6b5a"))
    leg_color = top_color if rng.random() < 0.5 else pick(rng, METAL)
    h = rng.uniform(0.4, 0.5) if rng.random() < 0.2 else rng.uniform(0.7, 0.78)
    t = rng.uniform(0.03, 0.06)
    leg = rng.uniform(0.04, 0.08)
    if rng.random() < 0.35:  # round top
        r = rng.uniform(0.4, 0.65)
        p.add(cylinder_z(r, h - t, h, sections=32), top_color)
        style = rng.choice(["pedestal", "legs3", "legs4"])
        if style == "pedestal":
            col = rng.uniform(0.04, 0.09)
            p.add(cylinder_z(col, 0.03, h - t), leg_color)
            if rng.random() < 0.5:
                p.add(cylinder_z(rng.uniform(0.5, 0.7) * r, 0.0, 0.03, sections=32), leg_color)
            else:
                for k in range(4):
                    a = np.pi / 4 + k * np.pi / 2
                    foot = 0.6 * r * np.array([np.cos(a), np.sin(a), 0.0])
                    p.add(rod((0, 0, 0.03), foot + (0, 0, 0.03), 0.03, sections=8), leg_color)
        else:
            n = 3 if style == "legs3" else 4
            for k in range(n):
                a = 2 * np.pi * k / n + np.pi / 4
                p.add(
                    cylinder_z(leg / 2, 0.0, h - t, 0.7 * r * np.cos(a), 0.7 * r * np.sin(a), sections=12),
                    leg_color,
                )
        return p

    w = rng.uniform(0.9, 1.8)
    d = min(rng.uniform(0.55, 1.0), 0.9 * w)
    p.add(box((w, d, t), (0, 0, h - t / 2)), top_color)
    inset = rng.uniform(0.0, 0.08)
    xs, ys = (
        (-(w / 2 - leg / 2 - inset), w / 2 - leg / 2 - inset),
        (-(d / 2 - leg / 2 - inset), d / 2 - leg / 2 - inset),
    )
    if rng.random() < 0.2:  # trestle: a board at each end on a foot bar, joined by a stretcher
        for x in xs:
            p.add(box_between((x - 0.03, -0.1, 0.05), (x + 0.03, 0.1, h - t)), leg_color)
            p.add(box_between((x - 0.04, ys[0], 0.0), (x + 0.04, ys[1], 0.05)), leg_color)
        p.add(box_between((xs[0], -0.03, 0.25), (xs[1], 0.03, 0.31)), leg_color)
        return p
    _legs(p, xs, ys, 0.0, h - t, leg, rng.random() < 0.35, leg_color)
    if rng.random() < 0.6:  # apron
        a = rng.uniform(0.05, 0.12)
        for y in ys:
            p.add(box_between((xs[0], y - 0.01, h - t - a), (xs[1], y + 0.01, h - t)), leg_color)
        for x in xs:
            p.add(box_between((x - 0.01, ys[0], h - t - a), (x + 0.01, ys[1], h - t)), leg_color)
    if rng.random() < 0.25:  # lower shelf
        zs = rng.uniform(0.1, 0.25)
        p.add(box_between((xs[0], ys[0], zs), (xs[1], ys[1], zs + 0.025)), top_color)
    return p


@family("sofa")
def sofa(rng: np.random.Generator) -> Parts:
    """2 to 4 seats with one cushion each, back cushions or a single back, box or rolled arms,
    legs or a plinth, sometimes a chaise."""
    p = Parts()
    fabric = pick(rng, FABRIC)
    cushion = fabric if rng.random() < 0.7 else pick(rng, FABRIC)
    n = int(rng.choice([2, 3, 4], p=[0.35, 0.45, 0.2]))
    sw, D = rng.uniform(0.55, 0.7), rng.uniform(0.8, 1.0)
    L = n * sw
    aw = rng.uniform(0.1, 0.25)
    leg = rng.uniform(0.05, 0.15) if rng.random() < 0.6 else 0.0
    base_top = rng.uniform(0.25, 0.33)
    seat_h = base_top + rng.uniform(0.1, 0.15)
    arm_h = seat_h + rng.uniform(0.12, 0.25)
    bt = rng.uniform(0.15, 0.25)
    back_top = seat_h + rng.uniform(0.35, 0.5)
    X0, X1 = -L / 2 - aw, L / 2 + aw
    p.add(box_between((X0, -D / 2, leg), (X1, D / 2, base_top)), fabric)
    p.add(box_between((X0, D / 2 - bt, base_top), (X1, D / 2, back_top - 0.1)), fabric)
    for sx in (-1, 1):  # arms
        x0, x1 = sorted((sx * L / 2, sx * (L / 2 + aw)))
        p.add(box_between((x0, -D / 2, base_top), (x1, D / 2, arm_h)), fabric)
        if rng.random() < 0.4:  # rolled top
            p.add(
                rod(((x0 + x1) / 2, -D / 2, arm_h), ((x0 + x1) / 2, D / 2, arm_h), aw / 2 + 0.01, 16), fabric
            )
    for k in range(n):  # seat cushions and back cushions
        x0 = -L / 2 + k * sw + 0.005
        p.add(box_between((x0, -D / 2 + 0.02, base_top), (x0 + sw - 0.01, D / 2 - bt, seat_h)), cushion)
    if rng.random() < 0.6:
        for k in range(n):
            x0 = -L / 2 + k * sw + 0.005
            c = box_between((x0, D / 2 - bt - 0.14, seat_h), (x0 + sw - 0.01, D / 2 - bt + 0.02, back_top))
            p.add(c, cushion, R(-0.12, X, (0, D / 2 - bt, seat_h)))
    else:
        p.add(box_between((-L / 2, D / 2 - bt - 0.1, seat_h), (L / 2, D / 2 - bt + 0.02, back_top)), cushion)
    if rng.random() < 0.15:  # chaise at one end
        sx = rng.choice([-1, 1])
        x0, x1 = sorted((sx * L / 2, sx * (L / 2 - sw)))
        p.add(box_between((x0, -D / 2 - 0.6, leg), (x1, -D / 2, seat_h)), cushion)
    if leg > 0:
        lc = pick(rng, WOOD + METAL)
        for x in (X0 + 0.05, X1 - 0.05):
            for y in (-D / 2 + 0.05, D / 2 - 0.05):
                p.add(cylinder_z(0.025, 0.0, leg, x, y, sections=10), lc)
    return p


@family("bench")
def bench(rng: np.random.Generator) -> Parts:
    """Park bench (slatted seat and back on metal side frames), or a slatted or plank bench on legs
    or slab ends."""
    p = Parts()
    L, D, h = rng.uniform(1.1, 2.0), rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.48)
    wood = pick(rng, WOOD)
    style = rng.choice(["park", "plank", "slats"], p=[0.45, 0.35, 0.2])
    if style == "plank":
        t = rng.uniform(0.04, 0.08)
        p.add(box((L, D, t), (0, 0, h - t / 2)), wood)
    else:  # slats along the length
        n = int(rng.integers(3, 7))
        gap = rng.uniform(0.005, 0.02)
        sw = (D - (n - 1) * gap) / n
        for k in range(n):
            y0 = -D / 2 + k * (sw + gap)
            p.add(box_between((-L / 2, y0, h - 0.03), (L / 2, y0 + sw, h)), wood)
    ends = (-L / 2 + rng.uniform(0.05, 0.2), L / 2 - rng.uniform(0.05, 0.2))
    if style == "park":
        metal = pick(rng, METAL + ("#1f4d2b",))
        arm_h = h + rng.uniform(0.18, 0.25)
        for x in ends:
            p.add(box_between((x - 0.025, -D / 2, 0.0), (x + 0.025, -D / 2 + 0.05, arm_h)), metal)
            p.add(box_between((x - 0.025, D / 2 - 0.05, 0.0), (x + 0.025, D / 2, h)), metal)
            p.add(box_between((x - 0.025, -D / 2, h - 0.07), (x + 0.025, D / 2, h - 0.03)), metal)
            p.add(box_between((x - 0.03, -D / 2 - 0.03, arm_h - 0.03), (x + 0.03, D / 2 * 0.6, arm_h)), metal)
        back = Parts()
        nb, bh = int(rng.integers(2, 5)), rng.uniform(0.3, 0.45)
        for k in range(nb):
            z0 = h + 0.06 + k * bh / nb
            back.add(box_between((-L / 2, D / 2 - 0.02, z0), (L / 2, D / 2, z0 + bh / nb * 0.7)), wood)
        for x in ends:
            back.add(
                box_between((x - 0.025, D / 2, h - 0.03), (x + 0.025, D / 2 + 0.04, h + bh + 0.08)), metal
            )
        p.merge(back, R(-rng.uniform(0.15, 0.35), X, (0, D / 2, h)))
    elif rng.random() < 0.5:  # slab ends
        for x in ends:
            p.add(box_between((x - 0.03, -D / 2 + 0.02, 0.0), (x + 0.03, D / 2 - 0.02, h - 0.03)), wood)
    else:
        leg = rng.uniform(0.04, 0.07)
        _legs(
            p,
            ends,
            (-D / 2 + leg, D / 2 - leg),
            0.0,
            h - 0.03,
            leg,
            rng.random() < 0.4,
            pick(rng, WOOD + METAL),
        )
    return p


@family("bed")
def bed(rng: np.random.Generator) -> Parts:
    """Frame, mattress, 1-2 pillows, headboard (panel, slats or posts), footboard and blanket or not."""
    p = Parts()
    frame = pick(rng, WOOD + ("#e8e8e8", "#303030"))
    W, Lb = rng.uniform(0.9, 1.9), rng.uniform(1.9, 2.2)
    leg = rng.uniform(0.05, 0.2) if rng.random() < 0.6 else 0.0
    ft = rng.uniform(0.2, 0.4)
    mt = rng.uniform(0.15, 0.3)
    p.add(box_between((-W / 2, -Lb / 2, leg), (W / 2, Lb / 2, ft)), frame)
    p.add(
        box_between((-W / 2 + 0.03, -Lb / 2 + 0.03, ft), (W / 2 - 0.03, Lb / 2 - 0.03, ft + mt)),
        jitter(rng, hexrgb("#f2f0ea")),
    )
    top = ft + mt
    if leg > 0:
        _legs(p, (-W / 2 + 0.04, W / 2 - 0.04), (-Lb / 2 + 0.04, Lb / 2 - 0.04), 0.0, leg, 0.06, False, frame)
    hh = top + rng.uniform(0.3, 0.9)
    hstyle = rng.choice(["panel", "slats", "posts"])
    y0, y1 = Lb / 2, Lb / 2 + 0.05
    if hstyle == "panel":
        p.add(box_between((-W / 2, y0, leg), (W / 2, y1, hh)), frame)
    else:
        for sx in (-1, 1):
            p.add(box_between((sx * W / 2 - 0.04, y0, 0.0), (sx * W / 2 + 0.04, y1 + 0.03, hh + 0.05)), frame)
        p.add(box_between((-W / 2, y0, hh - 0.08), (W / 2, y1, hh)), frame)
        if hstyle == "slats":
            for x in np.linspace(-W / 2, W / 2, int(rng.integers(4, 10)))[1:-1]:
                p.add(box_between((x - 0.02, y0 + 0.01, top), (x + 0.02, y1 - 0.01, hh - 0.08)), frame)
        else:
            p.add(box_between((-W / 2, y0, top - 0.05), (W / 2, y1, top + 0.05)), frame)
    if rng.random() < 0.5:  # footboard
        p.add(
            box_between((-W / 2, -Lb / 2 - 0.05, leg), (W / 2, -Lb / 2, top + rng.uniform(0.05, 0.3))), frame
        )
    n_pillows = 1 if W < 1.2 else 2
    pc = jitter(rng, hexrgb("#f5f5f5")) if rng.random() < 0.6 else pick(rng, FABRIC)
    for k in range(n_pillows):
        x = 0.0 if n_pillows == 1 else (k - 0.5) * W / 2
        p.add(ellipsoid((W / n_pillows * 0.42, 0.2, 0.07), (x, Lb / 2 - 0.3, top + 0.05)), pc)
    if rng.random() < 0.7:  # blanket over the lower part
        cover = rng.uniform(0.55, 0.75) * Lb
        p.add(
            box_between(
                (-W / 2 + 0.01, -Lb / 2 + 0.01, ft + 0.05), (W / 2 - 0.01, -Lb / 2 + cover, top + 0.025)
            ),
            pick(rng, FABRIC),
        )
    return p


@family("bookshelf")
def bookshelf(rng: np.random.Generator) -> Parts:
    """Sides, top, plinth, 2-6 shelves, back or not, a middle divider or not, and rows of books."""
    p = Parts()
    board = pick(rng, WOOD + ("#f0f0f0", "#2a2a2a"))
    H, W, D = rng.uniform(0.8, 2.0), rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.38)
    bt = rng.uniform(0.018, 0.03)
    plinth = rng.uniform(0.0, 0.08)
    levels = int(np.clip(round(H / 0.33) + rng.integers(-1, 2), 2, 6))
    for sx in (-1, 1):
        p.add(box_between((sx * W / 2 - bt / 2, -D / 2, 0.0), (sx * W / 2 + bt / 2, D / 2, H)), board)
    p.add(box_between((-W / 2, -D / 2, H - bt), (W / 2, D / 2, H)), board)
    if rng.random() < 0.75:
        p.add(box_between((-W / 2, D / 2 - 0.008, 0.0), (W / 2, D / 2, H)), board)
    zs = np.linspace(plinth, H - bt, levels + 1)[:-1]
    columns = [(-W / 2 + bt / 2, W / 2 - bt / 2)]
    if W > 0.9 and rng.random() < 0.4:
        p.add(box_between((-bt / 2, -D / 2, plinth), (bt / 2, D / 2, H)), board)
        columns = [(-W / 2 + bt / 2, -bt / 2), (bt / 2, W / 2 - bt / 2)]
    gap = (H - bt - plinth) / levels
    for z in zs:
        p.add(box_between((-W / 2, -D / 2, z), (W / 2, D / 2, z + bt)), board)
        for c0, c1 in columns:
            x, fill = c0 + rng.uniform(0.0, 0.1), rng.uniform(0.3, 0.95)
            while x < c0 + fill * (c1 - c0):
                bw = rng.uniform(0.02, 0.05)
                if x + bw > c1:
                    break
                bh, bd = rng.uniform(0.55, 0.9) * (gap - bt), rng.uniform(0.6, 0.9) * D
                color = jitter(rng, hexrgb("#a03030"), dh=0.5, ds=0.3, dv=0.3)
                p.add(box_between((x, D / 2 - bd, z + bt), (x + bw, D / 2 - 0.01, z + bt + bh)), color)
                x += bw + (rng.uniform(0.05, 0.15) if rng.random() < 0.08 else 0.001)
    return p


def _shade(rng: np.random.Generator, r_bottom: float, r_top: float, height: float) -> np.ndarray:
    """(r, z) loop of a lamp shade: a frustum shell, open at both ends, base at z = 0."""
    t = 0.006
    return np.array([[r_bottom, 0.0], [r_top, height], [r_top - t, height], [r_bottom - t, 0.0]])


@family("lamp")
def lamp(rng: np.random.Generator) -> Parts:
    """Table lamp (base, stem, shade), desk lamp (two-segment arm, cone head) or floor lamp (tall stem with a
    shade, an up-light bowl or an arc with a hanging dome)."""
    p = Parts()
    metal = pick(rng, METAL + ("#f0f0f0",))
    shade_c = pick(rng, ("#f3ead6", "#ffffff", "#c8b89a", "#8b1e1e", "#2f5d8a", "#e8c547"))
    bulb = jitter(rng, hexrgb("#fff6d8"), ds=0.02, dv=0.02)
    kind = rng.choice(["table", "desk", "floor"], p=[0.4, 0.35, 0.25])
    if kind == "table":
        bh = rng.uniform(0.15, 0.35)
        if rng.random() < 0.5:  # turned ceramic base
            prof = smooth_profile(
                [0.0, bh * 0.1, bh * 0.5, bh * 0.9, bh], [0.05, 0.06, rng.uniform(0.07, 0.12), 0.03, 0.015]
            )
            p.add(
                revolve(np.vstack([[[0.0, 0.0]], prof, [[0.0, bh]]])),
                pick(rng, ("#2f5d8a", "#f2efe6", "#b24a3b", "#6f8f72")),
            )
        else:
            p.add(cylinder_z(rng.uniform(0.07, 0.11), 0.0, 0.025), metal)
            p.add(cylinder_z(0.012, 0.025, bh, sections=10), metal)
        stem_top = bh + rng.uniform(0.1, 0.2)
        p.add(cylinder_z(0.008, bh, stem_top, sections=8), metal)
        rb, sh = rng.uniform(0.12, 0.2), rng.uniform(0.15, 0.25)
        z0 = stem_top - 0.4 * sh
        p.add(revolve(_shade(rng, rb, rb * rng.uniform(0.55, 0.9), sh)), shade_c, T(0, 0, z0))
        p.add(sphere(0.03, (0, 0, stem_top)), bulb)
        if rng.random() < 0.5:
            p.add(sphere(0.012, (0, 0, z0 + sh + 0.015), subdivisions=1), metal)
    elif kind == "desk":
        p.add(cylinder_z(rng.uniform(0.07, 0.1), 0.0, rng.uniform(0.02, 0.035)), metal)
        l1, l2 = rng.uniform(0.25, 0.4), rng.uniform(0.25, 0.4)
        a1, a2 = rng.uniform(0.05, 0.5), rng.uniform(0.9, 1.9)  # from vertical, leaning to -y (front)
        j0 = np.array([0.0, 0.03, 0.03])
        j1 = j0 + l1 * np.array([0.0, np.sin(a1), np.cos(a1)])
        j2 = j1 + l2 * np.array([0.0, -np.sin(a2), np.cos(a2)])
        for a, b in ((j0, j1), (j1, j2)):
            p.add(rod(a, b, 0.01, sections=8), metal)
        p.add(sphere(0.02, j1, subdivisions=1), metal)
        head_len, head_r = rng.uniform(0.1, 0.16), rng.uniform(0.05, 0.09)
        head = revolve(
            np.array(
                [
                    [head_r, 0.0],
                    [0.02, head_len],
                    [0.0, head_len],
                    [0.0, head_len - 0.006],
                    [0.02 - 0.006, head_len - 0.006],
                    [head_r - 0.006, 0.0],
                ]
            )
        )
        tilt = rng.uniform(0.6, 1.2)  # the mouth faces down, leaning forward (-y) by ``tilt``
        p.add(head, shade_c if rng.random() < 0.4 else metal, T(*j2) @ R(-tilt, X) @ T(0, 0, -head_len))
        p.add(sphere(0.025, j2, subdivisions=1), bulb)
    else:
        H = rng.uniform(1.4, 1.8)
        p.add(cylinder_z(rng.uniform(0.13, 0.18), 0.0, 0.03, sections=32), metal)
        style = rng.choice(["shade", "uplight", "arc"])
        if style == "arc":
            reach = rng.uniform(0.5, 0.8)
            t = np.linspace(0, np.pi / 2, 16)
            path = np.column_stack([reach * (1 - np.cos(t)), np.zeros(16), H - 0.3 + 0.3 * np.sin(t)])
            path = np.vstack([[[0.0, 0.0, 0.03]], path])
            p.add(tube(path, 0.012, sections=8), metal)
            p.add(rod((reach, 0, H), (reach, 0, H - 0.06), 0.008, sections=8), metal)
            dome = revolve(shell(smooth_profile([0.0, 0.1, 0.18], [0.04, 0.14, 0.2], 10), 0.006, 0.006))
            p.add(dome, shade_c, T(reach, 0, H - 0.22) @ R(np.pi, X) @ T(0, 0, -0.18))
            p.add(sphere(0.03, (reach, 0, H - 0.17)), bulb)
        else:
            p.add(cylinder_z(0.012, 0.03, H, sections=8), metal)
            if style == "shade":
                rb, sh = rng.uniform(0.18, 0.25), rng.uniform(0.25, 0.35)
                p.add(
                    revolve(_shade(rng, rb, rb * rng.uniform(0.6, 0.95), sh)), shade_c, T(0, 0, H - 0.5 * sh)
                )
                p.add(sphere(0.035, (0, 0, H)), bulb)
            else:
                bowl = shell(smooth_profile([0.0, 0.08, 0.14], [0.03, 0.15, 0.22], 10), 0.006, 0.006)
                p.add(revolve(bowl), shade_c, T(0, 0, H))
    return p
