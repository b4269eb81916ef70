"""Character error rate, for OCR assertions and benchmarks."""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein


def normalize(text: str) -> str:
    return " ".join(text.split())


def cer(hypothesis: str, reference: str) -> float:
    ref = normalize(reference)
    if not ref:
        return 0.0 if not normalize(hypothesis) else 1.0
    return Levenshtein.distance(normalize(hypothesis), ref) / len(ref)
