"""Seed 002's pieces: frame stacking, the shift, the losses and codebooks by hand; teacher embeddings of a
Whisper and a wav2vec2 encoder; the ESPnet task built from YAML and its checkpoint through ESPnet's loader."""

import math

import numpy as np
import pytest
import torch
import yaml

from k2d.mtkd.embed import SpeechEncoderTeacher, TeacherSpec
from k2d.mtkd.losses import (
    assign_codes,
    codebook_loss,
    kmeans,
    l1_cosine_loss,
    normalize_per_utterance,
    shifted_pairs,
    stack_frames,
)


def test_stacking_puts_successive_frames_side_by_side_and_drops_an_incomplete_group():
    frames = torch.arange(10.0).reshape(1, 5, 2)  # frames [0,1] [2,3] [4,5] [6,7] [8,9]
    stacked, lengths = stack_frames(frames, torch.tensor([5]), 2)
    assert stacked.tolist() == [[[0, 1, 2, 3], [4, 5, 6, 7]]] and lengths.tolist() == [2]
    same, lengths = stack_frames(frames, torch.tensor([5]), 1)
    assert torch.equal(same, frames) and lengths.tolist() == [5]


def test_a_shifted_student_frame_predicts_the_teacher_frame_delta_back():
    student = torch.arange(6.0).reshape(1, 6, 1)  # student frame t holds t
    target = 10 + torch.arange(6.0).reshape(1, 6, 1)  # teacher frame t holds 10 + t
    prediction, wanted, mask = shifted_pairs(student, torch.tensor([6]), target, torch.tensor([4]), delta=2)
    # student frames 2..5 pair with teacher frames 0..3; teacher frames 4, 5 are past its length 4
    assert prediction.flatten().tolist() == [2, 3, 4, 5] and wanted.flatten().tolist() == [10, 11, 12, 13]
    assert mask.tolist() == [[True, True, True, True]]
    _, _, mask = shifted_pairs(student, torch.tensor([4]), target, torch.tensor([6]), delta=2)
    assert mask.tolist() == [[True, True, False, False]]  # student frames 4, 5 are padding
    with pytest.raises(ValueError, match="delta must be >= 0"):
        shifted_pairs(student, torch.tensor([6]), target, torch.tensor([6]), delta=-1)


def test_l1_cosine_loss_by_hand():
    prediction = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    target = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])  # the third frame is padding
    # L1: frame 1: 0 + 0, frame 2: |0-2| + |2-0| = 4 -> 4 / (2 frames * 2 dims) = 1.0
    # cos: frame 1: 1, frame 2: 0 -> linear: mean(1 - cos) = 0.5
    loss, parts = l1_cosine_loss(prediction, target, mask, "linear", 1.0)
    assert loss.item() == pytest.approx(1.5) and parts["cos"].item() == pytest.approx(0.5)
    # logsigmoid: mean(-log sigmoid(1), -log sigmoid(0)) = (0.31326 + 0.69315) / 2
    loss, _ = l1_cosine_loss(prediction, target, mask, "logsigmoid", 2.0)
    expected = 1.0 + 2.0 * (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_per_utterance_normalisation_by_hand():
    frames = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [9.0, 9.0]],
                           [[4.0, 4.0], [0.0, 0.0], [0.0, 0.0]]])
    lengths = torch.tensor([2, 1])
    # utterance 1, its 2 frames: means (2, 4), standard deviations (1, 2) -> (-1, -1), (1, 1); padding 0
    # utterance 2, one frame: it is its own mean -> 0
    expected = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]],
                             [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    assert torch.allclose(normalize_per_utterance(frames, lengths), expected, atol=1e-4)


def test_kmeans_finds_two_clear_clusters_and_codes_are_the_nearest_centroid():
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(10, 0.1, (50, 2))]).astype(np.float32)
    centroids = kmeans(torch.from_numpy(samples), 2, iterations=5, seed=1)
    ordered = sorted(centroids.tolist())
    assert ordered[0] == pytest.approx([0, 0], abs=0.1) and ordered[1] == pytest.approx([10, 10], abs=0.1)
    codes = assign_codes(torch.tensor([[[9.0, 9.5], [0.2, -0.1]]]), centroids)
    high = int(centroids[:, 0].argmax())
    assert codes.tolist() == [[high, 1 - high]]
    with pytest.raises(ValueError, match="at least 3 samples"):
        kmeans(torch.zeros(2, 2), 3)


def test_codebook_loss_by_hand():
    logits = torch.zeros(1, 2, 2 * 4)  # 2 frames, 2 stacked teacher frames each, 4 entries: uniform
    codes = torch.tensor([[[0, 3], [1, 2]]])
    loss, parts = codebook_loss(logits, codes, torch.tensor([[True, True]]))
    assert loss.item() == pytest.approx(math.log(4))
    logits[0, 0, 0] = logits[0, 0, 4 + 3] = 100.0  # frame 0 sure of its two codes
    loss, parts = codebook_loss(logits, codes, torch.tensor([[True, False]]))
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and parts["acc"].item() == 1.0


def test_teacher_spec_parsing():
    spec = TeacherSpec.parse("wb=whisper-base:4,6")
    assert spec == TeacherSpec("wb", "whisper-base", (4, 6)) and spec.targets() == ["wb_l4", "wb_l6"]
    assert TeacherSpec.parse("d=/models/a:b/teacher:2").model == "/models/a:b/teacher"
    for bad in ("whisper-base:4", "wb=whisper-base", "wb=whisper-base:x", "w-b=m:1"):
        with pytest.raises(ValueError):
            TeacherSpec.parse(bad)


def test_whisper_embeddings_cover_the_audio_at_50_hz(tiny_whisper, tmp_path):
    from k2d.models.whisper import save_model_dir

    save_model_dir(*tiny_whisper, tmp_path / "tiny")
    teacher = SpeechEncoderTeacher(TeacherSpec("t", str(tmp_path / "tiny"), (0, 2)), "cpu")
    assert teacher.frame_rate == 50.0  # 500 positions over a 10 s window
    rng = np.random.default_rng(0)
    short, long = rng.standard_normal(int(16000 * 2.5)), rng.standard_normal(int(16000 * 12.34))
    out = teacher.embed([short.astype(np.float32), long.astype(np.float32)])
    assert out[0][2].shape == (125, 32) and out[0][2].dtype == np.float16
    assert out[1][0].shape == (500 + 117, 32)  # a full 10 s window, then ceil(2.34 s * 50) frames
    with pytest.raises(ValueError, match="layer"):
        SpeechEncoderTeacher(TeacherSpec("t", str(tmp_path / "tiny"), (3,)), "cpu")


def test_a_wav2vec2_encoder_is_a_teacher_too(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_stride=(5, 64), conv_kernel=(10, 64), num_feat_extract_layers=2,
                            num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    Wav2Vec2FeatureExtractor().save_pretrained(tmp_path / "w2v")
    teacher = SpeechEncoderTeacher(TeacherSpec("w", str(tmp_path / "w2v"), (2,)), "cpu")
    assert teacher.frame_rate == 50.0  # 16000 / (5 * 64)
    out = teacher.embed([np.zeros(16000, dtype=np.float32)])
    # conv lengths: (16000 - 10) // 5 + 1 = 3199, then (3199 - 64) // 64 + 1 = 49
    assert out[0][2].shape == (49, 16)


ESPNET_CONFIG = {
    "frontend": "default", "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 20},
    "normalize": "utterance_mvn", "encoder": "conformer",
    "encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 1,
                     "input_layer": "conv2d"},
    "model": "encoder_kd",
    "model_conf": {"loss": "regression", "delta": 1,
                   "targets": {"a_l1": {"dim": 6, "stack": 2, "weight": 1.0},
                               "b_l2": {"dim": 3, "stack": 1, "weight": 0.5}}},
}


def build_task_model(tmp_path, config):
    from k2d.mtkd.task import EncoderKDTask

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = EncoderKDTask.get_parser()
    args = parser.parse_args(["--config", str(path)])
    return EncoderKDTask.build_model(args), path


def test_the_task_builds_from_yaml_with_a_head_per_target_and_trains(tmp_path):
    model, _ = build_task_model(tmp_path, ESPNET_CONFIG)
    assert model.heads["a_l1"].out_features == 12 and model.heads["b_l2"].out_features == 3
    assert model.heads["a_l1"].in_features == 16
    speech = torch.randn(2, 16000)
    batch = {"a_l1": torch.randn(2, 50, 6), "a_l1_lengths": torch.tensor([50, 40]),
             "b_l2": torch.randn(2, 25, 3), "b_l2_lengths": torch.tensor([25, 20])}
    loss, stats, weight = model(speech, torch.tensor([16000, 12800]), **batch)
    assert torch.isfinite(loss) and set(stats) >= {"loss_a_l1", "loss_b_l2", "cos_a_l1", "loss"}
    assert loss.item() == pytest.approx(stats["loss_a_l1"].item() + 0.5 * stats["loss_b_l2"].item(), rel=1e-5)
    loss.backward()
    assert model.heads["b_l2"].weight.grad is not None and weight.item() == 2
    with pytest.raises(RuntimeError, match="the batch has no 'a_l1'"):
        model(speech, torch.tensor([16000, 16000]), b_l2=batch["b_l2"], b_l2_lengths=batch["b_l2_lengths"])


def test_normalised_targets_ignore_each_utterances_offset_and_scale(tmp_path):
    config = {**ESPNET_CONFIG, "model_conf": {**ESPNET_CONFIG["model_conf"], "target_norm": "utterance"}}
    model, _ = build_task_model(tmp_path, config)
    model.eval()  # no dropout: two forward passes see the same student
    speech, lengths = torch.randn(2, 16000), torch.tensor([16000, 12800])
    a, b = torch.randn(2, 50, 6), torch.randn(2, 25, 3)
    batch = {"a_l1_lengths": torch.tensor([50, 40]), "b_l2_lengths": torch.tensor([25, 20])}
    with torch.no_grad():
        loss, _, _ = model(speech, lengths, a_l1=a, b_l2=b, **batch)
        moved, _, _ = model(speech, lengths, a_l1=10 * a + 3, b_l2=0.5 * b - 7, **batch)
        raw = build_task_model(tmp_path, ESPNET_CONFIG)[0].eval()
        raw.load_state_dict(model.state_dict())
        raw_loss, _, _ = raw(speech, lengths, a_l1=a, b_l2=b, **batch)
        raw_moved, _, _ = raw(speech, lengths, a_l1=10 * a + 3, b_l2=0.5 * b - 7, **batch)
    assert moved.item() == pytest.approx(loss.item(), rel=1e-4)
    assert abs(raw_moved.item() - raw_loss.item()) > 1.0  # without it the loss follows the targets' scale
    with pytest.raises(ValueError, match="target_norm"):
        build_task_model(tmp_path, {**config, "model_conf": {**config["model_conf"], "loss": "codebook"}})


def test_codebook_targets_and_a_checkpoint_through_espnets_loader(tmp_path):
    from safetensors.torch import save_file

    from k2d.mtkd.task import EncoderKDTask

    save_file({"a_l1": torch.randn(8, 6), "b_l2": torch.randn(4, 3)}, str(tmp_path / "books.safetensors"))
    config = {**ESPNET_CONFIG, "model_conf": {**ESPNET_CONFIG["model_conf"], "loss": "codebook",
                                              "codebooks": str(tmp_path / "books.safetensors")}}
    model, config_path = build_task_model(tmp_path, config)
    assert model.heads["a_l1"].out_features == 2 * 8 and model.heads["b_l2"].out_features == 4
    batch = {"a_l1": torch.randn(1, 50, 6), "a_l1_lengths": torch.tensor([50]),
             "b_l2": torch.randn(1, 25, 3), "b_l2_lengths": torch.tensor([25])}
    loss, stats, _ = model(torch.randn(1, 16000), torch.tensor([16000]), **batch)
    assert torch.isfinite(loss) and 0 <= stats["acc_a_l1"].item() <= 1
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded, _ = EncoderKDTask.build_model_from_file(str(config_path), str(tmp_path / "model.pth"), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                 strict=True))
    assert torch.equal(loaded.codebook_a_l1, model.codebook_a_l1)


def test_compose_config_stacks_each_teacher_to_the_students_rate(tmp_path):
    from k2d.espnet.recipe import compose_config

    (tmp_path / "student.yaml").write_text("encoder: conformer\nencoder_conf: {output_size: 16}\n")
    (tmp_path / "stage.yaml").write_text("model: encoder_kd\nmodel_conf: {loss: regression}\nmax_epoch: 2\n")
    (tmp_path / "targets.yaml").write_text(yaml.safe_dump({
        "wb_l6": {"dim": 512, "frame_rate": 50.0}, "d_l4": {"dim": 192, "frame_rate": 50.0},
        "slow_l1": {"dim": 8, "frame_rate": 25.0}}))
    config = compose_config(tmp_path / "student.yaml", [tmp_path / "stage.yaml"], tmp_path / "targets.yaml",
                            ["wb", "slow"], {"wb": 2.0})
    assert config["encoder_conf"] == {"output_size": 16} and config["max_epoch"] == 2
    assert config["model_conf"] == {"loss": "regression", "targets": {
        "wb_l6": {"dim": 512, "stack": 2, "weight": 2.0}, "slow_l1": {"dim": 8, "stack": 1, "weight": 1.0}}}
    with pytest.raises(ValueError, match="no target of teachers"):
        compose_config(tmp_path / "student.yaml", [tmp_path / "stage.yaml"], tmp_path / "targets.yaml", ["x"])
    # a second stage file overrides the first where both set an option, and adds its own
    (tmp_path / "more.yaml").write_text("max_epoch: 3\nfreeze_param: [encoder]\n")
    config = compose_config(tmp_path / "student.yaml", [tmp_path / "stage.yaml", tmp_path / "more.yaml"])
    assert config["max_epoch"] == 3 and config["freeze_param"] == ["encoder"] and config["model"] == "encoder_kd"
