"""Procedural families of household objects and vehicles: mug, bottle, vase, bowl, guitar, airplane,
car, rocket.

Same conventions as ``furniture.py``: Z up, lengths in metres-like units, every choice drawn from the
generator given to the family.
"""

from __future__ import annotations

import numpy as np
import trimesh

from equivision.renderers.meshes.shapes import (
    CERAMIC,
    DARK,
    METAL,
    PAINT,
    WOOD,
    Parts,
    R,
    T,
    bezier,
    box,
    box_between,
    cylinder_z,
    ellipsoid,
    family,
    hexrgb,
    jitter,
    pick,
    prism,
    revolve,
    rod,
    shell,
    smooth_profile,
    tube,
)

X, Y, Z = (1, 0, 0), (0, 1, 0), (0, 0, 1)
GLASS = ("#2e6b3a", "#6b4423", "#c9dde3", "#3b6fa8", "#d9e8d0")


def _radius_at(profile: np.ndarray, z: float) -> float:
    """Radius of an (r, z) profile (z ascending) at height z."""
    return float(np.interp(z, profile[:, 1], profile[:, 0]))


@family("mug")
def mug(rng: np.random.Generator) -> Parts:
    """A thick-walled cup, straight or tapered, with a round, oval or D-shaped handle (most of the time)."""
    p = Parts()
    color = pick(rng, CERAMIC)
    r, h = rng.uniform(0.035, 0.05), rng.uniform(0.07, 0.115)
    bottom = r * rng.uniform(0.8, 1.05)
    outer = smooth_profile([0.0, 0.5 * h, h], [bottom, (bottom + r) / 2 * rng.uniform(0.97, 1.05), r], 12)
    wall = rng.uniform(0.004, 0.007)
    p.add(revolve(shell(outer, wall, rng.uniform(0.006, 0.012)), 32), color)
    if rng.random() < 0.9:
        rz = rng.uniform(0.28, 0.4) * h
        rx = rz * rng.uniform(0.6, 1.3)
        zc = h * rng.uniform(0.45, 0.55)
        xc = min(_radius_at(outer, zc - rz), _radius_at(outer, zc + rz)) - wall / 2
        t = np.linspace(-np.pi / 2, np.pi / 2, 17)
        e = 0.5 if rng.random() < 0.3 else 1.0  # 0.5: a squarish D-shaped handle (superellipse)
        cx, sz = np.cos(t), np.sin(t)
        path = np.column_stack(
            [xc + rx * np.abs(cx) ** e, np.zeros_like(t), zc + rz * np.sign(sz) * np.abs(sz) ** e]
        )
        handle_color = color if rng.random() < 0.85 else pick(rng, CERAMIC)
        p.add(tube(path, rng.uniform(0.005, 0.009), sections=10), handle_color)
    return p


@family("bottle")
def bottle(rng: np.random.Generator) -> Parts:
    """Wine, beer, water or jug-like bottle: body, shoulder, neck, lip; cap and label or not."""
    p = Parts()
    kind = rng.choice(["wine", "beer", "water", "jug"])
    R0 = {"wine": (0.035, 0.042), "beer": (0.028, 0.034), "water": (0.03, 0.045), "jug": (0.05, 0.075)}[kind]
    r = rng.uniform(*R0)
    hb = r * rng.uniform(
        *{"wine": (4.0, 5.5), "beer": (3.0, 4.0), "water": (3.5, 5.5), "jug": (1.6, 2.4)}[kind]
    )
    rn = rng.uniform(0.25, 0.4) * r if kind != "jug" else rng.uniform(0.3, 0.45) * r
    hs = r * {"wine": 1.2, "beer": 1.6, "water": 1.0, "jug": 1.0}[kind] * rng.uniform(0.8, 1.3)
    hn = r * {"wine": 2.5, "beer": 1.8, "water": 0.6, "jug": 0.8}[kind] * rng.uniform(0.8, 1.3)
    body_z = np.linspace(0.01, hb, 8)
    body_r = np.full_like(body_z, r)
    if kind == "water" and rng.random() < 0.7:  # ribbed plastic
        body_r = body_r * (1 - 0.04 * (np.arange(8) % 2))
    # shoulder: a superellipse quarter from (r, hb) to (rn, hb + hs); power 1 is a cone, 2 is round
    power = rng.uniform(
        *{"wine": (1.6, 2.6), "beer": (1.4, 2.2), "water": (1.0, 2.0), "jug": (1.8, 3.0)}[kind]
    )
    s = np.linspace(0.0, 1.0, 10)
    shoulder = np.column_stack([rn + (r - rn) * (1 - s**power) ** (1 / power), hb + hs * s])
    top = hb + hs + hn
    lip = rn * 1.15
    prof = np.vstack(
        [
            [[0.0, 0.0], [r * 0.9, 0.0]],
            np.column_stack([body_r, body_z]),
            shoulder[1:],
            [[rn, top - 0.006], [lip, top - 0.006], [lip, top], [0.0, top]],
        ]
    )
    glass = pick(rng, GLASS, dv=0.05)
    p.add(revolve(prof, 28), glass)
    if kind != "wine" or rng.random() < 0.5:
        cap_h = rng.uniform(0.012, 0.025)
        p.add(
            cylinder_z(lip * 1.08, top - 0.6 * cap_h, top + 0.4 * cap_h, sections=20),
            pick(rng, PAINT + METAL),
        )
    if rng.random() < 0.6:
        z0 = hb * rng.uniform(0.15, 0.35)
        z1 = z0 + hb * rng.uniform(0.3, 0.5)
        p.add(
            cylinder_z(r * 1.02, z0, min(z1, hb * 0.95), sections=28),
            pick(rng, ("#f4efe1", "#d8c7a0", "#b01c1c", "#1f3a5f", "#e0e0e0")),
        )
    if kind == "jug" and rng.random() < 0.5:  # a handle from neck to shoulder
        za, zb = hb + 0.7 * hs, hb * 0.7
        xa = float(np.interp(za, shoulder[:, 1], shoulder[:, 0]))
        path = bezier(
            [(xa - 0.003, 0, za), (r * 1.6, 0, za + 0.02), (r * 1.5, 0, zb), (r - 0.003, 0, zb)], 14
        )
        p.add(tube(path, 0.007, sections=8), glass)
    return p


_VASE_RADII = {  # radius / height at relative heights 0, .15, .4, .7, .85, 1
    "bulb": ((0.12, 0.2), (0.25, 0.35), (0.3, 0.45), (0.12, 0.2), (0.07, 0.12), (0.09, 0.16)),
    "cylinder": ((0.12, 0.16), (0.14, 0.18), (0.14, 0.18), (0.14, 0.19), (0.14, 0.2), (0.15, 0.21)),
    "trumpet": ((0.1, 0.14), (0.06, 0.08), (0.07, 0.09), (0.12, 0.16), (0.18, 0.22), (0.24, 0.3)),
    "ovoid": ((0.1, 0.14), (0.2, 0.25), (0.26, 0.32), (0.22, 0.27), (0.14, 0.18), (0.1, 0.13)),
    "amphora": ((0.06, 0.09), (0.15, 0.2), (0.25, 0.3), (0.2, 0.26), (0.08, 0.1), (0.11, 0.14)),
}


@family("vase")
def vase(rng: np.random.Generator) -> Parts:
    """An open turned vessel: bulb, cylinder, trumpet, ovoid or amphora profile; amphoras have two handles."""
    p = Parts()
    kind = rng.choice(sorted(_VASE_RADII))
    h = rng.uniform(0.2, 0.45)
    rel = np.array([0.0, 0.15, 0.4, 0.7, 0.85, 1.0])
    radii = np.array([rng.uniform(lo, hi) for lo, hi in _VASE_RADII[kind]]) * h
    outer = smooth_profile(rel * h, radii, 28)
    color = pick(rng, CERAMIC + ("#3d6e8f", "#a0522d"))
    p.add(revolve(shell(outer, 0.006, 0.015), 32), color)
    if kind == "amphora" or (kind == "bulb" and rng.random() < 0.3):
        za, zb = 0.82 * h, 0.55 * h
        ra, rb = _radius_at(outer, za), _radius_at(outer, zb)
        out = max(ra, rb) + rng.uniform(0.2, 0.35) * h * 0.3
        for s in (-1, 1):
            ctrl = [
                (s * (ra - 0.003), 0, za),
                (s * out, 0, za + 0.08 * h),
                (s * out, 0, zb),
                (s * (rb - 0.003), 0, zb),
            ]
            p.add(tube(bezier(ctrl, 14), 0.006 + 0.01 * h, sections=8), color)
    if rng.random() < 0.4:  # a painted band
        zc = rng.uniform(0.3, 0.6) * h
        band = 0.04 * h
        rr = max(_radius_at(outer, zc - band), _radius_at(outer, zc), _radius_at(outer, zc + band))
        p.add(cylinder_z(rr + 0.001, zc - band, zc + band, sections=32), pick(rng, CERAMIC))
    return p


@family("bowl")
def bowl(rng: np.random.Generator) -> Parts:
    """A wide, low open shell (round or conical wall), with a foot ring and a rolled rim or not."""
    p = Parts()
    color = pick(rng, CERAMIC + WOOD[:3])
    r = rng.uniform(0.08, 0.15)
    h = r * rng.uniform(0.3, 0.6)
    rb = r * rng.uniform(0.3, 0.5)
    power = rng.uniform(0.35, 0.9)
    z = np.linspace(0.0, 1.0, 14) ** 1.5
    outer = np.column_stack([rb + (r - rb) * z**power, z * h])
    foot = rng.uniform(0.006, 0.015) if rng.random() < 0.6 else 0.0
    p.add(revolve(shell(outer, rng.uniform(0.004, 0.007), 0.006), 36), color, T(0, 0, foot))
    if foot > 0:
        ring = trimesh.creation.annulus(r_min=rb * 0.75, r_max=rb * 0.95, height=foot + 0.002, sections=36)
        p.add(ring, color, T(0, 0, (foot + 0.002) / 2))
    if rng.random() < 0.3:
        p.add(trimesh.creation.torus(r - 0.002, 0.004, 36, 8), pick(rng, CERAMIC), T(0, 0, foot + h))
    return p


def _guitar_outline(
    lower: tuple[float, float], upper: tuple[float, float], gap: float, n: int = 72
) -> np.ndarray:
    """The union of two ellipses (a, b semi-axes) centred at x = 0 and x = gap, traced from the waist."""
    centres = [(0.0, *lower), (gap, *upper)]
    o = np.array([gap * lower[0] / (lower[0] + upper[0]), 0.0])  # a point inside both ellipses
    pts = []
    for t in np.linspace(0, 2 * np.pi, n, endpoint=False):
        d = np.array([np.cos(t), np.sin(t)])
        best = 0.0
        for cx, a, b in centres:
            q = o - (cx, 0.0)
            A = (d[0] / a) ** 2 + (d[1] / b) ** 2
            B = 2 * (q[0] * d[0] / a**2 + q[1] * d[1] / b**2)
            C = (q[0] / a) ** 2 + (q[1] / b) ** 2 - 1
            best = max(best, (-B + np.sqrt(B * B - 4 * A * C)) / (2 * A))
        pts.append(o + best * d)
    return np.asarray(pts)


@family("guitar")
def guitar(rng: np.random.Generator) -> Parts:
    """Acoustic (deep body, sound hole) or electric (thin body, pickups, knobs): figure-eight body, neck,
    fretboard, angled or straight headstock with 3+3 or 6-in-line tuners. Lies in the XY plane."""
    p = Parts()
    acoustic = rng.random() < 0.55
    lw = rng.uniform(0.17, 0.21)
    lower = (lw * rng.uniform(1.0, 1.15), lw)
    upper = (lw * rng.uniform(0.7, 0.85), lw * rng.uniform(0.72, 0.85))
    gap = rng.uniform(0.18, 0.24)
    th = rng.uniform(0.08, 0.12) if acoustic else rng.uniform(0.035, 0.05)
    body_c = pick(rng, WOOD[:4] + ("#f2c14e",)) if acoustic else pick(rng, PAINT + ("#e8e0c8",))
    p.add(prism(_guitar_outline(lower, upper, gap), 0.0, th), body_c)
    x_end = gap + upper[0]
    dark = hexrgb(DARK)
    if acoustic:
        p.add(
            cylinder_z(rng.uniform(0.04, 0.05), th, th + 0.002, gap * 0.75, 0, sections=24), jitter(rng, dark)
        )
        p.add(box((0.03, 0.16, 0.01), (-0.06, 0, th + 0.005)), pick(rng, WOOD[3:4] + (DARK,)))
    else:
        for k in range(int(rng.integers(1, 4))):
            p.add(
                box((0.025, 0.08, 0.01), (0.03 + 0.07 * k, 0, th + 0.005)),
                pick(rng, (DARK, "#f0f0f0", "#c0c0c0")),
            )
        p.add(box((0.03, 0.09, 0.012), (-0.07, 0, th + 0.006)), pick(rng, METAL))
        for k in range(int(rng.integers(2, 5))):
            p.add(cylinder_z(0.011, th, th + 0.018, -0.05 + 0.035 * k, -0.12, sections=10), pick(rng, METAL))
    neck_len = rng.uniform(0.42, 0.52)
    nw, nt = rng.uniform(0.045, 0.055), 0.022
    neck_top = th + (0.0 if acoustic else 0.012)
    neck_c = pick(rng, WOOD)
    x0 = x_end - 0.03
    p.add(box_between((x0, -nw / 2, neck_top - nt), (x0 + neck_len, nw / 2, neck_top)), neck_c)
    p.add(
        box_between((x0, -nw / 2, neck_top), (x0 + neck_len, nw / 2, neck_top + 0.006)),
        pick(rng, (DARK, "#5c4033")),
    )
    hl, hw = rng.uniform(0.15, 0.2), rng.uniform(0.07, 0.09)
    head = Parts()
    xh = x0 + neck_len
    if rng.random() < 0.6:  # 3 + 3 tuners
        head.add(box_between((xh, -hw / 2, neck_top - 0.015), (xh + hl, hw / 2, neck_top)), neck_c)
        for k in range(3):
            for s in (-1, 1):
                head.add(
                    rod(
                        (xh + hl * (0.25 + 0.25 * k), s * hw / 2, neck_top - 0.008),
                        (xh + hl * (0.25 + 0.25 * k), s * (hw / 2 + 0.025), neck_top - 0.008),
                        0.006,
                        8,
                    ),
                    pick(rng, METAL),
                )
    else:  # 6 in line
        head.add(box_between((xh, -nw / 2, neck_top - 0.015), (xh + hl, nw / 2 + 0.025, neck_top)), neck_c)
        for k in range(6):
            xk = xh + hl * (0.1 + 0.15 * k)
            head.add(
                cylinder_z(0.006, neck_top, neck_top + 0.02, xk, nw / 2 + 0.012, sections=8), pick(rng, METAL)
            )
    angle = rng.uniform(0.1, 0.25) if acoustic else rng.uniform(0.0, 0.1)
    p.merge(head, R(angle, Y, (xh, 0, neck_top)))
    return p


@family("airplane")
def airplane(rng: np.random.Generator) -> Parts:
    """Airliner, jet or prop plane: fuselage, swept or straight wing (low or high), tailplane (or T-tail),
    fin, and 0, 2 or 4 engines under the wings, 2 at the tail, or 2 propeller nacelles. Nose towards -X."""
    p = Parts()
    L, rf = 1.0, rng.uniform(0.04, 0.07)
    body = pick(rng, ("#f2f2f2", "#d9d9d9", "#b8bcc2", "#f5f0e6"), dv=0.04)
    accent = pick(rng, PAINT)
    ln, lt = rng.uniform(0.08, 0.15), rng.uniform(0.2, 0.3)
    fus = smooth_profile(
        [0.0, 0.25 * ln, ln, L - lt, L - 0.3 * lt, L], [0.005, 0.6 * rf, rf, rf, 0.45 * rf, 0.1 * rf], 20
    )
    fus = np.vstack([[[0.0, 0.0]], fus, [[0.0, L]]])
    p.add(revolve(fus, 20), body, R(np.pi / 2, Y))  # the revolve axis Z becomes +X
    p.add(ellipsoid((0.05 * L, 0.7 * rf, 0.35 * rf), (0.6 * ln, 0, 0.55 * rf), 1), hexrgb("#1b2430"))
    engines = rng.choice(["2under", "4under", "2rear", "prop2", "none"], p=[0.35, 0.2, 0.15, 0.2, 0.1])
    straight = engines == "prop2" or rng.random() < 0.2
    span = rng.uniform(0.8, 1.1) * L
    cr = rng.uniform(0.15, 0.25) * L
    ct = cr * rng.uniform(0.25, 0.5)
    sweep = 0.02 if straight else rng.uniform(0.12, 0.3) * span / 2
    xw = rng.uniform(0.35, 0.45) * L
    zw = -0.6 * rf if rng.random() < 0.7 else 0.7 * rf
    tw = rng.uniform(0.012, 0.02) * L

    def planform(x: float, b: float, c0: float, c1: float, s: float) -> np.ndarray:
        return np.array(
            [(x, 0), (x + s, -b / 2), (x + s + c1, -b / 2), (x + c0, 0), (x + s + c1, b / 2), (x + s, b / 2)]
        )

    p.add(prism(planform(xw, span, cr, ct, sweep), zw - tw / 2, zw + tw / 2), body)
    cf, hf = rng.uniform(0.1, 0.18) * L, rng.uniform(0.12, 0.2) * L
    xf = L - cf - 0.02
    fin_sweep = rng.uniform(0.05, 0.12)
    fin = [
        (xf, 0.5 * rf),
        (xf + cf, 0.5 * rf),
        (xf + cf + fin_sweep * 0.5, 0.5 * rf + hf),
        (xf + fin_sweep, 0.5 * rf + hf),
    ]
    p.add(prism(fin, -tw / 2, tw / 2, "xz"), accent)
    t_tail = rng.random() < 0.2
    hz = 0.5 * rf + hf if t_tail else 0.2 * rf
    hx = xf + (fin_sweep if t_tail else -0.02)
    hs = rng.uniform(0.3, 0.4) * L
    p.add(prism(planform(hx, hs, 0.7 * cf, 0.35 * cf, 0.3 * cf), hz - tw / 3, hz + tw / 3), body)

    def nacelle(x: float, y: float, z: float, r: float, length: float) -> None:
        p.add(rod((x, y, z), (x + length, y, z), r, 14), pick(rng, ("#a0a4aa", "#d0d0d0")))
        p.add(cylinder_z(r * 0.8, 0, 0.003, sections=14), hexrgb(DARK), T(x - 0.002, y, z) @ R(np.pi / 2, Y))

    re, le = rng.uniform(0.022, 0.035) * L, rng.uniform(0.1, 0.15) * L
    if engines in ("2under", "4under"):
        spots = (0.3,) if engines == "2under" else (0.25, 0.55)
        for f in spots:
            for s in (-1, 1):
                y = s * f * span / 2
                x = xw + sweep * f - 0.5 * le
                nacelle(x, y, zw - re - 0.01, re, le)
                p.add(box_between((x + 0.4 * le, y - 0.004, zw - 0.012), (x + 0.8 * le, y + 0.004, zw)), body)
    elif engines == "2rear":
        for s in (-1, 1):
            nacelle(L - lt - 0.05, s * (rf + re + 0.01), 0.3 * rf, re, le)
    elif engines == "prop2":
        for s in (-1, 1):
            y = s * 0.3 * span / 2
            nacelle(xw - 0.4 * le, y, zw, re, le)
            for a in (0, np.pi / 2):
                blade = box((0.004, 0.16 * L, 0.02))
                p.add(blade, hexrgb(DARK), T(xw - 0.4 * le - 0.01, y, zw) @ R(a + 0.3, X))
    return p


@family("car")
def car(rng: np.random.Generator) -> Parts:
    """Sedan, hatchback, SUV, pickup or van: an extruded side profile, a tinted glasshouse with roof and
    pillars, 4 wheels with hubs, head and tail lights, a spoiler sometimes. Front towards +X."""
    p = Parts()
    kind = rng.choice(["sedan", "hatchback", "suv", "pickup", "van"], p=[0.3, 0.2, 0.2, 0.15, 0.15])
    paint = pick(rng, PAINT)
    L = {
        "sedan": (4.3, 5.0),
        "hatchback": (3.6, 4.2),
        "suv": (4.3, 4.9),
        "pickup": (5.0, 5.6),
        "van": (4.5, 5.2),
    }[kind]
    L = rng.uniform(*L)
    W = rng.uniform(1.65, 1.9)
    big = kind in ("suv", "pickup", "van")
    rw = rng.uniform(0.34, 0.4) if big else rng.uniform(0.29, 0.34)
    c = rng.uniform(0.18, 0.28) if big else rng.uniform(0.13, 0.2)
    zb = c + (rng.uniform(0.6, 0.75) if big else rng.uniform(0.45, 0.55))
    zr = zb + (rng.uniform(0.8, 1.0) if kind == "van" else rng.uniform(0.4, 0.55))
    hood = {"van": rng.uniform(0.5, 0.8), "hatchback": rng.uniform(0.75, 1.0)}.get(
        kind, rng.uniform(0.9, 1.3)
    )
    xf0 = L - hood
    wind = rng.uniform(0.5, 0.8) if kind != "van" else rng.uniform(0.2, 0.4)
    rear = {"sedan": rng.uniform(0.4, 0.7), "hatchback": rng.uniform(0.15, 0.4)}.get(
        kind, rng.uniform(0.05, 0.2)
    )
    xr0 = {"sedan": rng.uniform(0.7, 1.0), "pickup": xf0 - wind - rear - rng.uniform(0.6, 1.1)}.get(
        kind, 0.08
    )
    xf1, xr1 = xf0 - wind, xr0 + rear
    lower = [(0.05, c), (L - 0.05, c), (L, c + 0.15), (L, zb - 0.12), (L - 0.1, zb)]
    if kind == "pickup":
        bed = zb - rng.uniform(0.3, 0.45)
        lower += [(xr0 - 0.05, zb), (xr0 - 0.05, bed), (0.0, bed)]
    else:
        lower += [(0.05, zb), (0.0, zb - 0.15)]
    lower += [(0.0, c + 0.1)]
    p.add(prism(lower, -W / 2, W / 2, "xz"), paint)
    if kind == "pickup":
        for s in (-1, 1):
            p.add(box_between((0.0, s * W / 2 - 0.05, bed), (xr0 - 0.05, s * W / 2, zb)), paint)
        p.add(box_between((0.0, -W / 2, bed), (0.05, W / 2, zb)), paint)
    wg = W * rng.uniform(0.82, 0.9)
    p.add(
        prism([(xr0, zb - 0.01), (xf0, zb - 0.01), (xf1, zr), (xr1, zr)], -wg / 2, wg / 2, "xz"),
        jitter(rng, hexrgb("#1d2733")),
    )
    p.add(
        prism(
            [(xr1 - 0.03, zr - 0.02), (xf1 + 0.03, zr - 0.02), (xf1, zr + 0.04), (xr1, zr + 0.04)],
            -wg / 2 - 0.01,
            wg / 2 + 0.01,
            "xz",
        ),
        paint,
    )

    def pillar(f0: float, f1: float) -> None:  # a painted side panel between fractions f0 < f1 of the cabin
        xb0, xb1 = xr0 + f0 * (xf0 - xr0), xr0 + f1 * (xf0 - xr0)
        xt0, xt1 = xr1 + f0 * (xf1 - xr1), xr1 + f1 * (xf1 - xr1)
        p.add(
            prism(
                [(xb0, zb - 0.01), (xb1, zb - 0.01), (xt1, zr), (xt0, zr)],
                -wg / 2 - 0.01,
                wg / 2 + 0.01,
                "xz",
            ),
            paint,
        )

    if kind == "van":
        pillar(0.0, rng.uniform(0.45, 0.6))  # a panel van: no rear side windows
    else:
        pillar(0.48, 0.52)
    ax_r, ax_f = rng.uniform(0.7, 1.0), L - rng.uniform(0.75, 1.05)
    tw = rng.uniform(0.18, 0.26)
    hub = pick(rng, ("#c0c0c0", "#5a5a5a", "#e0e0e0"))
    for x in (ax_r, ax_f):
        for s in (-1, 1):
            y = s * (W / 2 - tw / 2 + 0.03)
            p.add(rod((x, y - tw / 2, rw), (x, y + tw / 2, rw), rw, 20), hexrgb("#151515"))
            p.add(rod((x, y, rw), (x, y + s * (tw / 2 + 0.01), rw), rw * 0.6, 16), hub)
    for s in (-1, 1):
        p.add(
            box_between((L - 0.02, s * W * 0.32 - 0.12, zb - 0.2), (L + 0.01, s * W * 0.32 + 0.12, zb - 0.1)),
            hexrgb("#fff6d0"),
        )
        p.add(
            box_between((-0.01, s * W * 0.38 - 0.1, zb - 0.22), (0.02, s * W * 0.38 + 0.1, zb - 0.1)),
            hexrgb("#c01010"),
        )
    if kind in ("sedan", "hatchback") and rng.random() < 0.2:
        xs = 0.1 if kind == "sedan" else xr1
        zs = zb if kind == "sedan" else zr
        p.add(box_between((xs - 0.1, -W * 0.4, zs + 0.08), (xs + 0.1, W * 0.4, zs + 0.12)), paint)
    return p


@family("rocket")
def rocket(rng: np.random.Generator) -> Parts:
    """A turned body with a conical, ogive or blunt nose, an upper stage or not, 3, 4 or 6 fins, a nozzle,
    painted bands, and 0, 2 or 4 strap-on boosters."""
    p = Parts()
    rb = rng.uniform(0.06, 0.11)
    hb = rng.uniform(0.8, 1.3)
    hn = rb * rng.uniform(2.0, 4.0)
    body_c = pick(rng, ("#f2f2f2", "#dcdcdc", "#b8bcc2", "#e8e0c8"), dv=0.04)
    accent = pick(rng, PAINT)
    nose_kind = rng.choice(["cone", "ogive", "blunt"])
    zn = np.linspace(0.0, 1.0, 12)
    shape = {"cone": 1 - zn, "ogive": np.sqrt(1 - zn**2), "blunt": (1 - zn**2.5) ** 0.6}
    upper = rb * rng.uniform(0.6, 0.85) if rng.random() < 0.4 else rb
    z_step = hb * rng.uniform(0.55, 0.75)
    prof = [[0.0, 0.0], [rb, 0.0], [rb, z_step]]
    if upper < rb:
        prof += [[upper, z_step + (rb - upper)]]
    prof += [[upper, hb], [0.0, hb]]
    p.add(revolve(prof, 28), body_c)
    nose = np.column_stack([upper * shape[nose_kind], hn * zn])
    p.add(revolve(np.vstack([[[0.0, 0.0]], nose])), accent if rng.random() < 0.6 else body_c, T(0, 0, hb))
    for _ in range(int(rng.integers(0, 3))):  # painted bands
        z0 = rng.uniform(0.15, 0.5) * hb
        p.add(cylinder_z(rb + 0.001, z0, z0 + rng.uniform(0.02, 0.06), sections=28), pick(rng, PAINT))
    p.add(
        revolve(
            [
                [rb * 0.45, 0.0],
                [rb * 0.8, -0.25 * rb - 0.05],
                [rb * 0.8 - 0.004, -0.25 * rb - 0.05],
                [rb * 0.45 - 0.004, 0.0],
            ],
            20,
        ),
        hexrgb("#3a3a3a"),
    )
    n_fins = int(rng.choice([3, 4, 6], p=[0.4, 0.45, 0.15]))
    cr, span = rng.uniform(0.12, 0.3) * hb, rb * rng.uniform(1.0, 2.2)
    ct, sw = cr * rng.uniform(0.2, 0.6), rng.uniform(0.0, 0.6) * cr
    fin = [
        (rb * 0.9, cr),
        (rb * 0.9, 0.0 - 0.02),
        (rb + span, -0.02 - sw * 0.3),
        (rb + span, -0.02 - sw * 0.3 + ct),
    ]
    fin_c = accent if rng.random() < 0.7 else body_c
    for k in range(n_fins):
        p.add(prism(fin, -0.004, 0.004, "xz"), fin_c, R(2 * np.pi * k / n_fins + np.pi / 4, Z))
    boosters = int(rng.choice([0, 2, 4], p=[0.6, 0.25, 0.15]))
    if boosters:
        r2, h2 = rb * rng.uniform(0.35, 0.5), hb * rng.uniform(0.35, 0.55)
        for k in range(boosters):
            a = 2 * np.pi * k / boosters
            x, y = (rb + r2) * np.cos(a), (rb + r2) * np.sin(a)
            p.add(cylinder_z(r2, 0.0, h2, x, y, sections=16), body_c)
            p.add(revolve([[0.0, 0.0], [r2, 0.0], [0.0, r2 * 2.5]], 16), accent, T(x, y, h2))
    return p
