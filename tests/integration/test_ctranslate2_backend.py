"""The CTranslate2 backend runs k2d's own long-form algorithm: on the demo models and on Whisper base it
gives exactly the transformers backend's tokens, segments and transcripts (float32, greedy), and stages 1,
3 and 6 take `--backend ctranslate2`.

One trap found on the way, kept as a test: CTranslate2's Whisper `generate` makes at most max_length / 2 new
tokens, and its choices depend on max_length (with max_length 224 it wrote " dump" below, where the model,
scored by transformers, by openai-whisper's reference code and by CTranslate2's own beam search, puts
-0.81 on " dumb" and -1.16 on " dump"); with max_length = 2 x the token budget, as the backend asks, the two
backends agree token for token.
"""

import gzip
import json

import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording, RecordingSet

from k2d import decode, pseudo_label, validate
from k2d.inference.backends import load_recognizer
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import decode_windows, transcribe_longform
from k2d.recipes.mini_cs.corpus import OOD_SPEAKERS, TRAIN_SPEAKERS, LongFormStyle, render_longform, render_utterance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    directory = tmp_path_factory.mktemp("audio")
    out = []
    for i, (speakers, split) in enumerate([(TRAIN_SPEAKERS, "test_in"), (OOD_SPEAKERS, "test_ood")]):
        item = render_longform(5, split, i, speakers, 0.75, LongFormStyle())
        sf.write(directory / f"r{i}.flac", item.audio, 16000)
        out.append(Recording.from_file(directory / f"r{i}.flac", recording_id=f"r{i}"))
    return out


def segments(backend, model, recordings):
    recognizer = load_recognizer(model, backend=backend)
    results = sorted(transcribe_longform(recognizer, recordings, GenerationSettings(), batch_size=2),
                     key=lambda r: r.recording_id)
    return [[(round(s.start, 2), round(s.end, 2), s.text) for s in r.segments] for r in results]


def test_demo_teacher_long_form_is_the_same_on_both_backends(repo_root, recordings):
    model = str(repo_root / "egs/mini_cs/models/teacher")
    transformers, ctranslate2 = segments("transformers", model, recordings), segments("ctranslate2", model, recordings)
    assert transformers == ctranslate2 and all(transformers)


def test_demo_validator_short_form_is_the_same_on_both_backends(repo_root):
    model = str(repo_root / "egs/mini_cs/models/validator")
    audios = [render_utterance(9, "test_in", i, TRAIN_SPEAKERS).audio for i in range(6)]
    texts = {backend: [r.text for r in decode_windows(load_recognizer(model, backend=backend), audios,
                                                       GenerationSettings(no_speech_threshold=None))]
             for backend in ("transformers", "ctranslate2")}
    assert texts["transformers"] == texts["ctranslate2"] and all(texts["transformers"])


def test_stages_take_the_ctranslate2_backend(repo_root, recordings, tmp_path):
    manifest = tmp_path / "recordings.jsonl.gz"
    RecordingSet.from_recordings(recordings).to_file(manifest)
    teacher, validator = str(repo_root / "egs/mini_cs/models/teacher"), str(repo_root / "egs/mini_cs/models/validator")
    outputs = {}
    for backend in ("transformers", "ctranslate2"):
        out = tmp_path / backend
        assert pseudo_label.main(["--recordings", str(manifest), "--model", teacher, "--output",
                                  str(out / "pl.jsonl.gz"), "--backend", backend]) == 0
        with gzip.open(out / "pl.jsonl.gz", "rt") as f:
            outputs[backend] = [(s["start"], s["duration"], s["text"]) for s in map(json.loads, f)]
    assert outputs["transformers"] == outputs["ctranslate2"] and outputs["transformers"]
    from k2d import chunking

    chunks = tmp_path / "chunks.jsonl.gz"
    assert chunking.main(["--recordings", str(manifest), "--segments", str(tmp_path / "transformers" / "pl.jsonl.gz"),
                          "--output", str(chunks), "--max-chunk", "10"]) == 0
    assert validate.main(["--cuts", str(chunks), "--model", validator, "--output", str(tmp_path / "v.jsonl.gz"),
                          "--backend", "ctranslate2"]) == 0
    supervisions = tmp_path / "sup.jsonl.gz"
    from lhotse import SupervisionSegment, SupervisionSet

    SupervisionSet.from_segments([SupervisionSegment("s0", "r0", 0.5, 5.0, text="模型")]).to_file(supervisions)
    assert decode.main(["--model", teacher, "--set-name", "t", "--recordings", str(manifest), "--supervisions",
                        str(supervisions), "--out-dir", str(tmp_path / "decode"), "--backend", "ctranslate2"]) == 0
    assert (tmp_path / "decode" / "scores.yaml").exists()


def test_whisper_base_on_the_ctranslate2_backend(recordings):
    """Real weights through k2d's long-form algorithm on CTranslate2: ordered segments inside the audio."""
    recognizer = load_recognizer("whisper-base", backend="ctranslate2")
    assert recognizer.window == 30.0 and recognizer.specials.timestamp_begin == 50364
    for result in transcribe_longform(recognizer, recordings, GenerationSettings(), batch_size=2):
        assert result.error is None and result.windows >= 2
        for before, after in zip(result.segments, result.segments[1:], strict=False):
            assert after.start >= before.end - 0.02
        assert all(0 <= s.start < s.end <= 45.0 + 1e-6 for s in result.segments)


def test_whisper_base_windows_are_the_same_on_both_backends(recordings):
    from k2d.audio import read_whole
    from k2d.recipes.mini_cs.synth import synthesize

    speech = synthesize("the quick brown fox jumps over the lazy dog", TRAIN_SPEAKERS[4])
    english = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
    mandarin = read_whole(recordings[1])[: 16000 * 30]  # zero-shot Whisper base loops on it: 224 tokens
    for language, audio in (("en", english), ("zh", mandarin)):
        settings = GenerationSettings(language=language, no_speech_threshold=None)
        tokens = {backend: decode_windows(load_recognizer("whisper-base", backend=backend), [audio], settings)[0]
                  for backend in ("transformers", "ctranslate2")}
        assert tokens["transformers"].tokens == tokens["ctranslate2"].tokens, language
        assert tokens["transformers"].hypothesis.no_speech_prob == pytest.approx(
            tokens["ctranslate2"].hypothesis.no_speech_prob, abs=1e-3)


def test_shards_starting_together_convert_the_model_once(repo_root, tmp_path):
    # two stage-1 shards converted the same teacher into the same directory at once and one died
    # ("tokenizer.json already exists"): now one converts, the other waits and uses the conversion
    import os
    import subprocess
    import sys

    code = ("from k2d.utils import setup_logging; setup_logging(); "
            "from k2d.inference.ctranslate2_backend import load_ctranslate2_recognizer; "
            f"load_ctranslate2_recognizer({str(repo_root / 'egs/mini_cs/models/validator')!r})")
    env = {**os.environ, "K2D_MODELS": str(tmp_path / "models")}
    runs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert sum("to CTranslate2 (once)" in err for err in errors) == 1
    converted = list((tmp_path / "models" / "ct2-cache").iterdir())
    assert [p.name.startswith("validator-") for p in converted if not p.name.endswith(".lock")] == [True]
