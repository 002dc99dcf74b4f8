"""The ``--test`` spec that names a held-out set: ``probe``, ``random:F``, ``temporal:F``, ``cutoff:F`` or
a directory.

Spark-free, so the config can check a spec when it is set (:mod:`batchml.ratings` makes the split).
"""
from __future__ import annotations

from dataclasses import dataclass

from batchml.errors import ConfigError


@dataclass(frozen=True)
class TestSpec:
    """A parsed ``--test`` value: ``kind`` is one of probe, dir, random, temporal, cutoff."""

    kind: str
    fraction: float | None = None
    path: str | None = None


def parse_test_spec(spec: str) -> TestSpec:
    """Parse ``probe``, ``random:0.1``, ``temporal:0.1``, ``cutoff:0.1`` or a directory path.

    Raises
    ------
    ConfigError when the spec is empty or a fraction is not a number in (0, 1).
    """
    spec = spec.strip()
    if spec == "probe":
        return TestSpec("probe")
    for kind in ("random", "temporal", "cutoff"):
        if spec.startswith(kind + ":"):
            raw = spec[len(kind) + 1:]
            try:
                frac = float(raw)
            except ValueError:
                raise ConfigError(f"test spec {spec!r}: {raw!r} is not a number") from None
            if not 0.0 < frac < 1.0:
                raise ConfigError(f"test spec {spec!r}: the fraction must be in (0, 1)")
            return TestSpec(kind, fraction=frac)
    if not spec:
        raise ConfigError("empty test spec (expected probe, random:F, temporal:F, cutoff:F or a directory)")
    return TestSpec("dir", path=spec)
