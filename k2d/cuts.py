"""What a chunk cut carries: the one definition of the `custom` fields stages 2-5 read and write.

Stage 2 writes a lhotse MonoCut per chunk whose supervisions are the teacher's complete segments (times
relative to the cut) and whose `custom` holds `ChunkFields`; stage 3 adds the validator's transcript and
the distances; stages 4, 5 and the Kaldi export read them.

    fields = ChunkFields.from_cut(cut)          # None for a cut that is not a chunk (a labelled utterance)
    cut.custom = fields.with_validation(text, distances.as_dict()).to_custom()
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkFields:
    text: str  # the teacher's text of the chunk's complete segments (the pseudo-label without timestamps)
    continued: bool  # a segment crossed the chunk's end: the audio runs on past the label
    complete_end: float  # end of the last complete segment, seconds from the cut's start
    prev_text: str | None = None  # the previous chunk's text (the <|startofprev|> prompt)
    teacher_logprob: float | None = None  # stage 1: the teacher's mean token log-probability on the chunk
    teacher_no_speech: float | None = None  # stage 1: its largest no-speech probability there
    validator_text: str | None = None  # stage 3: the validator's transcript (None: not validated)
    validator_error: str | None = None  # stage 3: why the chunk could not be validated
    distances: dict | None = None  # stage 3: k2d.metrics.distances.Distances.as_dict() and the signals
    second_validator_text: str | None = None  # stage 3 with a second validator
    window_end: float | None = None  # end of the chunk's window (its start + max_chunk, within the recording)
    next_start: float | None = None  # start of the teacher's next segment when it begins inside the window
    pause_before: float | None = None  # seconds without a teacher segment before the chunk's start

    @classmethod
    def from_cut(cls, cut) -> ChunkFields | None:
        custom = cut.custom or {}
        if "complete_end" not in custom:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in custom.items() if k in names})

    def to_custom(self) -> dict:
        return dataclasses.asdict(self)

    def with_validation(self, validator_text: str | None, distances: dict | None, error: str | None = None):
        return dataclasses.replace(self, validator_text=validator_text, distances=distances, validator_error=error)

    def labelled_duration(self, cut_duration: float) -> float:
        """Seconds of the cut that the label covers (what training uses)."""
        return self.complete_end if self.continued else cut_duration


def chunk_key(cut) -> str:
    """A chunk's progress key in stages 3 and 5: its id and the span its label covers, so a chunk that
    stage 2 made again differently under the same id is processed again."""
    fields = ChunkFields.from_cut(cut)
    span = fields.labelled_duration(cut.duration) if fields is not None else cut.duration
    return f"{cut.id}@{cut.start:.3f}+{span:.3f}"


def teacher_text(cut) -> str:
    """The pseudo-label text of a chunk cut, or the joined supervision texts of any other cut."""
    from k2d.text.script import join_texts

    fields = ChunkFields.from_cut(cut)
    if fields is not None:
        return fields.text
    return join_texts([s.text or "" for s in sorted(cut.supervisions, key=lambda s: s.start)])


# ---- the teacher cache's fields ----
TEACHER_ENCODER_FIELD, TEACHER_CACHE_FIELD = "teacher_encoder", "teacher_cache"


def teacher_topk_field(variant: str) -> str:
    return f"teacher_topk_{variant}"


def cached_encoder_states(cut):
    """The teacher's stored encoder states of the cut, (frames, d_model) float16, or None."""
    array = (cut.custom or {}).get(TEACHER_ENCODER_FIELD)
    return None if array is None else array.load()


def cached_teacher_topk(cut, variant: str, targets: int):
    """(targets, 2k) cached teacher log-probabilities and ids for the label form drawn, or None."""
    array = (cut.custom or {}).get(teacher_topk_field(variant))
    if array is None:
        return None
    stored = array.load()
    if stored.shape[0] != targets:
        raise RuntimeError(f"cut {cut.id}: the cached teacher outputs were made for other labels ({variant}: "
                           f"{stored.shape[0]} vs {targets} tokens); cache the teacher again")
    return stored
