"""Near-duplicate scans: a 64-bit perceptual hash of the prepared (cropped, normalized) scan and the
grouping of hashes within a Hamming distance, so re-encoded, resized or slightly cropped copies of a
scan share a group and never sit on both sides of a split.

The hash is the classic DCT pHash: the scan resized to 32 x 32, its 2-D DCT, the 8 x 8 lowest
frequencies compared with their median (the DC term left out of the median) -> 64 bits.  Two scans
are near-duplicates when their hashes differ in at most ``tumor.near_duplicate_bits`` bits (default
6 of 64; see the README of the tumor jobs for how that was chosen on the real set); groups are the
connected components of that relation (single linkage).  Candidate pairs come from bands: with a
distance of at most ``t`` bits, two hashes agree exactly on at least one of ``t + 1`` disjoint bands
(pigeonhole), so only hashes sharing a band value are compared.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn

HASH_SIDE = 32
LOW = 8


def phash(pixels: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash of a 2-D float image, as a signed int64 (Spark's LongType)."""
    small = np.asarray(Image.fromarray(np.asarray(pixels, np.float32), mode="F")
                       .resize((HASH_SIDE, HASH_SIDE), Image.BILINEAR), np.float64)
    low = dctn(small, norm="ortho")[:LOW, :LOW].ravel()
    bits = low > np.median(low[1:])
    value = int(np.packbits(bits).view(">u8")[0])
    return value - (1 << 64) if value >= (1 << 63) else value


def hamming(a: int, b: int) -> int:
    return bin((a ^ b) & ((1 << 64) - 1)).count("1")


def _bands(bits: int) -> list[tuple[int, int]]:
    """``bits + 1`` disjoint (shift, width) bands covering 64 bits."""
    n = bits + 1
    edges = [round(i * 64 / n) for i in range(n + 1)]
    return [(lo, hi - lo) for lo, hi in zip(edges, edges[1:])]


def near_duplicate_groups(keys: list[str], hashes: list[int], bits: int) -> dict[str, str]:
    """Key -> group (the smallest key of its group): keys whose hashes are within ``bits`` of each
    other, transitively, share a group (``bits = 0``: equal hashes only)."""
    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    unsigned = [h & ((1 << 64) - 1) for h in hashes]
    for shift, width in _bands(bits):
        buckets: dict[int, list[int]] = {}
        for i, h in enumerate(unsigned):
            buckets.setdefault((h >> shift) & ((1 << width) - 1), []).append(i)
        for members in buckets.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    i, j = members[x], members[y]
                    if find(i) != find(j) and hamming(unsigned[i], unsigned[j]) <= bits:
                        parent[find(i)] = find(j)
    smallest: dict[int, str] = {}
    for i, k in enumerate(keys):
        r = find(i)
        smallest[r] = min(smallest.get(r, k), k)
    return {k: smallest[find(i)] for i, k in enumerate(keys)}
