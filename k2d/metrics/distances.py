"""Distances between the teacher's label Ŷ and the validator's transcript V̂ (K²D step 2).

The validator's transcript is the reference (denominator). An empty validator transcript counts as
MER = PER = 0 (kept), as in the K²D authors' code; the composite still drops a looping teacher label.

    composite(Ŷ, V̂) = max(h(Ŷ), min(1 - h(V̂), PER(Ŷ, V̂)))

h is the n-gram looping detector: 1 when any character n-gram occurs more than `max_count` times.
Teacher loops -> 1 (drop); validator loops -> 0 (keep); otherwise PER decides.

Beyond the paper (stored by stage 3 beside the distances): `confidence` = the composite, or 1 when the
teacher's mean token log-probability on the chunk is below -1.0 or its text's compression ratio above 2.4
(openai's thresholds for a doubtful window); `two_validators` = the larger composite of two validators.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from k2d.metrics.edit import error_rate
from k2d.text.normalize import normalize_text
from k2d.text.phonemes import phonemes_of_units
from k2d.text.units import mer_units

METRICS = ("none", "ngram", "mer", "per", "composite", "confidence", "two_validators")
# openai's own thresholds for a doubtful window (its temperature-fallback triggers), used as gates
LOGPROB_GATE, COMPRESSION_GATE = -1.0, 2.4


def has_ngram_loop(text: str, n: int = 6, max_count: int = 5) -> bool:
    """True when some n-character sequence occurs more than `max_count` times. Spaces are characters, as in
    the K2D authors' detector ("a b a b" is not "abab")."""
    counts = Counter(text[i : i + n] for i in range(len(text) - n + 1))
    return any(count > max_count for count in counts.values())


def loop_events(text: str, n: int = 6, hits: int = 5, reset_every: int = 100) -> int:
    """Repetitive-hallucination events, comparable with the K2D paper's Table 4: scanning the characters
    (spaces count, as in has_ngram_loop), an event is a character n-gram reaching `hits` occurrences; the
    counts start again after each event and every `reset_every` characters."""
    counts: Counter = Counter()
    events, since_reset = 0, 0
    for i in range(len(text) - n + 1):
        if since_reset == reset_every:
            counts.clear()
            since_reset = 0
        gram = text[i : i + n]
        counts[gram] += 1
        since_reset += 1
        if counts[gram] >= hits:
            events += 1
            counts.clear()
            since_reset = 0
    return events


def composite_distance(teacher_loops: bool, validator_loops: bool, per: float) -> float:
    return max(float(teacher_loops), min(1.0 - float(validator_loops), per))


@dataclass
class Distances:
    mer: float
    per: float
    teacher_loops: bool
    validator_loops: bool
    composite: float

    def as_dict(self) -> dict:
        return asdict(self)


def distances(teacher_text: str, validator_text: str, ngram_n: int = 6, ngram_max_count: int = 5,
              mandarin_phonemes: str = "zhuyin") -> Distances:
    teacher_norm, validator_norm = normalize_text(teacher_text), normalize_text(validator_text)
    teacher_loops = has_ngram_loop(teacher_norm, ngram_n, ngram_max_count)
    validator_loops = has_ngram_loop(validator_norm, ngram_n, ngram_max_count)
    teacher_units, validator_units = mer_units(teacher_norm), mer_units(validator_norm)
    if validator_units:
        mer = error_rate(validator_units, teacher_units)
        per = error_rate(phonemes_of_units(validator_units, mandarin_phonemes),
                         phonemes_of_units(teacher_units, mandarin_phonemes))
    else:  # empty validator output: distance 0 (a looping teacher is still dropped by the composite)
        mer = per = 0.0
    return Distances(mer, per, teacher_loops, validator_loops, composite_distance(teacher_loops, validator_loops, per))


def metric_value(stored: dict, metric: str) -> float:
    """δ of a stored distance record for the filter `metric` (none: always 0)."""
    if metric == "none":
        return 0.0
    if metric == "ngram":
        return float(stored["teacher_loops"])
    if metric in ("mer", "per", "composite"):
        return float(stored[metric])
    if metric == "confidence":  # the composite, and drop what the teacher itself was unsure of or looped on
        unsure = stored.get("teacher_logprob") is not None and stored["teacher_logprob"] < LOGPROB_GATE
        return max(float(stored["composite"]), float(unsure),
                   float(stored.get("compression_ratio", 0.0) > COMPRESSION_GATE))
    if metric == "two_validators":  # both validators must agree with the label
        return max(float(stored["composite"]), float(stored.get("composite_second", stored["composite"])))
    raise ValueError(f"unknown filter metric {metric!r}; choose from {', '.join(METRICS)}")


def keep(stored: dict, metric: str, alpha: float) -> bool:
    """The filter predicate: keep a chunk when δ <= α."""
    return metric_value(stored, metric) <= alpha
