"""Seeds from text: the same in every process and on every machine (unlike ``hash()``).

Every seeded choice in negforge (which attributes a draft gets, which shard a record is in, which
mined negatives are sampled, what the mixer draws per epoch) is a function of its parts (seed,
record id, epoch, source, ...) through one of these, so a rerun, a resumed job or another
shard makes the same choice.

The three join their parts differently (``\\x1f``, ``\\x00``, ``:``) because each kept the scheme its
first users had: changing one changes every draw made with it, and so every output written so far.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any


def _digest64(parts: tuple[Any, ...], sep: str) -> int:
    return int.from_bytes(hashlib.sha256(sep.join(map(str, parts)).encode("utf-8")).digest()[:8], "big")


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts' text (attribute sampling, sharding)."""
    return _digest64(parts, "\x1f") >> 1


def seeded_rng(*parts: Any) -> random.Random:
    """A local ``random.Random`` seeded by sha256 of the parts (mining samples, mixer draws)."""
    return random.Random(_digest64(parts, "\x00"))


def text_rng(*parts: Any) -> random.Random:
    """A local ``random.Random`` seeded by the text ``"a:b:c"`` of the parts (Python hashes a str seed with
    sha512: stable across processes). Training-side draws: positives, batch order, held-out samples."""
    return random.Random(":".join(map(str, parts)))
