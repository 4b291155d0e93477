"""Corpus-level scoring of transcripts: MER (every Chinese character and every other word one unit), Mandarin
CER, English WER, S/D/I counts and repetitive hallucinations, on text normalised as stage 3 normalises it;
per-utterance alignments in sclite's style. `k2d.score` is its command line."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from k2d.kaldi_text import read_text_file
from k2d.metrics.distances import has_ngram_loop, loop_events
from k2d.metrics.edit import ErrorCounts, align, counts_from_alignment, error_counts
from k2d.text.normalize import normalize_text
from k2d.text.units import is_chinese_unit, mer_units
from k2d.utils import atomic_path

log = logging.getLogger("k2d.score")


class ScoringError(ValueError):
    """References and hypotheses that cannot be scored together; the message says why."""


def check_ids(references: dict[str, str], hypotheses: dict[str, str], ref_name: str, hyp_name: str) -> None:
    """An empty reference, or hypotheses for none of its ids, is an error; missing hypotheses are a warning
    (they are scored as empty: all deletions)."""
    if not references:
        raise ScoringError(f"the reference {ref_name} holds no utterance: nothing to score")
    missing = [key for key in references if key not in hypotheses]
    if len(missing) == len(references) and hypotheses:
        raise ScoringError(f"no id of the hypotheses {hyp_name} is in the reference {ref_name} (e.g. hypothesis "
                           f"{next(iter(hypotheses))}, reference {next(iter(references))}): wrong pair of files?")
    if missing:
        log.warning("%d of %d reference id(s) have no hypothesis in %s and are scored as deletions (e.g. %s)",
                    len(missing), len(references), hyp_name, missing[0])


@dataclass
class UtteranceScore:
    key: str
    alignment: list[tuple[str, str, str]]
    counts: ErrorCounts
    hallucination: bool


@dataclass
class CorpusScore:
    mer: ErrorCounts = field(default_factory=ErrorCounts)
    cer: ErrorCounts = field(default_factory=ErrorCounts)
    wer: ErrorCounts = field(default_factory=ErrorCounts)
    utterances: int = 0
    hallucinations: int = 0  # hypotheses with a loop (per-utterance flag)
    hallucination_events: int = 0  # loop events, the paper's Table-4 count
    missing_hypotheses: int = 0

    def as_dict(self) -> dict:
        def rates(c: ErrorCounts) -> dict:
            return {"rate": round(c.rate, 6), **asdict(c)}

        return {
            "mer": rates(self.mer), "cer_mandarin": rates(self.cer), "wer_english": rates(self.wer),
            "utterances": self.utterances, "hallucinations": self.hallucinations,
            "hallucination_events": self.hallucination_events, "missing_hypotheses": self.missing_hypotheses,
        }

    def summary_line(self, name: str = "") -> str:
        m = self.mer
        return (
            f"{name}MER {100 * m.rate:.2f}% [ {m.errors} / {m.reference_length}, {m.substitutions} sub, "
            f"{m.deletions} del, {m.insertions} ins ] CER(zh) {100 * self.cer.rate:.2f}% WER(en) "
            f"{100 * self.wer.rate:.2f}% hallucinations {self.hallucinations}/{self.utterances} "
            f"({self.hallucination_events} loop events)"
        )


def split_by_script(units: list[str]) -> tuple[list[str], list[str]]:
    """(Chinese characters, English words) of a unit sequence, in order: CER and WER are scored on each."""
    return [u for u in units if is_chinese_unit(u)], [u for u in units if not is_chinese_unit(u)]


def score_texts(references: dict[str, str], hypotheses: dict[str, str]) -> tuple[CorpusScore, list[UtteranceScore]]:
    """Score every reference id; a missing hypothesis counts as empty (all deletions)."""
    total = CorpusScore()
    per_utterance = []
    for key, reference in references.items():
        hypothesis = hypotheses.get(key)
        if hypothesis is None:
            total.missing_hypotheses += 1
            hypothesis = ""
        ref_norm, hyp_norm = normalize_text(reference), normalize_text(hypothesis)
        ref_units, hyp_units = mer_units(ref_norm), mer_units(hyp_norm)
        ops = align(ref_units, hyp_units)
        counts = counts_from_alignment(ops)
        total.mer += counts
        (ref_zh, ref_en), (hyp_zh, hyp_en) = split_by_script(ref_units), split_by_script(hyp_units)
        total.cer += error_counts(ref_zh, hyp_zh)
        total.wer += error_counts(ref_en, hyp_en)
        looping = has_ngram_loop(hyp_norm)
        total.hallucinations += looping
        total.hallucination_events += loop_events(hyp_norm)
        total.utterances += 1
        per_utterance.append(UtteranceScore(key, ops, counts, looping))
    extra = set(hypotheses) - set(references)
    if extra:
        log.warning("%d hypothesis id(s) have no reference and are ignored (e.g. %s)", len(extra), sorted(extra)[0])
    return total, per_utterance


def format_errs(per_utterance: list[UtteranceScore]) -> str:
    """Per-utterance alignment in the style of sclite/Kaldi: REF and HYP lines, errors in upper case."""
    blocks = []
    for u in per_utterance:
        ref_line, hyp_line, op_line = [], [], []
        for op, r, h in u.alignment:
            # errors in upper case, the missing side of an insertion or deletion as "*"
            shown_ref, shown_hyp = (r, h) if op == "C" else (r.upper(), h.upper())
            width = max(len(shown_ref), len(shown_hyp))
            ref_line.append(shown_ref.ljust(width))
            hyp_line.append(shown_hyp.ljust(width))
            op_line.append(("" if op == "C" else op).ljust(width))
        c = u.counts
        blocks.append(
            f"id: {u.key}\nScores: (#C #S #D #I) {c.reference_length - c.substitutions - c.deletions} "
            f"{c.substitutions} {c.deletions} {c.insertions}"
            f"{'  [repetitive hallucination]' if u.hallucination else ''}\n"
            f"REF: {' '.join(ref_line)}\nHYP: {' '.join(hyp_line)}\nEval: {' '.join(op_line)}\n"
        )
    return "\n".join(blocks)


def score_files(ref: Path, hyp: Path, out_dir: Path, name: str = "") -> CorpusScore:
    references, hypotheses = read_text_file(ref), read_text_file(hyp)
    check_ids(references, hypotheses, str(ref), str(hyp))
    total, per_utterance = score_texts(references, hypotheses)
    if total.mer.reference_length == 0:
        raise ScoringError(f"every reference in {ref} is empty after normalisation (punctuation or ids only): "
                           "there is nothing to score against")
    with atomic_path(out_dir / "errs.txt") as tmp:
        tmp.write_text(format_errs(per_utterance), encoding="utf-8")
    with atomic_path(out_dir / "scores.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(total.as_dict(), sort_keys=False), encoding="utf-8")
    with atomic_path(out_dir / "summary.txt") as tmp:
        tmp.write_text(total.summary_line(name) + "\n", encoding="utf-8")
    return total
