"""Streaming KD (seed 003): chunk masks, APC pairing, the losses and CTC emission by hand; the ESPnet model's
KD variants; streaming decoding equal to full decoding under the same masks, with either front end; the export
without the teacher, heads and branches; the sherpa-onnx export decoded by sherpa-onnx's online recognizer."""

import math

import kaldialign
import numpy as np
import onnxruntime
import pytest
import torch
import yaml

from k2d.mtkd.losses import l1_cosine_loss
from k2d.streaming.kd import chunk_mask, ctc_collapse, frame_kl, future_pairs


def test_chunk_mask_by_hand():
    # 5 frames in chunks of 2: {0,1} {2,3} {4}; a frame sees its chunk and the chunks before it
    expected = torch.tensor([[1, 1, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(chunk_mask(5, 2), expected)
    # one chunk of left context: frame 4 no longer sees chunk {0,1}
    limited = expected.clone()
    limited[4, :2] = False
    assert torch.equal(chunk_mask(5, 2, left_chunks=1), limited)
    assert torch.equal(chunk_mask(5, 2, left_chunks=0)[2], torch.tensor([0, 0, 1, 1, 0], dtype=torch.bool))
    assert chunk_mask(3, 0).all()  # full context: the teacher


def test_apc_pairs_each_student_frame_with_the_teacher_frame_n_ahead():
    student = torch.arange(4.0).reshape(1, 4, 1)
    teacher = 10 + torch.arange(5.0).reshape(1, 5, 1)
    prediction, target, mask = future_pairs(student, torch.tensor([4]), teacher, torch.tensor([4]), ahead=2)
    assert prediction.flatten().tolist() == [0, 1, 2]  # frames 0..2 have a frame 2 ahead in a 5-frame target
    assert target.flatten().tolist() == [12, 13, 14]
    assert mask.tolist() == [[True, True, False]]  # the target has 4 valid frames: 2 + 2 = 4 is padding
    with pytest.raises(ValueError, match="at least one frame ahead"):
        future_pairs(student, torch.tensor([4]), teacher, torch.tensor([5]), ahead=0)


def test_layer_loss_is_l1_minus_log_sigmoid_cosine_by_hand():
    prediction, target = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    loss, parts = l1_cosine_loss(prediction, target, torch.tensor([[True]]), cosine="logsigmoid")
    # L1 mean over 2 dims: (1 + 1) / 2 = 1; cosine 0: -log sigmoid(0) = log 2
    assert loss.item() == pytest.approx(1 + math.log(2))
    assert parts["cos"].item() == pytest.approx(0.0)


def test_token_kd_is_kl_teacher_to_student_by_hand():
    teacher = torch.log(torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]])).reshape(1, 2, 2)
    student = torch.log(torch.tensor([[0.25, 0.75], [0.5, 0.5]]))[None]
    # frame 0: 0.5 log(0.5 / 0.25) + 0.5 log(0.5 / 0.75) = 0.5 log 2 + 0.5 log(2 / 3); frame 1: 0; frame 1 masked
    by_hand = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert frame_kl(teacher, student, torch.tensor([[True, False]])).item() == pytest.approx(by_hand, rel=1e-5)
    assert frame_kl(teacher, student, torch.tensor([[True, True]])).item() == pytest.approx(by_hand / 2, rel=1e-5)


def test_ctc_collapse_merges_repeats_drops_blanks_and_continues_across_pieces():
    assert ctc_collapse([0, 3, 3, 0, 3, 5, 5]) == ([3, 3, 5], [1, 4, 5], 5)
    assert ctc_collapse([5, 0, 5], previous=5) == ([5], [2], 5)  # the repeat of the last piece's 5 is merged


def test_encoder_frames_by_hand():
    from k2d.streaming.frontend import Framing
    from k2d.streaming.stream import encoder_frames

    stft = Framing(window=512, shift=160, offset=0, mirrored=False)  # ESPnet's log-mel, center false
    # 7 feature frames (the conv2d subsampling's context) give the first encoder frame;
    # 7 frames of 512 samples every 160 need 512 + 6 * 160 = 1472 samples
    assert encoder_frames(1472, stft) == 1 and encoder_frames(1471, stft) == 0
    # 1 s: 1 + (16000 - 512) // 160 = 97 feature frames; ((97 - 1) // 2 - 1) // 2 = 23 encoder frames
    assert encoder_frames(16000, stft) == 23 == encoder_frames(16000, stft, final=True)
    kaldi = Framing(window=400, shift=160, offset=120, mirrored=True)  # snip_edges false
    # frame i is samples [160 i - 120, 160 i + 280): frame 6 ends at 1240
    assert encoder_frames(1240, kaldi) == 1 and encoder_frames(1239, kaldi) == 0
    # 15,840 samples in all: (15840 + 80) // 160 = 99 frames, the last ones mirror the end;
    # ((99 - 1) // 2 - 1) // 2 = 24 encoder frames
    assert encoder_frames(15840, kaldi, final=True) == 24
    # before the end: frames with 160 i + 280 <= 15840, i <= 97: 98 frames; ((98 - 1) // 2 - 1) // 2 = 23
    assert encoder_frames(15840, kaldi) == 23
    assert kaldi.span(2, 5) == (200, 920)


def test_mirrored_slice_reflects_both_ends_as_kaldi_does():
    from k2d.streaming.frontend import mirrored_slice

    audio = np.array([1.0, 2.0, 3.0, 4.0])
    # sample -k is sample k - 1, sample n + k is sample n - 1 - k
    assert mirrored_slice(audio, -2, 6).tolist() == [2, 1, 1, 2, 3, 4, 4, 3]
    assert mirrored_slice(audio, 1, 3).tolist() == [2, 3]


def test_kaldi_fbank_frames_of_a_span_equal_the_whole_utterance():
    from k2d.streaming.frontend import KaldiFbank, mirrored_slice

    frontend = KaldiFbank(n_mels=20)
    audio = np.random.default_rng(4).standard_normal(16000).astype(np.float32) * 0.1
    whole, lengths = frontend(torch.from_numpy(audio)[None], torch.tensor([audio.size]))
    assert whole.shape == (1, 100, 20) and lengths.tolist() == [100]  # (16000 + 80) // 160
    for first, end in [(0, 3), (10, 20), (95, 100)]:  # the start and the end mirror the audio
        start, stop = frontend.framing.span(first, end)
        part = frontend.frames(mirrored_slice(audio, start, stop))
        assert torch.allclose(part, whole[0, first:end], atol=1e-4)


TOKENS = ["<blank>", "<unk>", "a", "\u2581b", "c", "d", "e", "<sos/eos>"]  # \u2581: a sentencepiece word start


def task_config(chunk_size: int, **model_conf) -> dict:
    return {"token_list": TOKENS, "token_type": "char",
            "frontend": "default",
            "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 20},
            "streaming_encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2,
                                       "dropout_rate": 0.0, "chunk_size": chunk_size},
            "model_conf": model_conf}


def build(tmp_path, name: str, config: dict):
    from k2d.streaming.task import StreamingKDTask

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = StreamingKDTask.get_parser().parse_args(["--config", str(path)])
    torch.manual_seed(0)
    model = StreamingKDTask.build_model(args)
    with torch.no_grad():  # a random model whose frames disagree, so that equal outputs mean something
        model.ctc.ctc_lo.weight.mul_(30)
        if model.transducer is not None:
            model.transducer.joint_network.lin_out.weight.mul_(30)
    return model, path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("teacher")
    model, config = build(tmp_path, "teacher", task_config(0))
    torch.save(model.state_dict(), tmp_path / "teacher.pth")
    return model, config, tmp_path / "teacher.pth"


@pytest.mark.parametrize("kd,apc", [("token", 0), ("layer", 0), ("branch", 0), ("branch", 2)])
def test_each_kd_variant_adds_its_loss_and_trains_the_student_not_the_teacher(tmp_path, teacher, kd, apc):
    _, teacher_config, teacher_model = teacher
    config = {**task_config(2, kd=kd, kd_layers=[1, 2], apc_shift=apc),
              "teacher_config": str(teacher_config), "teacher_model": str(teacher_model)}
    model, _ = build(tmp_path, "student", config)
    model.train()
    assert not model.teacher.training  # the frozen teacher runs without dropout
    text = torch.tensor([[2, 3, 4], [5, 6, -1]])
    loss, stats, _ = model(torch.randn(2, 24000), torch.tensor([24000, 20000]), text, torch.tensor([3, 2]))
    parts = {"token": ["loss_kd"], "layer": ["loss_kd_l1", "loss_kd_l2"], "branch": ["loss_kd_l1", "loss_kd_l2"]}[kd]
    parts += ["loss_apc_l1", "loss_apc_l2"] if apc else []
    assert set(stats) == {"loss_ctc", "loss_asr", "loss", *parts} | ({"cos_l1", "cos_l2"} if kd != "token" else set())
    assert loss.item() > stats["loss_ctc"].item()
    assert stats["loss_asr"] == stats["loss_ctc"]  # a CTC student's recognition loss: CTC alone, without the KD terms
    loss.backward()
    assert model.encoder.layers[0].self_attn.linear_q.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())
    if kd == "branch":
        assert model.branches["1"].lstm.weight_hh_l0.grad.abs().sum() > 0
        assert model.branches["1"].lstm.bidirectional is False and model.branches["1"].lstm.num_layers == 1


@pytest.mark.parametrize("apc_on", ["stream", "branch"])
def test_apc_reads_the_streaming_layer_or_the_branch(tmp_path, teacher, apc_on):
    _, teacher_config, teacher_model = teacher
    # kd_weight 0: the branch's own loss adds nothing, so a gradient on the branch can only come from APC
    config = {**task_config(2, kd="branch", kd_layers=[1], kd_weight=0.0, apc_shift=2, apc_on=apc_on),
              "teacher_config": str(teacher_config), "teacher_model": str(teacher_model)}
    config["streaming_encoder_conf"]["output_size"] = 24  # wider than the teacher's 16: the head's input tells
    model, _ = build(tmp_path, "student", config)
    assert model.apc_heads["1"].in_features == (16 if apc_on == "branch" else 24)
    loss, stats, _ = model(torch.randn(1, 24000), torch.tensor([24000]), torch.tensor([[2, 3]]), torch.tensor([2]))
    assert stats["loss_apc_l1"] > 0
    loss.backward()
    branch_grad = model.branches["1"].lstm.weight_hh_l0.grad
    assert (branch_grad is not None and branch_grad.abs().sum() > 0) == (apc_on == "branch")
    assert model.encoder.layers[0].self_attn.linear_q.weight.grad.abs().sum() > 0  # the streaming path learns


def test_apc_on_the_branch_needs_branches(tmp_path, teacher):
    _, teacher_config, teacher_model = teacher
    config = {**task_config(2, kd="layer", kd_layers=[1], apc_shift=2, apc_on="branch"),
              "teacher_config": str(teacher_config), "teacher_model": str(teacher_model)}
    with pytest.raises(ValueError, match="apc_on branch reads the auxiliary branches: it needs kd branch"):
        build(tmp_path, "student", config)
    with pytest.raises(ValueError, match="apc_on must be one of stream, branch"):
        build(tmp_path, "student", {**config, "model_conf": {**config["model_conf"], "apc_on": "future"}})


def test_a_kd_student_without_a_teacher_is_refused(tmp_path):
    with pytest.raises(ValueError, match="need teacher_config and teacher_model"):
        build(tmp_path, "student", task_config(2, kd="layer", kd_layers=[1]))
    with pytest.raises(ValueError, match="frontend_conf center must be false"):
        config = task_config(2)
        config["frontend_conf"]["center"] = True
        build(tmp_path, "student", config)


def kaldi_fbank(config: dict) -> dict:
    return {**config, "frontend": "kaldi_fbank", "frontend_conf": {"n_mels": 20}}


def test_narrow_subsampling_by_hand():
    from k2d.streaming.task import conv2d_subsampling

    # 20 bins -> (20 - 1) // 2 = 9 -> (9 - 1) // 2 = 4 bins after the two convolutions
    espnet = conv2d_subsampling(20, 16, 0.0)  # 0: ESPnet's, output_size channels
    assert [tuple(m.weight.shape) for m in espnet.conv if hasattr(m, "weight")] == [(16, 1, 3, 3), (16, 16, 3, 3)]
    assert tuple(espnet.out[0].weight.shape) == (16, 16 * 4)
    narrow = conv2d_subsampling(20, 16, 0.0, channels=4)
    assert [tuple(m.weight.shape) for m in narrow.conv if hasattr(m, "weight")] == [(4, 1, 3, 3), (4, 4, 3, 3)]
    assert tuple(narrow.out[0].weight.shape) == (16, 4 * 4)
    # the same frames out: 100 feature frames -> ((100 - 1) // 2 - 1) // 2 = 24, 16 wide
    x, mask = narrow(torch.randn(2, 100, 20), torch.ones(2, 1, 100, dtype=torch.bool))
    assert x.shape == (2, 24, 16) and mask.shape == (2, 1, 24)
    with pytest.raises(ValueError, match="subsampling_channels must be >= 0"):
        from k2d.streaming.task import ChunkedEncoder

        ChunkedEncoder(20, 16, subsampling_channels=-1)


@pytest.mark.parametrize("chunk_ms,left_chunks,frontend,channels", [
    (40, -1, "default", 0), (160, -1, "default", 0), (320, 1, "default", 0), (40, -1, "kaldi_fbank", 0),
    (320, 1, "kaldi_fbank", 0), (160, 1, "kaldi_fbank", 4)])
def test_streaming_decoding_equals_full_decoding_with_the_same_masks(tmp_path, chunk_ms, left_chunks, frontend,
                                                                     channels):
    from k2d.streaming.stream import chunk_frames_of, full_decode, stream

    config = task_config(4)
    if frontend == "kaldi_fbank":
        config = kaldi_fbank(config)
    config["streaming_encoder_conf"].update(left_chunks=left_chunks, subsampling_channels=channels)
    model, _ = build(tmp_path, "student", config)
    audio = np.random.default_rng(1).standard_normal(3 * 16000 + 1234).astype(np.float32) * 0.1
    frames = chunk_frames_of(model, chunk_ms)
    streamed, timing = stream(model, audio, chunk_ms)
    assert streamed == full_decode(model, audio, frames)
    assert len(set(streamed)) >= 3  # the random model says several different things
    assert timing["chunks"] == math.ceil(audio.size / (chunk_ms * 16))
    # the masks matter: the same audio with full context gives other frame outputs
    with torch.no_grad():
        speech, length = torch.from_numpy(audio)[None], torch.tensor([audio.size])
        masked = model.encode(speech, length, frames)[0]
        full = model.encode(speech, length, 0)[0]
    assert not torch.allclose(masked, full, atol=1e-3)


def test_export_drops_teacher_heads_and_branches_and_decodes_identically(tmp_path, teacher):
    from k2d.streaming.stream import full_decode, load_model, stream
    from k2d.streaming.task import TRAINING_ONLY, export

    _, teacher_config, teacher_model = teacher
    config = {**task_config(2, kd="branch", kd_layers=[1, 2], apc_shift=2),
              "teacher_config": str(teacher_config), "teacher_model": str(teacher_model)}
    student, config_path = build(tmp_path, "student", config)
    torch.save(student.state_dict(), tmp_path / "valid.loss.best.pth")
    export(config_path, tmp_path / "valid.loss.best.pth", tmp_path / "export")
    state = torch.load(tmp_path / "export" / "model.pth", weights_only=True)
    assert any(k.startswith("branches.") for k in student.state_dict())
    assert not [k for k in state if k.startswith(TRAINING_ONLY)]
    loaded, _ = load_model(tmp_path / "export")
    assert loaded.teacher is None and not hasattr(loaded, "branches")
    audio = np.random.default_rng(2).standard_normal(2 * 16000).astype(np.float32) * 0.1
    assert stream(loaded, audio, 80)[0] == stream(student, audio, 80)[0] == full_decode(student, audio, 2)


def test_export_refuses_a_model_whose_subsampling_passes_no_audio_on(tmp_path):
    import soundfile as sf

    from k2d.streaming.task import export, live_subsampling_channels

    rng = np.random.default_rng(3)
    (tmp_path / "valid").mkdir()
    for i in range(2):
        sf.write(tmp_path / "valid" / f"u{i}.wav", rng.standard_normal(16000).astype(np.float32) * 0.1, 16000)
    (tmp_path / "valid" / "wav.scp").write_text("".join(f"u{i} {tmp_path / 'valid' / f'u{i}.wav'}\n" for i in range(2)))
    config = {**task_config(2), "valid_data_path_and_name_and_type": [[str(tmp_path / "valid" / "wav.scp"), "speech",
                                                                       "sound"]]}
    model, config_path = build(tmp_path, "student", config)
    audio = [sf.read(tmp_path / "valid" / "u0.wav", dtype="float32")[0]]
    assert live_subsampling_channels(model.eval(), audio)[0] > 0  # a random model's channels live
    torch.save(model.state_dict(), tmp_path / "alive.pth")
    assert export(config_path, tmp_path / "alive.pth", tmp_path / "alive").is_file()
    with torch.no_grad():  # every channel of the last convolution negative on any input: dead ReLUs
        model.encoder.embed.conv[2].bias.fill_(-1e4)
    assert live_subsampling_channels(model, audio) == (0, 16)
    torch.save(model.state_dict(), tmp_path / "dead.pth")
    with pytest.raises(ValueError, match="none of the 16 channels of the subsampling's last convolution is positive "
                                         "on 2 validation utterances"):
        export(config_path, tmp_path / "dead.pth", tmp_path / "dead")
    assert not list((tmp_path / "dead").iterdir())  # nothing written


def test_a_wider_student_learns_a_narrower_teacher_through_its_heads(tmp_path, teacher):
    _, teacher_config, teacher_model = teacher
    config = {**task_config(2, kd="branch", kd_layers=[2], apc_shift=1),
              "teacher_config": str(teacher_config), "teacher_model": str(teacher_model)}
    config["streaming_encoder_conf"]["output_size"] = 24  # the teacher's layers are 16 wide
    model, _ = build(tmp_path, "student", config)
    assert model.branches["2"].lstm.hidden_size == 16 and model.apc_heads["2"].out_features == 16
    loss, stats, _ = model(torch.randn(1, 16000), torch.tensor([16000]), torch.tensor([[2, 3]]), torch.tensor([2]))
    assert torch.isfinite(loss) and "loss_apc_l2" in stats
    config["model_conf"]["kd_layers"] = [3]  # the teacher has 2 layers
    with pytest.raises(ValueError, match="kd_layers must name layers 1..2"):
        build(tmp_path, "student", config)


def test_a_transducer_student_adds_the_rnnt_loss_to_weighted_ctc(tmp_path, teacher):
    _, teacher_config, teacher_model = teacher
    config = {**task_config(2, kd="branch", kd_layers=[1], head="transducer", ctc_weight=0.5, prediction_size=8,
                            joint_size=12),
              "teacher_config": str(teacher_config), "teacher_model": str(teacher_model)}
    model, _ = build(tmp_path, "student", config)
    model.train()
    text = torch.tensor([[2, 3, 4], [5, 6, -1]])
    loss, stats, _ = model(torch.randn(2, 24000), torch.tensor([24000, 20000]), text, torch.tensor([3, 2]))
    assert {"loss_transducer", "loss_ctc", "loss_kd_l1"} <= set(stats)
    # transducer + 0.5 CTC + the branch's layer loss (summed over the valid frames, weight 1)
    recognition = stats["loss_transducer"].item() + 0.5 * stats["loss_ctc"].item()
    assert stats["loss_asr"].item() == pytest.approx(recognition, rel=1e-6)  # the dev criterion: no KD term
    assert loss.item() > recognition
    loss.backward()
    assert model.transducer.joint_network.lin_out.weight.grad.abs().sum() > 0
    assert model.transducer.decoder.decoder[0].weight_hh_l0.grad.abs().sum() > 0
    assert model.transducer.joint_network.lin_out.out_features == len(TOKENS)
    with pytest.raises(ValueError, match="head must be one of ctc, transducer"):
        build(tmp_path, "bad", task_config(2, head="attention"))


@pytest.mark.parametrize("chunk_ms,prediction", [(40, "lstm"), (320, "lstm"), (320, "stateless")])
def test_streaming_transducer_decoding_equals_full_decoding(tmp_path, teacher, chunk_ms, prediction):
    from k2d.streaming.stream import chunk_frames_of, full_decode, load_model, stream
    from k2d.streaming.task import export

    _, teacher_config, teacher_model = teacher
    config = {**task_config(8, kd="branch", kd_layers=[1, 2], apc_shift=2, head="transducer", prediction_size=8,
                            joint_size=12, prediction=prediction),
              "teacher_config": str(teacher_config), "teacher_model": str(teacher_model)}
    model, config_path = build(tmp_path, "student", config)
    audio = np.random.default_rng(3).standard_normal(3 * 16000).astype(np.float32) * 0.1
    streamed, _ = stream(model, audio, chunk_ms)
    assert streamed == full_decode(model, audio, chunk_frames_of(model, chunk_ms))
    assert len(set(streamed)) >= 3
    # modified beam search too: its hypotheses carried from chunk to chunk
    beamed, _ = stream(model, audio, chunk_ms, beam=4)
    assert beamed == full_decode(model, audio, chunk_frames_of(model, chunk_ms), beam=4) and len(beamed) >= 3
    # the export keeps the transducer (an inference part) and drops the teacher and branches
    torch.save(model.state_dict(), tmp_path / "valid.loss.best.pth")
    export(config_path, tmp_path / "valid.loss.best.pth", tmp_path / "export")
    loaded, _ = load_model(tmp_path / "export")
    assert loaded.transducer is not None and loaded.teacher is None and not hasattr(loaded, "branches")
    assert loaded.transducer.stateless == (prediction == "stateless")
    assert stream(loaded, audio, chunk_ms)[0] == streamed
    # the command line: --beam decodes a transducer, and is refused with --ctc
    import soundfile as sf

    from k2d.streaming.stream import main

    sf.write(tmp_path / "a.wav", audio, 16000)
    assert main(["--model", str(tmp_path / "export"), "--audio", str(tmp_path / "a.wav"), "--chunk-ms",
                 str(chunk_ms), "--beam", "4"]) == 0
    with pytest.raises(SystemExit) as refused:
        main(["--model", str(tmp_path / "export"), "--audio", str(tmp_path / "a.wav"), "--ctc", "--beam", "4"])
    assert refused.value.code == 2


def sherpa_tokens(export_dir, audio: np.ndarray, int8: bool = False) -> list[int]:
    """The token ids sherpa-onnx's online recognizer gives, with no silence appended."""
    from k2d.streaming.sherpa import SherpaStreamer

    return SherpaStreamer(export_dir, int8, tail_ms=0)(audio)[0]


@pytest.mark.parametrize("head,channels", [("ctc", 0), ("transducer", 0), ("ctc", 8)])
def test_sherpa_onnx_streams_the_tokens_of_k2d_stream(tmp_path, head, channels):
    from k2d.streaming.onnx import chunk_input_frames, export_wenet_ctc
    from k2d.streaming.stream import stream
    from k2d.streaming.task import export

    config = kaldi_fbank(task_config(4, head=head, prediction_size=8, joint_size=12))
    config["frontend_conf"]["n_mels"] = 80  # sherpa-onnx's feature_dim
    config["streaming_encoder_conf"].update(left_chunks=2, subsampling_channels=channels)
    model, config_path = build(tmp_path, "student", config)
    torch.save(model.state_dict(), tmp_path / "valid.loss.best.pth")
    export(config_path, tmp_path / "valid.loss.best.pth", tmp_path / "export")
    out = export_wenet_ctc(tmp_path / "export", tmp_path / "sherpa", int8=True)
    assert chunk_input_frames(4) == 19  # (4 - 1) * 4 + 7 feature frames per chunk of 4 encoder frames
    # sherpa-onnx decodes a chunk once one more feature frame than it needs is in, and drops what is left at the
    # end: with 4 n c + 4 feature frames (n chunks of c = 4 encoder frames; 160 samples a frame) both decode
    # all n c encoder frames
    audio = np.random.default_rng(5).standard_normal(160 * (16 * 25 + 4)).astype(np.float32) * 0.1
    ours, _ = stream(model, audio, 160, ctc=True)
    assert len(ours) >= 10 and len(set(ours)) >= 3  # the random model says several different things
    assert sherpa_tokens(out, audio) == ours
    # the cache matters: the same model with one earlier chunk instead of two gives other tokens
    fewer = export_wenet_ctc(tmp_path / "export", tmp_path / "sherpa1", left_chunks=1)
    assert sherpa_tokens(fewer, audio) != ours
    # int8 weights run in sherpa-onnx too; on this random model with sharpened logits they change about a
    # fifth of the tokens (a trained model's figure is in the streaming recipe's RESULTS.md)
    assert kaldialign.edit_distance(ours, sherpa_tokens(out, audio, int8=True))["err_rate"] < 0.5


def sherpa_transducer_config() -> dict:
    """A random student sherpa-onnx's online transducer runs: Kaldi fbank of 80 bins, stateless prediction."""
    config = kaldi_fbank(task_config(4, head="transducer", prediction="stateless", context_size=2, prediction_size=8,
                                     joint_size=12))
    config["frontend_conf"]["n_mels"] = 80
    config["streaming_encoder_conf"]["left_chunks"] = 2
    return config


def test_sherpa_onnx_streams_the_tokens_of_k2d_stream_through_the_transducer(tmp_path):
    from k2d.streaming.onnx import export_conformer_transducer
    from k2d.streaming.sherpa import SherpaStreamer
    from k2d.streaming.stream import stream
    from k2d.streaming.task import export

    model, config_path = build(tmp_path, "student", sherpa_transducer_config())
    with torch.no_grad():  # sherpa-onnx reads <unk> as a blank; this random model never says it
        model.transducer.joint_network.lin_out.bias[TOKENS.index("<unk>")] = -1e4
        # sherpa-onnx starts with the context [-1, blank]: were -1 read as the embedding's last row (ONNX's Gather
        # wraps negative indices), this row would change what the model says before its first token
        model.transducer.decoder.embed.weight[-1] = 30.0
    torch.save(model.state_dict(), tmp_path / "valid.loss.best.pth")
    export(config_path, tmp_path / "valid.loss.best.pth", tmp_path / "export")
    out = export_conformer_transducer(tmp_path / "export", tmp_path / "sherpa", int8=True)
    decoder = onnxruntime.InferenceSession(str(out / "decoder.onnx"))
    start, blanks = (decoder.run(None, {"y": np.array([context])})[0] for context in ([-1, 0], [0, 0]))
    np.testing.assert_allclose(start, blanks, atol=1e-6)  # k2d starts with context_size blanks
    # 4 n c + 4 feature frames: sherpa-onnx and k2d both decode all n c encoder frames (as for CTC)
    audio = np.random.default_rng(5).standard_normal(160 * (16 * 25 + 4)).astype(np.float32) * 0.1
    ours, _ = stream(model, audio, 160, max_symbols=1)  # sherpa-onnx's greedy search: one token per frame
    assert len(ours) >= 10 and len(set(ours)) >= 3
    assert ours != stream(model, audio, 160)[0]  # several tokens at a frame would differ: the comparison can fail
    assert sherpa_tokens(out, audio) == ours
    # audio that ends anywhere, with sherpa-onnx's own tail (a 160 ms chunk + 100 ms of silence) fed to k2d too:
    # audio + tail is the length above: sherpa-onnx decodes every frame k2d does
    short = audio[: audio.size - 4160]
    assert SherpaStreamer(out)(short)[0] == stream(model, short, 160, max_symbols=1, tail_ms=260)[0]
    # the cache matters: one earlier chunk instead of two gives other tokens
    assert sherpa_tokens(export_conformer_transducer(tmp_path / "export", tmp_path / "sherpa1", left_chunks=1),
                         audio) != ours
    assert kaldialign.edit_distance(ours, sherpa_tokens(out, audio, int8=True))["err_rate"] < 0.5
    assert len(SherpaStreamer(out, int8=True).model_files) == 3
    # streams decoded together (a batch: each its own cache, positions and masks) give what each gives alone
    together = SherpaStreamer(out)
    later = audio[160 * 48 :]  # three chunks shorter: the two streams are at different positions
    streams = [together.recognizer.create_stream() for _ in range(2)]
    for one, samples in zip(streams, (audio, later), strict=True):
        one.accept_waveform(16000, samples)
        one.input_finished()
    while ready := [one for one in streams if together.recognizer.is_ready(one)]:
        together.recognizer.decode_streams(ready)
    batched = [[together.ids[t] for t in together.recognizer.get_result_all(one).tokens] for one in streams]
    assert batched == [ours, sherpa_tokens(out, later)]


def test_sherpa_onnx_modified_beam_search_gives_k2d_beam_search(tmp_path):
    from k2d.streaming.onnx import export_conformer_transducer, export_wenet_ctc
    from k2d.streaming.sherpa import SherpaStreamer
    from k2d.streaming.stream import stream
    from k2d.streaming.task import export

    model, config_path = build(tmp_path, "student", sherpa_transducer_config())
    with torch.no_grad():
        model.transducer.joint_network.lin_out.bias[TOKENS.index("<unk>")] = -1e4  # sherpa-onnx's second blank
        model.transducer.joint_network.lin_out.weight.div_(180)  # undo build's sharpening, and more: beams differ
    torch.save(model.state_dict(), tmp_path / "valid.loss.best.pth")
    export(config_path, tmp_path / "valid.loss.best.pth", tmp_path / "export")
    out = export_conformer_transducer(tmp_path / "export", tmp_path / "sherpa")
    audio = np.random.default_rng(0).standard_normal(160 * (16 * 25 + 4)).astype(np.float32) * 0.1
    ours = stream(model, audio, 160, beam=4)[0]
    assert ours != stream(model, audio, 160, max_symbols=1)[0] and len(set(ours)) >= 2  # not greedy search's
    assert SherpaStreamer(out, tail_ms=0, beam=4)(audio)[0] == ours
    with pytest.raises(ValueError, match="beam search is for a transducer"):
        SherpaStreamer(export_wenet_ctc(tmp_path / "export", tmp_path / "sherpa_ctc"), beam=4)


def test_the_transducer_export_refuses_what_sherpa_onnx_cannot_run(tmp_path):
    from k2d.streaming.onnx import export_conformer_transducer
    from k2d.streaming.task import export

    for name, model_conf, message in [("ctc", {}, "is a CTC model"),
                                      ("lstm", {"head": "transducer", "prediction_size": 8, "joint_size": 12},
                                       "LSTM prediction network")]:
        config = kaldi_fbank(task_config(4, **model_conf))
        config["streaming_encoder_conf"]["left_chunks"] = 2
        model, config_path = build(tmp_path, name, config)
        torch.save(model.state_dict(), tmp_path / f"{name}.pth")
        export(config_path, tmp_path / f"{name}.pth", tmp_path / name)
        with pytest.raises(ValueError, match=message):
            export_conformer_transducer(tmp_path / name, tmp_path / f"{name}_sherpa")
        assert not (tmp_path / f"{name}_sherpa").exists()


def test_sherpa_onnx_decodes_a_briefly_trained_student_as_k2d_does(tmp_path):
    """The same on a model trained (40 Adam steps, CTC) to say a sentence in the audio, as a trained student would."""
    from k2d.streaming.onnx import export_wenet_ctc
    from k2d.streaming.stream import stream
    from k2d.streaming.task import export

    config = kaldi_fbank(task_config(4))
    config["frontend_conf"]["n_mels"] = 80
    config["streaming_encoder_conf"]["left_chunks"] = 2
    model, config_path = build(tmp_path, "student", config)
    audio = np.random.default_rng(5).standard_normal(160 * (16 * 25 + 4)).astype(np.float32) * 0.1
    speech, text = torch.from_numpy(audio)[None], torch.tensor([[2, 3, 4, 5, 6, 4, 3, 2, 5, 6, 2, 4]])
    optimizer, losses = torch.optim.Adam(model.parameters(), lr=3e-3), []
    model.train()
    for _ in range(40):
        loss = model(speech, torch.tensor([audio.size]), text, torch.tensor([text.shape[1]]))[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2  # it learnt
    torch.save(model.eval().state_dict(), tmp_path / "valid.loss.best.pth")
    export(config_path, tmp_path / "valid.loss.best.pth", tmp_path / "export")
    out = export_wenet_ctc(tmp_path / "export", tmp_path / "sherpa", int8=True)
    ours, _ = stream(model, audio, 160)
    assert len(set(ours)) >= 3 and set(ours) <= {2, 3, 4, 5, 6}  # words of its sentence
    assert sherpa_tokens(out, audio) == ours
    assert kaldialign.edit_distance(ours, sherpa_tokens(out, audio, int8=True))["err_rate"] < 0.5


def test_sherpa_onnx_export_refuses_what_it_cannot_run(tmp_path):
    from k2d.streaming.onnx import export_wenet_ctc
    from k2d.streaming.task import export

    for name, config, message in [
        ("logmel", task_config(4), "frontend: kaldi_fbank"),
        ("unbounded", kaldi_fbank(task_config(4)), "give --left-chunks"),
        ("full", kaldi_fbank(task_config(0)), "full-context"),
    ]:
        model, config_path = build(tmp_path, name, config)
        torch.save(model.state_dict(), tmp_path / f"{name}.pth")
        export(config_path, tmp_path / f"{name}.pth", tmp_path / name)
        with pytest.raises(ValueError, match=message):
            export_wenet_ctc(tmp_path / name, tmp_path / f"{name}_sherpa")
        assert not (tmp_path / f"{name}_sherpa").exists()


def test_exportable_heads():
    from k2d.streaming.onnx import exportable_heads

    assert exportable_heads({"head": "ctc"}) == ["ctc"]
    assert exportable_heads({"head": "transducer", "prediction": "lstm"}) == ["ctc"]
    assert exportable_heads({"head": "transducer", "prediction": "stateless"}) == ["ctc", "transducer"]


def test_deployment_table_by_hand(tmp_path):
    from k2d.streaming.latency import deployment_table

    for suffix, rate, rtf, mb, hyps in [("ctc", 0.25, 0.02, None, "u1 a b\nu2 c\n"),
                                        ("sherpa", 0.3, 0.01, 6.4, "u1 a b\nu2 d\n"),
                                        ("sherpa_int8", 0.35, 0.008, 2.2, "u1 a\nu2 d\n"),
                                        ("max1", 0.2, 0.03, None, "u1 a\nu2 c\n"),
                                        ("sherpa_rnnt", 0.2, 0.015, 7.0, "u1 a\nu2 c\n")]:
        out = tmp_path / "asr_alone" / f"decode_test_in_{suffix}"
        out.mkdir(parents=True)
        (out / "scores.yaml").write_text(yaml.safe_dump({"mer": {"rate": rate}}))
        (out / "latency.yaml").write_text(yaml.safe_dump({"rtf": rtf, **({"model_mb": mb} if mb else {})}))
        (out / "hyp.txt").write_text(hyps)
    table = deployment_table(tmp_path, ["alone", "token"], ["test_in", "test_ood"])
    # one row: the only student, head and set with all three decodings (the transducer has no int8 decoding);
    # u1 has k2d's text in sherpa-onnx, u2 not
    assert table.splitlines()[2:] == ["| alone | CTC | test_in | 25.00 | 30.00 | 1 of 2 | 35.00 | 6.4 / 2.2 | "
                                      "0.020 / 0.010 / 0.008 |"]
