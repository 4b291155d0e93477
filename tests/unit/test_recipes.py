"""Real-corpus recipes on fixtures built in each corpus's published schema (sources in each test), the
long-form condition, and your-own-audio directories."""

import io
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from lhotse import RecordingSet, SupervisionSet

from k2d.recipes.ascend import AscendConfig, prepare_ascend
from k2d.recipes.common import CorpusMissing, Utterance, clean_reference, group_for_longform
from k2d.recipes.cszs import prepare_cszs
from k2d.recipes.cv16_zhtw import Cv16ZhtwConfig, prepare_cv16_zhtw
from k2d.recipes.longform_dir import LongformDirConfig, prepare_longform_dir, recording_ids
from k2d.recipes.ntuml2021 import lecture_of, prepare_ntuml2021
from k2d.recipes.public import PublicCorpusConfig


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, (np.sin(np.arange(int(seconds * rate)) * 0.05) * 0.1).astype("float32"), rate, format="WAV")
    return buffer.getvalue()


def load(data_dir, corpus, split):
    manifests = data_dir / "manifests"
    return (RecordingSet.from_file(manifests / f"{corpus}_recordings_{split}.jsonl.gz"),
            SupervisionSet.from_file(manifests / f"{corpus}_supervisions_{split}.jsonl.gz"))


def test_group_for_longform_by_hand():
    utts = [Utterance("a", "s1", 10), Utterance("b", "s1", 12), Utterance("c", "s1", 9), Utterance("d", "s2", 5),
            Utterance("e", "s2", 40), Utterance("f", "s2", 3)]
    groups = group_for_longform(utts, max_seconds=30)
    # a+b = 22, +c = 31 > 30; session change before d; e alone exceeds 30; f follows e
    assert [[u.id for u in g] for g in groups] == [["a", "b"], ["c"], ["d"], ["e"], ["f"]]


def test_clean_reference():
    assert clean_reference("我 [UNK] 觉得 (laugh) 这个 <noise> ok #") == "我 觉得 这个 ok"


# ASCEND: features from the dataset card of CAiRE/ASCEND (id, path, audio, transcription, duration, language,
# original_speaker_id, session_id, topic); parquet under data/{split}-*.parquet as on the Hub.
ASCEND_ROWS = [  # id, session, speaker, seconds, text, language
    ("ses1_spk17_L3823_15.3200_0.7810", 1, 17, 10.0, "好的 [UNK]", "zh"),
    ("ses1_spk18_L3824_16.0000_1.2000", 1, 18, 12.0, "我觉得 okay", "mixed"),
    ("ses1_spk17_L3825_20.0000_2.0000", 1, 17, 9.0, "then we go", "en"),
    ("ses2_spk20_L0001_01.0000_1.0000", 2, 20, 5.0, "对啊", "zh"),
]


def write_ascend_parquet(corpus_dir):
    (corpus_dir / "data").mkdir(parents=True)
    table = pa.table({
        "id": [r[0] for r in ASCEND_ROWS],
        "path": [f"waves/{r[0]}.wav" for r in ASCEND_ROWS],
        "audio": [{"bytes": wav_bytes(r[3]), "path": f"{r[0]}.wav"} for r in ASCEND_ROWS],
        "transcription": [r[4] for r in ASCEND_ROWS],
        "duration": [r[3] for r in ASCEND_ROWS],
        "language": [r[5] for r in ASCEND_ROWS],
        "original_speaker_id": [r[2] for r in ASCEND_ROWS],
        "session_id": [r[1] for r in ASCEND_ROWS],
        "topic": ["persona"] * len(ASCEND_ROWS),
    })
    pq.write_table(table, corpus_dir / "data" / "test-00000-of-00001.parquet")


def test_ascend_parquet_and_longform(tmp_path):
    write_ascend_parquet(tmp_path / "ascend")
    prepare_ascend(tmp_path / "out", AscendConfig(corpus_dir=str(tmp_path / "ascend"), splits=["test"]))
    recordings, supervisions = load(tmp_path / "out", "ascend", "test")
    assert [s.id for s in supervisions] == [r[0] for r in ASCEND_ROWS]
    assert [round(r.duration, 3) for r in recordings] == [10.0, 12.0, 9.0, 5.0]
    assert [s.text for s in supervisions] == ["好的", "我觉得 okay", "then we go", "对啊"]  # [UNK] removed
    assert [s.speaker for s in supervisions] == ["17", "18", "17", "20"]
    assert [s.language for s in supervisions] == ["zh", "mixed", "en", "zh"]
    long_recordings, long_supervisions = load(tmp_path / "out", "ascend", "test_long")
    # session 1: 10 + 12 = 22 s, then 9 s (22 + 9 > 30); session 2: 5 s
    assert [round(r.duration, 3) for r in long_recordings] == [22.0, 9.0, 5.0]
    starts = {s.id: (s.recording_id, round(s.start, 3)) for s in long_supervisions}
    assert starts[ASCEND_ROWS[1][0]][1] == 10.0 and starts[ASCEND_ROWS[0][0]][1] == 0.0
    assert starts[ASCEND_ROWS[0][0]][0] == starts[ASCEND_ROWS[1][0]][0] != starts[ASCEND_ROWS[2][0]][0]


def test_ascend_original_archive_layout(tmp_path):
    corpus = tmp_path / "ascend"
    (corpus / "waves").mkdir(parents=True)
    lines = ["file_name,transcription,duration,language,original_speaker_id,session_id,topic"]
    for uid, session, speaker, seconds, text, language in ASCEND_ROWS[:2]:
        (corpus / "waves" / f"{uid}.wav").write_bytes(wav_bytes(seconds))
        lines.append(f"waves/{uid}.wav,{text},{seconds},{language},{speaker},{session},persona")
    (corpus / "test_metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepare_ascend(tmp_path / "out", AscendConfig(corpus_dir=str(corpus), splits=["test"]))
    recordings, supervisions = load(tmp_path / "out", "ascend", "test")
    assert [s.id for s in supervisions] == [r[0] for r in ASCEND_ROWS[:2]]
    assert len(load(tmp_path / "out", "ascend", "test_long")[0]) == 1  # 10 + 12 s in one session


def test_cszs_uses_the_correct_side(tmp_path):
    # features from the dataset cards of ky552/cszs_zh_en / ky552/cszs_es_en
    (tmp_path / "cszs" / "data").mkdir(parents=True)
    pq.write_table(pa.table({
        "correct_audio": [{"bytes": wav_bytes(2.0), "path": "c1.wav"}, {"bytes": wav_bytes(3.0), "path": "c2.wav"}],
        "correct_transcription": ["我们用 python", "这个 model 很好"],
        "correct_file": ["zh_en_000001_correct.wav", "zh_en_000002_correct.wav"],
        "wrong_audio": [{"bytes": wav_bytes(1.0), "path": "w1.wav"}, {"bytes": wav_bytes(1.0), "path": "w2.wav"}],
        "wrong_transcription": ["我们用 蟒蛇", "这个 模特 很好"],
        "wrong_file": ["zh_en_000001_wrong.wav", "zh_en_000002_wrong.wav"],
    }), tmp_path / "cszs" / "data" / "test-00000-of-00001.parquet")
    prepare_cszs(tmp_path / "out", PublicCorpusConfig(corpus_dir=str(tmp_path / "cszs")))
    recordings, supervisions = load(tmp_path / "out", "cszs", "test")
    assert [s.id for s in supervisions] == ["zh_en_000001_correct", "zh_en_000002_correct"]
    assert [s.text for s in supervisions] == ["我们用 python", "这个 model 很好"]
    assert [round(r.duration, 3) for r in recordings] == [2.0, 3.0]
    assert [round(r.duration, 3) for r in load(tmp_path / "out", "cszs", "test_long")[0]] == [5.0]


def test_ntuml2021_lectures(tmp_path):
    assert lecture_of("lecture03_0012.wav") == "lecture03" and lecture_of("a.wav") == "a"
    # features from the dataset card of ky552/ML2021_ASR_ST: audio, transcription, translation, file
    (tmp_path / "ml" / "data").mkdir(parents=True)
    files = ["lecture01_0001.wav", "lecture01_0002.wav", "lecture02_0001.wav"]
    pq.write_table(pa.table({
        "audio": [{"bytes": wav_bytes(s), "path": f} for s, f in zip((8.0, 7.0, 6.0), files, strict=True)],
        "transcription": ["今天讲 transformer", "它有 encoder", "下一堂课"],
        "translation": ["today transformer", "it has an encoder", "next class"],
        "file": files,
    }), tmp_path / "ml" / "data" / "test-00000-of-00001.parquet")
    prepare_ntuml2021(tmp_path / "out", PublicCorpusConfig(corpus_dir=str(tmp_path / "ml")))
    long_recordings, long_supervisions = load(tmp_path / "out", "ntuml2021", "test_long")
    assert [round(r.duration, 3) for r in long_recordings] == [15.0, 6.0]  # per lecture
    assert [s.text for s in long_supervisions] == ["今天讲 transformer", "它有 encoder", "下一堂课"]


def test_cv16_archive_layout_with_mp3(tmp_path):
    # the Common Voice release layout: cv-corpus-16.1-*/zh-TW/test.tsv and clips/*.mp3
    root = tmp_path / "cv-corpus-16.1-2023-12-06" / "zh-TW"
    (root / "clips").mkdir(parents=True)
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    rows = [header]
    for n, (client, seconds, sentence) in enumerate((("c1", 2.0, "我們今天上課。"), ("c1", 3.0, "這是測試"))):
        name = f"common_voice_zh-TW_{n}.mp3"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"sine=f=300:d={seconds}", "-ar", "48000",
                        str(root / "clips" / name)], check=True)
        rows.append(f"{client}\t{name}\t{sentence}\t2\t0\t\t\t\t\tzh-TW\t")
    (root / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    prepare_cv16_zhtw(tmp_path / "out", Cv16ZhtwConfig(corpus_dir=str(tmp_path)))
    recordings, supervisions = load(tmp_path / "out", "cv16_zhtw", "test")
    assert [s.id for s in supervisions] == ["common_voice_zh-TW_0", "common_voice_zh-TW_1"]
    assert [s.speaker for s in supervisions] == ["c1", "c1"] and supervisions[0].text == "我們今天上課。"
    assert all(r.sampling_rate == 48000 for r in recordings)
    assert [abs(r.duration - d) < 0.06 for r, d in zip(recordings, (2.0, 3.0), strict=True)] == [True, True]


def test_missing_corpus_says_how_to_get_it(tmp_path):
    with pytest.raises(CorpusMissing, match="CAiRE/ASCEND"):
        prepare_ascend(tmp_path / "out", AscendConfig(corpus_dir=str(tmp_path / "nothing")))


def test_recording_ids_are_stable_and_unique(tmp_path):
    import hashlib

    def h(relative: str) -> str:  # the first 8 hex digits of the SHA-1 of the relative path
        return hashlib.sha1(relative.encode()).hexdigest()[:8]

    names = ["a.wav", "a.mp3", "day 1/talk.flac", "第一课.wav", "第二课.wav", "a b/x.wav", "a_b/x.wav",
             "day2/meeting.flac"]
    paths = [tmp_path / n for n in names]
    assert recording_ids(paths, tmp_path) == {
        paths[0]: f"a_{h('a.wav')}", paths[1]: f"a_{h('a.mp3')}",  # same name: both get their hash
        paths[2]: f"day_1__talk_{h('day 1/talk.flac')}",  # a space replaced
        paths[3]: "第一课", paths[4]: "第二课",  # letters of any script are kept
        paths[5]: f"a_b__x_{h('a b/x.wav')}", paths[6]: f"a_b__x_{h('a_b/x.wav')}",
        paths[7]: "day2__meeting",
    }
    assert len(set(recording_ids(paths, tmp_path).values())) == len(paths)


def test_longform_dir_with_a_kaldi_test_set(tmp_path):
    corpus = tmp_path / "audio"
    corpus.mkdir()
    sf.write(corpus / "talk.wav", np.zeros((32000, 2), dtype="float32") + 0.01, 8000)  # 4 s stereo, 8 kHz
    kaldi = tmp_path / "kaldi_test"
    kaldi.mkdir()
    sf.write(kaldi / "u1.wav", np.zeros(16000, dtype="float32"), 16000)
    (kaldi / "wav.scp").write_text(f"u1 {kaldi / 'u1.wav'}\n")
    (kaldi / "text").write_text("u1 你好 world\n")
    (kaldi / "utt2spk").write_text("u1 spk1\n")
    config = LongformDirConfig(corpus_dir=str(corpus), test_sets={"mytest": str(kaldi)})
    prepare_longform_dir(tmp_path / "out", config)
    recordings = RecordingSet.from_file(tmp_path / "out" / "manifests" / "longform_dir_recordings_unlabelled.jsonl.gz")
    assert [(r.id, r.duration, r.sampling_rate, r.num_channels) for r in recordings] == [("talk", 4.0, 8000, 2)]
    _, supervisions = load(tmp_path / "out", "longform_dir", "mytest")
    assert [s.text for s in supervisions] == ["你好 world"]
