#!/usr/bin/env python3
"""Fits the per-interval erf polynomials of the CPU backend's vector GELU.

Prints the kErfOffset / kErfPoly tables of engine/backend/cpu/cpu_rows.cpp and the worst
absolute error of their F32 evaluation (Horner with float32 rounding, as the kernel's FMAs
do) against math.erf. [0, 4) is split into eight intervals of width 1/2; on each,
erf(u) = offset + p(u - centre) with p of degree 8, a least-squares fit in double on 400
Chebyshev nodes. The offsets keep p small where erf nears 1, so the final add rounds once.

  python3 tools/kernels/fit_erf_polynomials.py
"""
import math

import numpy as np

OFFSETS = [0.0, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
WIDTH = 0.5
DEGREE = 8
erf = np.vectorize(math.erf)


def fit_interval(i):
    centre = i * WIDTH + WIDTH / 2
    k = np.arange(400)
    u = centre + (WIDTH / 2) * np.cos(np.pi * (k + 0.5) / 400)
    coefficients = np.polynomial.polynomial.polyfit(u - centre, erf(u) - OFFSETS[i], DEGREE)
    return centre, coefficients.astype(np.float32)


def worst_error(i, centre, coefficients):
    u = np.linspace(i * WIDTH, (i + 1) * WIDTH, 20001).astype(np.float32)
    t = (u - np.float32(centre)).astype(np.float32)
    r = np.float32(coefficients[-1])
    for c in coefficients[-2::-1]:
        r = (r.astype(np.float64) * t + c).astype(np.float32)  # one rounding per FMA
    r = (np.float32(OFFSETS[i]) + r).astype(np.float32)
    return float(np.max(np.abs(r.astype(np.float64) - erf(u.astype(np.float64)))))


def main():
    fits = [fit_interval(i) for i in range(len(OFFSETS))]
    print("constexpr float kErfOffset[8] = {" + ", ".join(f"{a}f" for a in OFFSETS) + "};")
    print(f"constexpr float kErfPoly[{DEGREE + 1}][8] = {{")
    for j in range(DEGREE + 1):
        row = ", ".join(f"{np.format_float_scientific(c[j], unique=True)}f" for _, c in fits)
        print("    {" + row + "},")
    print("};")
    worst = max(worst_error(i, centre, c) for i, (centre, c) in enumerate(fits))
    print(f"// worst |F32 evaluation - erf| on [0, 4): {worst:.3g}")


if __name__ == "__main__":
    main()
