"""prepare_mini_cs(): synthesize the built-in corpus and write its lhotse manifests.

Layout under DATA_DIR (data/mini_cs by default):
  audio/SPLIT/ITEM.flac        16 kHz mono audio, with ITEM.json beside it (what was rendered)
  manifests/mini_cs_{recordings,supervisions}_SPLIT.jsonl.gz
  truth/mini_cs_supervisions_SPLIT.jsonl.gz   true text of the unlabelled splits, analysis only
  corpus_stats.yaml            hours, utterances, speakers, code-switched and non-speech shares

An item whose .json exists is complete (audio and .json are renamed into place in that order), so a killed
run resumes with the items it had not finished.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import soundfile as sf
import yaml
from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.qa import validate_recordings_and_supervisions
from tqdm import tqdm

from k2d.audio import SAMPLE_RATE
from k2d.config import option
from k2d.layout import manifest_path
from k2d.recipes import Preparer
from k2d.recipes.mini_cs.corpus import (
    OOD_SPEAKERS,
    TRAIN_SPEAKERS,
    LongFormStyle,
    RenderedItem,
    render_longform,
    render_utterance,
)
from k2d.utils import atomic_path

CORPUS = "mini_cs"
LANGUAGE_OF_KIND = {"cs": "zh-en", "zh": "zh", "en": "en"}
log = logging.getLogger(__name__)


@dataclass
class MiniCsConfig:
    seed: int = option(
        20241122, "random seed; the shipped demo models were trained on the corpus of this seed", unbounded=True)
    train_labelled_utterances: int = option(5000, "short labelled utterances for the demo teacher/validator", minimum=0)
    dev_utterances: int = option(120, "short labelled utterances for model selection", minimum=0)
    train_unlabelled_recordings: int = option(16, "long-form recordings with no transcript used downstream", minimum=0)
    train_unlabelled_minutes: float = option(3.0, "length of each unlabelled recording in minutes", positive=True)
    test_recordings: int = option(4, "long-form recordings in each of test_in and test_ood", minimum=0)
    test_minutes: float = option(2.0, "length of each test recording in minutes", positive=True)
    ood_snr_db: list[float] = option([8.0, 18.0], "range of the background-noise SNR added to test_ood")
    train_unlabelled_ood_recordings: int = option(
        0, "long-form unlabelled recordings in test_ood's conditions (held-out voices, speeds, noise): the target "
        "domain of a teacher adapted on train_labelled (0: no such split)", minimum=0)
    train_unlabelled_ood_minutes: float = option(3.0, "length of each of those recordings in minutes", positive=True)
    dev_ood_recordings: int = option(
        0, "labelled long-form recordings in test_ood's conditions, for choosing settings", minimum=0)


@dataclass(frozen=True)
class SplitPlan:
    name: str
    count: int
    longform: bool
    ood: bool = False
    minutes: float = 0.0
    labelled: bool = True


def split_plans(config: MiniCsConfig) -> list[SplitPlan]:
    plans = [
        SplitPlan("train_labelled", config.train_labelled_utterances, longform=False),
        SplitPlan("dev", config.dev_utterances, longform=False),
        SplitPlan(
            "train_unlabelled", config.train_unlabelled_recordings, True, minutes=config.train_unlabelled_minutes,
            labelled=False,
        ),
        SplitPlan("test_in", config.test_recordings, True, minutes=config.test_minutes),
        SplitPlan("test_ood", config.test_recordings, True, ood=True, minutes=config.test_minutes),
        SplitPlan("train_unlabelled_ood", config.train_unlabelled_ood_recordings, True, ood=True,
                  minutes=config.train_unlabelled_ood_minutes, labelled=False),
        SplitPlan("dev_ood", config.dev_ood_recordings, True, ood=True, minutes=config.test_minutes),
    ]
    return [plan for plan in plans if plan.count > 0]


def render_item(plan: SplitPlan, config: MiniCsConfig, index: int) -> RenderedItem:
    speakers = OOD_SPEAKERS if plan.ood else TRAIN_SPEAKERS
    if not plan.longform:
        return render_utterance(config.seed, plan.name, index, speakers)
    style = LongFormStyle(background_snr_range=tuple(config.ood_snr_db) if plan.ood else None)
    return render_longform(config.seed, plan.name, index, speakers, plan.minutes, style)


def item_id(plan: SplitPlan, index: int, speaker_id: str) -> str:
    kind = "rec" if plan.longform else "utt"
    return f"{plan.name}-{speaker_id}-{kind}{index:05d}"


def speaker_of(plan: SplitPlan, index: int) -> str:
    speakers = OOD_SPEAKERS if plan.ood else TRAIN_SPEAKERS
    return speakers[index % len(speakers)].speaker_id


def build_item(audio_dir: Path, plan: SplitPlan, config: MiniCsConfig, index: int) -> dict:
    """Render one item unless its .json exists; return its metadata."""
    name = item_id(plan, index, speaker_of(plan, index))
    meta_path = audio_dir / plan.name / f"{name}.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text(encoding="utf-8"))
    item = render_item(plan, config, index)
    audio_path = audio_dir / plan.name / f"{name}.flac"
    with atomic_path(audio_path) as tmp:
        sf.write(tmp, item.audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    meta = {
        "id": name,
        "audio": str(audio_path),
        "num_samples": int(item.audio.size),
        "speaker": item.speaker_id,
        "segments": [asdict(s) for s in item.segments],
        "nonspeech_seconds": item.nonspeech_seconds,
        "hard_stretches": item.hard_stretches,
    }
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return meta


def manifests_from_items(items: list[dict]) -> tuple[RecordingSet, SupervisionSet]:
    recordings, supervisions = [], []
    for meta in items:
        num_samples = meta["num_samples"]
        recordings.append(
            Recording(
                id=meta["id"],
                sources=[AudioSource(type="file", channels=[0], source=meta["audio"])],
                sampling_rate=SAMPLE_RATE,
                num_samples=num_samples,
                duration=num_samples / SAMPLE_RATE,
            )
        )
        for n, seg in enumerate(meta["segments"]):
            supervisions.append(
                SupervisionSegment(
                    id=f"{meta['id']}-{n:04d}",
                    recording_id=meta["id"],
                    start=round(seg["start"], 4),
                    duration=round(seg["end"] - seg["start"], 4),
                    channel=0,
                    text=seg["text"],
                    language=LANGUAGE_OF_KIND[seg["kind"]],
                    speaker=meta["speaker"],
                )
            )
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def split_stats(items: list[dict]) -> dict:
    total = sum(m["num_samples"] for m in items) / SAMPLE_RATE
    segments = [s for m in items for s in m["segments"]]
    stretches: dict[str, int] = {}
    for m in items:
        for kind, count in m["hard_stretches"].items():
            stretches[kind] = stretches.get(kind, 0) + count
    return {
        "recordings": len(items),
        "hours": round(total / 3600, 3),
        "utterances": len(segments),
        "speakers": len({m["speaker"] for m in items}),
        "code_switched_share": round(sum(s["kind"] == "cs" for s in segments) / max(1, len(segments)), 3),
        "nonspeech_share": round(sum(m["nonspeech_seconds"] for m in items) / max(total, 1e-9), 3),
        "hard_stretches": stretches,
    }


def expected_outputs(data_dir: Path, config: MiniCsConfig) -> list[Path]:
    manifest_dir = data_dir / "manifests"
    outputs = [data_dir / "corpus_stats.yaml"]
    for plan in split_plans(config):
        outputs.append(manifest_path(manifest_dir, CORPUS, "recordings", plan.name))
        if plan.labelled:
            outputs.append(manifest_path(manifest_dir, CORPUS, "supervisions", plan.name))
    return outputs


def prepare_mini_cs(data_dir: Path, config: MiniCsConfig, nj: int = 1) -> dict[str, dict]:
    """Synthesize every split and write its manifests; returns per-split statistics."""
    data_dir = Path(data_dir)
    manifest_dir = data_dir / "manifests"
    stats = {}
    for plan in split_plans(config):
        build = partial(build_item, data_dir / "audio", plan, config)
        with Pool(nj) if nj > 1 else _SerialPool() as pool:
            items = list(
                tqdm(pool.imap(build, range(plan.count)), total=plan.count, desc=f"mini_cs {plan.name}", unit="item")
            )
        recordings, supervisions = manifests_from_items(items)
        validate_recordings_and_supervisions(recordings, supervisions)
        if plan.labelled:
            targets = [(supervisions, manifest_path(manifest_dir, CORPUS, "supervisions", plan.name))]
        else:  # true text of the unlabelled split is kept apart, for measuring pseudo-label quality only
            targets = [(supervisions, manifest_path(data_dir / "truth", CORPUS, "supervisions", plan.name))]
        targets.append((recordings, manifest_path(manifest_dir, CORPUS, "recordings", plan.name)))
        for manifest, path in targets:
            with atomic_path(path) as tmp:
                manifest.to_file(tmp)
        stats[plan.name] = split_stats(items)
        log.info("%s: %s", plan.name, stats[plan.name])
    with atomic_path(data_dir / "corpus_stats.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(stats, sort_keys=False), encoding="utf-8")
    return stats


class _SerialPool:
    """The `Pool` interface in-process, for nj=1 (simpler tracebacks, no fork)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, items):
        return map(fn, items)


PREPARER = Preparer(CORPUS, MiniCsConfig, prepare_mini_cs, expected_outputs)
