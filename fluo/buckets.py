"""Trace buckets: a stable hash of the 64-bit trace key, so all spans of a trace share a bucket.

The hash is the splitmix64 finalizer written in plain integer arithmetic, so its values
are the same in every Polars version, on every machine and in Python (`bucket_of`).
Polars' own `hash()` is not used: its values changed between releases.
"""

from __future__ import annotations

import polars as pl

_U64 = pl.UInt64
_MASK = (1 << 64) - 1
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB


def _shift(expr: pl.Expr, bits: int) -> pl.Expr:
    return expr // pl.lit(1 << bits, dtype=_U64)


def mix_expr(key: pl.Expr) -> pl.Expr:
    """splitmix64's finalizer of a UInt64 expression (wrapping multiplication)."""
    z = key.cast(_U64)
    z = z.xor(_shift(z, 30)) * pl.lit(_MUL1, dtype=_U64)
    z = z.xor(_shift(z, 27)) * pl.lit(_MUL2, dtype=_U64)
    return z.xor(_shift(z, 31))


def bucket_expr(buckets: int, key: str | pl.Expr = "trace_key") -> pl.Expr:
    """The bucket (0 .. buckets-1) of each span's trace, as UInt32."""
    if buckets < 1:
        raise ValueError(f"the number of buckets must be at least 1, not {buckets}")
    column = pl.col(key) if isinstance(key, str) else key
    return (mix_expr(column) % pl.lit(buckets, dtype=_U64)).cast(pl.UInt32)


def mix(key: int) -> int:
    """splitmix64's finalizer in Python: the reference for `mix_expr`."""
    z = key & _MASK
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK
    return z ^ (z >> 31)


def bucket_of(key: int, buckets: int) -> int:
    """The bucket of one trace key (Python; equal to `bucket_expr`)."""
    return mix(key) % buckets
