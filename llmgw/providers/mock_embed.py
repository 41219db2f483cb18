"""The mock provider's embeddings: meaningful enough for the semantic cache's demo
and tests (similar texts give similar vectors), deterministic, and free.

A text is normalised (lower case, contractions spelled out, punctuation dropped),
its request phrasing and function words set aside ("please tell me what is the ..."),
and each remaining word contributes itself and its character trigrams (so "cook" and
"cooking" share most of their weight) as hashed features: each feature lands on one
dimension with a sign taken from its hash (the hashing trick). The vector is then
normalised to unit length, so a dot product is the cosine similarity.

Not a language model: synonyms ("car" and "automobile") share nothing here. What
matches is what shares words and word stems, whatever the case, punctuation,
contractions, word order and polite phrasing.
"""

from __future__ import annotations

import hashlib
import math
import re

_CONTRACTIONS = (
    (re.compile(r"\b(what|who|where|when|how|why|it|that|there|here|she|he)'s\b"), r"\1 is"),
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'m\b"), " am"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'d\b"), " would"),
)
_NOT_WORD = re.compile(r"[^a-z0-9]+")
# Function words and request phrasing: they say how something is asked, not what.
_FUNCTION_WORDS = """a an the is are was were be been am do does did of to in on at for from by with
    about as into and or me my i you your we our us it its this that these those please
    tell what which who whom how can could would will shall should may might must give
    explain describe show let know want like need some any just kindly quick quickly
    briefly hey hi hello there thanks thank so very really"""
_SET_ASIDE = frozenset(_FUNCTION_WORDS.split())
WORD_WEIGHT = 1.0
TRIGRAM_WEIGHT = 0.35


def features(text: str) -> dict[str, float]:
    """The weighted features of ``text``: its content words and their trigrams."""
    lowered = text.lower().replace("\u2019", "'")
    for pattern, spelled in _CONTRACTIONS:
        lowered = pattern.sub(spelled, lowered)
    words = [w for w in _NOT_WORD.split(lowered) if w and w not in _SET_ASIDE]
    if not words:  # nothing but function words: then they are what it says
        words = [w for w in _NOT_WORD.split(lowered) if w]
    weights: dict[str, float] = {}
    for word in words:
        stem = word[:-1] if len(word) > 3 and word.endswith("s") else word
        weights["w:" + stem] = weights.get("w:" + stem, 0.0) + WORD_WEIGHT
        padded = f"<{stem}>"
        for at in range(len(padded) - 2):
            gram = "c:" + padded[at : at + 3]
            weights[gram] = weights.get(gram, 0.0) + TRIGRAM_WEIGHT
    return weights


def embed(text: str, dims: int) -> list[float]:
    """``text`` as a unit vector of ``dims`` dimensions (hashed features)."""
    vector = [0.0] * dims
    for feature, weight in features(text).items():
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:6], "big") % dims
        vector[slot] += weight if digest[7] & 1 else -weight
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:  # an empty text: a fixed unit vector, like any other input
        vector[0], norm = 1.0, 1.0
    return [round(v / norm, 6) for v in vector]
