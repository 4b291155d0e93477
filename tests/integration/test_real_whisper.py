"""Real Whisper weights: OpenAI's Whisper base, installed by ./install.sh from hash-pinned packages
(k2d.models.packaged) and imported from its CTranslate2 form (k2d.models.import_ct2). Expected values come from
OpenAI's published model (parameter count, token ids) and from CTranslate2, an independent implementation."""

import json

import numpy as np
import pytest
import torch

from k2d.inference.recognizer import TransformersRecognizer
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import decode_windows, transcribe_longform
from k2d.models.names import models_dir, resolve_model
from k2d.models.whisper import count_parameters, load_whisper

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_dir():
    path = models_dir() / "whisper-base"
    if not (path / "config.json").is_file():
        pytest.fail(f"Whisper base is not installed in {path}: run ./install.sh (it installs the real weights)")
    return path


@pytest.fixture(scope="module")
def base(base_dir):
    return load_whisper("whisper-base")  # found by name


@pytest.fixture(scope="module")
def english():
    """'the quick brown fox jumps over the lazy dog', spoken by espeak-ng (2.6 s), with 1 s of silence after."""
    from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS
    from k2d.recipes.mini_cs.synth import synthesize

    speech = synthesize("the quick brown fox jumps over the lazy dog", TRAIN_SPEAKERS[4])
    return np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])


def test_import_gives_openai_whisper_base(base, base_dir):
    model, processor = base
    assert resolve_model("whisper-base") == str(base_dir)
    assert count_parameters(model) == 72_593_920  # openai/whisper-base's published count
    tokenizer = processor.tokenizer
    assert len(tokenizer) == 51_865 and model.config.vocab_size == 51_865
    ids = tokenizer.convert_tokens_to_ids
    # OpenAI's multilingual token ids
    assert (ids("<|endoftext|>"), ids("<|startoftranscript|>"), ids("<|en|>"), ids("<|zh|>")) == (50257, 50258, 50259,
                                                                                                   50260)
    assert (ids("<|transcribe|>"), ids("<|notimestamps|>"), ids("<|0.00|>"), ids("<|30.00|>")) == (50359, 50363,
                                                                                                    50364, 51864)
    ct2_config = json.loads((models_dir() / "whisper-base-ct2" / "config.json").read_text())
    generation = model.generation_config
    assert generation.suppress_tokens == ct2_config["suppress_ids"]
    assert generation.begin_suppress_tokens == ct2_config["suppress_ids_begin"] == [220, 50257]
    assert sorted(generation.lang_to_id.values()) == ct2_config["lang_ids"] and generation.lang_to_id["<|zh|>"] == 50260
    assert generation.alignment_heads == ct2_config["alignment_heads"]
    assert generation.no_timestamps_token_id == 50363 and generation.prev_sot_token_id == 50361
    assert generation.max_initial_timestamp_index == 50  # openai: the first timestamp within 1.0 s
    assert model.config.max_source_positions == 1500 and model.config.num_mel_bins == 80


def test_language_task_and_timestamps_on_speech(base, english):
    recognizer = TransformersRecognizer(*base)
    settings = GenerationSettings(language="en", no_speech_threshold=None)
    [result] = decode_windows(recognizer, [english], settings)
    text = result.text.lower()  # espeak's voice is robotic: Whisper base hears "a quick round fox ..."
    assert "quick" in text and "fox" in text and "lazy dog" in text
    segment = result.segments[0]
    assert 0.0 <= segment.start <= 1.0 and 2.5 <= segment.end <= english.size / 16000
    assert recognizer.prefix(settings) == [50258, 50259, 50359]  # <|startoftranscript|><|en|><|transcribe|>
    assert recognizer.prefix(GenerationSettings(language="zh", timestamps=False)) == [50258, 50260, 50359, 50363]
    [plain] = decode_windows(recognizer, [english], GenerationSettings(language="en", timestamps=False))
    assert all(t < 50257 for t in plain.tokens) and "lazy dog" in plain.text.lower()
    assert result.hypothesis.no_speech_prob < 0.2  # speech
    [silence] = decode_windows(recognizer, [np.zeros(16000 * 5, np.float32)], GenerationSettings(language="en"))
    assert silence.hypothesis.no_speech_prob > 0.5  # Whisper's no-speech token fires on silence


def test_one_pass_decoding_matches_transformers_generate(base, english):
    """transformers' own Whisper generate (made to decode once: force_unique_generate_call) gives the same
    tokens as k2d's decoder, with and without a previous-text prompt."""
    model, processor = base
    recognizer = TransformersRecognizer(model, processor)
    settings = GenerationSettings(language="en", no_speech_threshold=None)
    features = torch.from_numpy(recognizer.features([english]))
    prompt = recognizer.tokenizer.encode(" Foxes and dogs.", add_special_tokens=False)
    for prompt_ids in (None, prompt):
        [ours] = decode_windows(recognizer, [english], settings, [prompt_ids])
        kwargs = {"prompt_ids": torch.tensor([50361, *prompt_ids])} if prompt_ids else {}  # <|startofprev|>
        theirs = model.generate(features, language="en", task="transcribe", return_timestamps=True,
                                force_unique_generate_call=True, max_new_tokens=224, **kwargs)
        row = (theirs["sequences"] if isinstance(theirs, dict) else theirs)[0].tolist()
        body = row[row.index(50359) + 1:]  # after <|transcribe|>
        assert ours.tokens == [t for t in body if t != 50257]


def test_longform_decoding_of_a_two_minute_recording(base, tmp_path):
    import soundfile as sf
    from lhotse import Recording

    from k2d.recipes.mini_cs.corpus import TRAIN_SPEAKERS, LongFormStyle, render_longform

    item = render_longform(3, "test_in", 0, TRAIN_SPEAKERS, 2.0, LongFormStyle())
    sf.write(tmp_path / "r.flac", item.audio, 16000)
    recording = Recording.from_file(tmp_path / "r.flac", recording_id="r")
    recognizer = TransformersRecognizer(*base)
    [result] = transcribe_longform(recognizer, [recording], GenerationSettings(language="zh"), batch_size=1)
    assert result.error is None and len(result.segments) >= 5 and result.windows >= 4  # 30 s windows, seeking
    for before, after in zip(result.segments, result.segments[1:], strict=False):
        assert after.start >= before.end - 0.02  # in time order
    assert all(0 <= s.start < s.end <= recording.duration + 1e-6 and s.text for s in result.segments)


def test_student_of_whisper_base_and_a_few_kd_steps(base, english):
    from k2d.models.student import create_student
    from k2d.train.data import Collator, LabelOptions, make_example
    from k2d.train.labels import TimedText
    from k2d.train.model import WhisperKDModel

    model, processor = base
    student = create_student(model, [0, -1])
    # one decoder layer of Whisper base (d 512, FFN 2048): self- and cross-attention 4 x 512 x 512 weights
    # + 3 biases of 512 (the key projection has none) each, FFN 2 x 512 x 2048 + 2048 + 512, 3 layer norms
    per_layer = 2 * (4 * 512 * 512 + 3 * 512) + (2 * 512 * 2048 + 2048 + 512) + 3 * 2 * 512
    assert per_layer == 4_203_008
    assert count_parameters(student) == 72_593_920 - 4 * per_layer == 55_781_888
    assert not any(p.requires_grad for p in student.model.encoder.parameters())
    assert student.generation_config.alignment_heads == [[1, h] for h in range(8)]
    kd = WhisperKDModel(student, model, feature_extractor=processor.feature_extractor).train()
    options = LabelOptions(window=30.0, timestamp_prob=1.0, prompt_prob=0.0, language="en")
    example = make_example("e", english, [TimedText(0.5, 3.1, "the quick brown fox jumps over the lazy dog")],
                           processor.tokenizer, options, 0)
    batch = Collator(processor.feature_extractor, 50257)([example])
    optimizer = torch.optim.AdamW([p for p in kd.parameters() if p.requires_grad], lr=1e-4)
    losses = []
    for _ in range(4):
        loss, _, _ = kd(batch=batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # the ESPnet contract on the real model: raw audio and whole decoder sequences
    text = torch.tensor([example.labels.input_ids + [example.labels.targets[-1]]])
    loss, stats, weight = kd(torch.from_numpy(english)[None], torch.tensor([english.size]), text,
                             torch.tensor([text.shape[1]]))
    assert torch.isfinite(loss) and int(weight) == text.shape[1] - 3


def test_ctranslate2_round_trip(base_dir, tmp_path, english):
    """k2d.export then k2d.models.import_ct2 gives back the tensors (float16 aside: the packages are float16) and the
    transcript."""
    from safetensors.torch import load_file

    from k2d.export import export_ctranslate2
    from k2d.models.import_ct2 import import_ct2

    export_ctranslate2(base_dir, tmp_path / "ct2", quantization="float16")
    import_ct2(tmp_path / "ct2", tmp_path / "back")
    original, back = load_file(base_dir / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert original.keys() == back.keys()
    for key in original:
        assert torch.equal(original[key], back[key]), key  # float16 values in, the same float16 values out
    settings = GenerationSettings(language="en", no_speech_threshold=None)
    texts = [decode_windows(TransformersRecognizer(*load_whisper(d)), [english], settings)[0].text
             for d in (base_dir, tmp_path / "back")]
    assert texts[0] == texts[1]


def test_quantised_models_are_refused(tmp_path, base_dir):
    from k2d.export import export_ctranslate2
    from k2d.models.import_ct2 import ImportError_, import_ct2

    export_ctranslate2(base_dir, tmp_path / "int8", quantization="int8")
    with pytest.raises(ImportError_, match="quantised"):
        import_ct2(tmp_path / "int8", tmp_path / "out")
