"""How each kind of random specimen is built: one builder per kind of
:data:`~napari_pinned.physics.ranges.KINDS`, and the modifiers they share (vacancies,
dopants, thickness ramps)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import gemmi
import numpy as np
from scipy.spatial import cKDTree

from napari_pinned.physics.lattices import (
    Lattice,
    any_lattice,
    describe,
    draw_thickness,
    random_lattice,
    weak_strong_lattice,
)
from napari_pinned.physics.projection import Z_EXPONENT_HAADF
from napari_pinned.physics.ranges import StructureRanges, loguniform, pick, uniform
from napari_pinned.physics.scene import Region, Scene, film, maybe_support

__all__ = ["BUILDERS", "Draw"]

# Heavy single atoms seen on supports and as dopants (Pt, Au, W, Hf, Ir, Ce, ...).
_ADATOM_Z = (58, 72, 74, 77, 78, 79)


class Draw(NamedTuple):
    """What every specimen builder draws from and into (one builder per kind)."""

    rng: np.random.Generator
    scene: Scene
    ranges: StructureRanges
    names: Sequence[str]


# --------------------------------------------------------------------------- modifiers


def _atom_vacancies(rng: np.random.Generator, cols: Region, fraction: float) -> Region:
    """Remove single atoms (monolayers): S₂ becomes S, a one-atom column disappears."""
    hit = rng.random(len(cols.weights)) < fraction
    weights = cols.weights.copy()
    weights[hit] -= cols.host[hit]
    atoms = cols.atoms - hit
    keep = atoms > 0.5
    out = Region(cols.positions, np.maximum(weights, 0.0), cols.host, atoms, cols.ctype)
    return out.take(keep)


def _dopants(
    rng: np.random.Generator,
    cols: Region,
    fraction: float,
    ranges: StructureRanges,
    monolayer: bool,
) -> np.ndarray:
    """Replace one atom in a share of the columns by a heavy dopant; returns their indices.

    Incoherent imaging adds the dopant's Z^1.7 less the host atom's to the column (as
    for single Sb atoms in Si columns, Voyles et al., Nature 416, 826 (2002)); the
    depth dependence of channelling is ignored.  In a monolayer any atom 8 or more
    above the host shows (Se in the S₂ columns of MoS2), so only the upper end of
    ``dopant_z`` applies there.
    """
    hit = np.flatnonzero(rng.random(len(cols.weights)) < fraction)
    if hit.size == 0:
        return hit
    host_z = cols.host[hit] ** (1.0 / Z_EXPONENT_HAADF)
    low = np.maximum(0 if monolayer else ranges.dopant_z[0], np.ceil(host_z) + 8)
    high = np.maximum(low, ranges.dopant_z[1])
    z = np.floor(rng.uniform(low, high + 1)).clip(max=high)
    cols.weights[hit] += z**Z_EXPONENT_HAADF - cols.host[hit]
    return hit


def _gradient(rng: np.random.Generator, scene: Scene, cols: Region) -> float:
    """Scale the weights by a linear thickness ramp across the field; returns its low end."""
    low = float(rng.uniform(0.05, 0.5))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    direction = np.array([math.sin(angle), math.cos(angle)])
    along = (cols.positions - scene.centre) @ direction
    half = 0.5 * float(np.abs(np.asarray(scene.shape) * direction).sum())
    ramp = low + (1.0 - low) * np.clip((along + half) / (2.0 * half), 0.0, 1.0)
    cols.weights *= ramp
    return low


def _maybe_modify(
    rng: np.random.Generator,
    scene: Scene,
    cols: Region,
    lattice: Lattice,
    ranges: StructureRanges,
) -> Region:
    p = ranges.modifier_probability
    if rng.random() < p:
        fraction = float(rng.uniform(0.0, 0.03))
        if lattice.two_dimensional:
            cols = _atom_vacancies(rng, cols, fraction)
        else:
            cols = cols.take(rng.random(len(cols.weights)) >= fraction)
        scene.parts.append(f"{100 * fraction:.1f} % vacancies")
    if rng.random() < p:
        fraction = uniform(rng, ranges.dopant_fraction)
        hit = _dopants(rng, cols, fraction, ranges, lattice.two_dimensional)
        scene.parts.append(_count(scene.inside(cols.positions[hit]).sum(), "dopant"))
    if rng.random() < p and not lattice.two_dimensional:
        low = _gradient(rng, scene, cols)
        scene.parts.append(f"thickness ramp {low:.2f}-1")
    return cols


# --------------------------------------------------------------------------- geometry


def _half_plane(
    rng: np.random.Generator, scene: Scene, share: tuple[float, float]
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """Signed distance (Å) to a random straight line, and the line's direction.

    The distance is negative on the side that covers about a share of the field drawn
    from ``share``.
    """
    angle = rng.uniform(0.0, 2.0 * math.pi)
    normal = np.array([math.sin(angle), math.cos(angle)])
    half = 0.5 * float(np.abs(np.asarray(scene.shape) * normal).sum())
    # A line at offset c from the centre leaves about (c + half) / (2 half) on its
    # negative side for a square field.
    offset = (2.0 * rng.uniform(*share) - 1.0) * half
    centre, px = scene.centre, scene.pixel_size

    def distance(points: np.ndarray) -> np.ndarray:
        return ((points - centre) @ normal - offset) * px

    return distance, np.array([-normal[1], normal[0]])


def _particle(
    rng: np.random.Generator, centre: np.ndarray, radius: float
) -> Callable[[np.ndarray], np.ndarray]:
    """Relative radius ρ (0 at the centre, 1 on the outline) of a disc or faceted particle.

    The outline is a disc or a star-shaped polygon of 5–9 facets; ρ = |p| / s, where s
    is where the ray from the centre through p crosses the outline.
    """
    if rng.random() < 0.4:
        return lambda points: np.linalg.norm(points - centre, axis=1) / radius
    n = int(rng.integers(5, 10))
    # Evenly spread, jittered vertex angles: no facet degenerates to a sliver.
    angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n) + rng.random()) * (2.0 * math.pi / n)
    angles = np.sort(angles % (2.0 * math.pi))
    r = radius * rng.uniform(0.85, 1.1, n)
    vertices = np.column_stack([r * np.sin(angles), r * np.cos(angles)])

    def rho(points: np.ndarray) -> np.ndarray:
        p = points - centre
        phi = np.arctan2(p[:, 0], p[:, 1]) % (2.0 * math.pi)
        i = np.searchsorted(angles, phi) - 1  # -1 wraps to the last vertex
        a, edge = vertices[i % n], vertices[(i + 1) % n] - vertices[i % n]
        # The ray s·u (u = p / |p|) meets the facet a + t·edge at s = (a × e) / (u × e).
        norm = np.linalg.norm(p, axis=1)
        u = p / np.maximum(norm, 1e-12)[:, None]
        u_cross_e = u[:, 0] * edge[:, 1] - u[:, 1] * edge[:, 0]
        a_cross_e = a[:, 0] * edge[:, 1] - a[:, 1] * edge[:, 0]
        s = np.abs(a_cross_e) / np.maximum(np.abs(u_cross_e), 1e-12)
        return norm / np.maximum(s, 1e-12)

    return rho


# --------------------------------------------------------------------------- builders


def _build_crystal(draw: Draw, *, random_only: bool = False) -> None:
    rng, scene, ranges, names = draw
    lattice = (
        random_lattice(rng, ranges)
        if random_only
        else any_lattice(rng, ranges, names, random_fraction=0.0)
    )
    thickness = draw_thickness(rng, lattice, ranges)
    cols = scene.tile(rng, lattice, thickness)
    scene.parts.append(describe(lattice, thickness))
    cols = _maybe_modify(rng, scene, cols, lattice, ranges)
    scene.add_lattice(cols, lattice, None)
    scene.params["thickness"] = thickness
    maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_random_lattice(draw: Draw) -> None:
    _build_crystal(draw, random_only=True)


def _build_weak_strong(draw: Draw) -> None:
    rng, scene, ranges, _ = draw
    ratio = loguniform(rng, ranges.weak_ratio)
    lattice = weak_strong_lattice(rng, ranges, ratio)
    thickness = draw_thickness(rng, lattice, ranges)
    scene.add(scene.tile(rng, lattice, thickness))
    scene.parts.append(describe(lattice, thickness))
    scene.params.update(weight_ratio=ratio, thickness=thickness)
    maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_amorphous(draw: Draw) -> None:
    rng, scene, ranges, _ = draw
    scene.parts.append(film(rng, scene, loguniform(rng, ranges.amorphous_thickness)))


def _build_vacuum(draw: Draw) -> None:
    draw.scene.parts.append("vacuum")


def _build_adatoms(draw: Draw) -> None:
    rng, scene, ranges, _ = draw
    scene.parts.append(film(rng, scene, loguniform(rng, ranges.amorphous_thickness), name="a-C"))
    density = loguniform(rng, ranges.adatom_density)
    low, high = scene.bounds
    area = float(np.prod(high - low)) * scene.pixel_size**2
    count = int(rng.poisson(density * area))
    z = float(pick(rng, _ADATOM_Z))
    positions = low + rng.random((count, 2)) * (high - low)
    weight = np.full(count, z**Z_EXPONENT_HAADF)
    scene.add(Region(positions, weight, weight.copy(), np.ones(count), np.zeros(count, int)))
    scene.parts.append(f"single {gemmi.Element(int(z)).name} atoms, {density:.3f}/Å²")


def _build_nanoparticle(draw: Draw) -> None:
    rng, scene, ranges, names = draw
    support = None
    if rng.random() < 0.85:
        support = "on " + film(rng, scene, loguniform(rng, ranges.support_thickness))
    field_size = min(scene.shape) * scene.pixel_size  # Å
    earlier: list[Callable[[np.ndarray], np.ndarray]] = []
    for index in range(int(rng.integers(1, 4))):
        # Particles of 1.5-12 nm diameter (later ones smaller); the outline must cross
        # the field, so a small particle lies inside it and a large one shows an edge.
        radius = loguniform(rng, (8.0, 60.0)) / (1.0 + 0.4 * index)
        if radius < 0.4 * field_size:
            offset = rng.uniform(0.0, 0.4 * field_size - 0.5 * radius)
        else:
            offset = rng.uniform(radius - 0.4 * field_size, radius + 0.3 * field_size)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        centre = scene.centre + offset / scene.pixel_size * np.array(
            [math.sin(angle), math.cos(angle)]
        )
        rho_of = _particle(rng, centre, radius / scene.pixel_size)
        lattice = any_lattice(rng, ranges, names, allow_2d=False)
        # Roughly spherical, somewhat flattened on its support: the central column is
        # 0.6-1 diameters long and the others follow the chord, sqrt(1 - ρ²).
        thickness = 2.0 * radius * rng.uniform(0.6, 1.0)
        cols = scene.tile(rng, lattice, thickness)
        rho = rho_of(cols.positions)
        inside = rho < 1.0
        for other in earlier:
            inside &= other(cols.positions) >= 1.0  # an earlier particle lies on top
        cols = cols.take(inside)
        cols.weights *= np.sqrt(np.clip(1.0 - rho[inside] ** 2, 0.02, 1.0))
        earlier.append(rho_of)
        scene.add_lattice(cols, lattice, f"{lattice.name} particle {2 * radius / 10:.1f} nm")
    scene.parts.append(support or "in vacuum")


def _build_grain_boundary(draw: Draw) -> None:
    rng, scene, ranges, names = draw
    first = any_lattice(rng, ranges, names, allow_2d=False)
    # Mostly one material on both sides (a tilt or twist boundary), else an interface.
    second = first if rng.random() < 0.6 else any_lattice(rng, ranges, names, allow_2d=False)
    thickness = draw_thickness(rng, first, ranges)
    side, tangent = _half_plane(rng, scene, (0.3, 0.7))
    amplitude = rng.uniform(0.0, 3.0)
    wavelength = rng.uniform(10.0, 60.0)
    phase = rng.uniform(0.0, 2.0 * math.pi)

    def distance(points: np.ndarray) -> np.ndarray:
        # A wavy boundary: facets and steps are the rule, not a ruler-straight line.
        along = (points @ tangent) * scene.pixel_size
        return side(points) + amplitude * np.sin(2.0 * math.pi * along / wavelength + phase)

    a = scene.tile(rng, first, thickness)
    a = a.take(distance(a.positions) < 0)
    b = scene.tile(rng, second, thickness * rng.uniform(0.8, 1.25))
    b = b.take(distance(b.positions) >= 0)
    if len(a.weights) and len(b.weights):
        # Two columns closer than a bond would be one atom on top of another.
        near, _ = cKDTree(a.positions).query(b.positions, distance_upper_bound=10.0)
        b = b.take(near * scene.pixel_size >= ranges.min_column_distance)
    scene.add(a)
    scene.add(b)
    scene.parts.append(f"grain boundary {describe(first, thickness)} | {second.name}")
    scene.materials.extend(m for m in (first.material, second.material) if m)
    scene.params["thickness"] = thickness
    maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_surface(draw: Draw) -> None:
    rng, scene, ranges, names = draw
    lattice = any_lattice(rng, ranges, names)
    thickness = draw_thickness(rng, lattice, ranges)
    distance, _ = _half_plane(rng, scene, (0.3, 0.8))
    cols = scene.tile(rng, lattice, thickness)
    d = distance(cols.positions)
    roughness = rng.uniform(0.0, 4.0)
    # A rough edge: columns within `roughness` Å of the line survive at random.
    keep = (d < -roughness) | ((d < 0) & (rng.random(len(d)) < 0.5))
    cols = cols.take(keep)
    d = d[keep]
    description = f"edge of {describe(lattice, thickness)}"
    if not lattice.two_dimensional and rng.random() < 0.5:
        wedge = rng.uniform(10.0, 80.0)  # Å over which a wedge thins to its edge
        cols.weights *= np.clip(-d / wedge, 0.1, 1.0)
        description += f", {wedge:.0f} Å wedge"
    scene.add_lattice(cols, lattice, description)
    scene.params["thickness"] = thickness
    if rng.random() < 0.5:
        scene.parts.append("on " + film(rng, scene, loguniform(rng, ranges.support_thickness)))
    else:
        scene.parts.append("vacuum beyond")


def _build_thickness_gradient(draw: Draw) -> None:
    rng, scene, ranges, names = draw
    lattice = any_lattice(rng, ranges, names, allow_2d=False)
    thickness = draw_thickness(rng, lattice, ranges)
    cols = scene.tile(rng, lattice, thickness)
    low = _gradient(rng, scene, cols)
    scene.add_lattice(cols, lattice, f"{describe(lattice, thickness)}, thickness ramp {low:.2f}-1")
    scene.params.update(thickness=thickness, ramp_low=low)
    maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_vacancies(draw: Draw) -> None:
    rng, scene, ranges, names = draw
    lattice = any_lattice(rng, ranges, names)
    thickness = draw_thickness(rng, lattice, ranges)
    fraction = uniform(rng, ranges.vacancy_fraction)
    if lattice.two_dimensional:
        cols = _atom_vacancies(rng, scene.tile(rng, lattice, thickness), fraction)
    else:
        cols = scene.tile(rng, lattice, thickness, vacancy_fraction=fraction)
    scene.add_lattice(
        cols, lattice, f"{describe(lattice, thickness)}, {100 * fraction:.0f} % vacancies"
    )
    scene.params.update(thickness=thickness, vacancy_fraction=fraction)
    maybe_support(rng, scene, ranges, ranges.support_fraction)


def _build_dopants(draw: Draw) -> None:
    rng, scene, ranges, names = draw
    lattice = any_lattice(rng, ranges, names)
    # Single dopants show in thin specimens: a heavy atom in a 50-atom column adds little.
    if lattice.two_dimensional:
        thickness = lattice.cell.repeat
    else:
        thickness = loguniform(rng, (ranges.thickness[0], max(ranges.thickness[0], 150.0)))
    cols = scene.tile(rng, lattice, thickness)
    fraction = uniform(rng, ranges.dopant_fraction)
    hit = _dopants(rng, cols, fraction, ranges, lattice.two_dimensional)
    n = int(scene.inside(cols.positions[hit]).sum())
    scene.add_lattice(cols, lattice, f"{describe(lattice, thickness)}, {_count(n, 'dopant')}")
    scene.params.update(thickness=thickness, dopants=n)
    maybe_support(rng, scene, ranges, ranges.support_fraction)


BUILDERS: dict[str, Callable[[Draw], None]] = {
    "crystal": _build_crystal,
    "random_lattice": _build_random_lattice,
    "weak_strong": _build_weak_strong,
    "amorphous": _build_amorphous,
    "vacuum": _build_vacuum,
    "nanoparticle": _build_nanoparticle,
    "grain_boundary": _build_grain_boundary,
    "surface": _build_surface,
    "thickness_gradient": _build_thickness_gradient,
    "vacancies": _build_vacancies,
    "dopants": _build_dopants,
    "adatoms": _build_adatoms,
}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
