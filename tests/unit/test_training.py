"""Student creation and the training loop's exact resume (the 2-process DDP step: tests/integration)."""

import copy
import json

import pytest
import torch
from lhotse import CutSet

from k2d.models.student import create_student, resolve_layers
from k2d.train.data import Collator, CutDataset, LabelOptions
from k2d.train.model import WhisperKDModel
from k2d.train.trainer import TrainConfig, autocast_dtype
from k2d.utils import cpu_supports_bf16
from tests.helpers import make_trainer


def test_resolve_layers():
    assert resolve_layers([0, -1], 32) == [0, 31]
    for bad in ([0, 0], [32], [], [-33]):
        with pytest.raises(ValueError):
            resolve_layers(bad, 32)


def test_student_copies_encoder_and_chosen_decoder_layers(tiny_whisper):
    teacher, _ = tiny_whisper
    student = create_student(teacher, [0, -1])
    assert student.config.decoder_layers == 2
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key in t_state:
        if key.startswith("model.encoder."):
            assert torch.equal(s_state[key], t_state[key])
    for student_layer, teacher_layer in ((0, 0), (1, 3)):
        prefix_s, prefix_t = f"model.decoder.layers.{student_layer}.", f"model.decoder.layers.{teacher_layer}."
        for key in (k for k in t_state if k.startswith(prefix_t)):
            assert torch.equal(s_state[prefix_s + key[len(prefix_t):]], t_state[key])
    assert torch.equal(s_state["model.decoder.embed_tokens.weight"], t_state["model.decoder.embed_tokens.weight"])
    assert student.proj_out.weight.data_ptr() == student.model.decoder.embed_tokens.weight.data_ptr()  # tied
    assert not any(p.requires_grad for p in student.model.encoder.parameters())
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_student_freezes_decoder_positions_and_gets_its_own_alignment_heads(tiny_whisper, monkeypatch):
    teacher, _ = tiny_whisper
    monkeypatch.setattr(teacher.generation_config, "alignment_heads", [[3, 1]], raising=False)  # layer 3 of 4
    student = create_student(teacher, [0, -1])
    decoder = student.model.decoder
    assert not decoder.embed_positions.weight.requires_grad  # as the K2D authors trained
    assert decoder.embed_tokens.weight.requires_grad and decoder.layers[0].fc1.weight.requires_grad
    # 2 decoder layers of 2 heads: openai's default is every head of the upper half, layer 1
    assert student.generation_config.alignment_heads == [[1, 0], [1, 1]]
    assert teacher.generation_config.alignment_heads == [[3, 1]]
    unfrozen = create_student(teacher, [0, -1], freeze_decoder_positions=False)
    assert unfrozen.model.decoder.embed_positions.weight.requires_grad


def test_frozen_encoder_is_unchanged_and_shared(tiny_whisper, tiny_cuts, tmp_path):
    trainer = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=2)
    assert trainer.model.share_encoder
    encoder_before = copy.deepcopy(trainer.model.student.model.encoder.state_dict())
    decoder_before = copy.deepcopy(trainer.model.student.model.decoder.state_dict())
    trainer.fit()
    encoder_after = trainer.model.student.model.encoder.state_dict()
    assert all(torch.equal(encoder_before[k], encoder_after[k]) for k in encoder_before)
    decoder_after = trainer.model.student.model.decoder.state_dict()
    assert any(not torch.equal(decoder_before[k], decoder_after[k]) for k in decoder_before)


class Killed(Exception):
    pass


def test_resume_after_kill_matches_uninterrupted_run(tiny_whisper, tiny_cuts, tmp_path):
    # 4 cuts of 2 s per 4 s batch -> 4 batches per epoch: 6 steps cross an epoch boundary
    straight = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "straight", max_steps=6)
    straight.fit()

    def kill_at_step_5(state):
        if state.step == 5:  # checkpoints exist for step 3 only: steps 4-5 are lost and redone
            raise Killed()

    interrupted = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "resumed", max_steps=6, callbacks=[kill_at_step_5])
    with pytest.raises(Killed):
        interrupted.fit()
    resumed = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "resumed", max_steps=6)
    state = resumed.fit()
    assert state.step == 6
    a, b = straight.model.student.state_dict(), resumed.model.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def fixed_batch(tiny_whisper, tiny_cuts):
    _, processor = tiny_whisper
    tokenizer = processor.tokenizer
    dataset = CutDataset(tokenizer, Collator(processor.feature_extractor, tokenizer.eos_token_id),
                         LabelOptions(window=10.0))
    return dataset[CutSet.from_file(tiny_cuts).subset(first=4)]


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16")
def test_bf16_autocast_step_matches_fp32(tiny_whisper, tiny_cuts):
    teacher, _ = tiny_whisper
    batch = fixed_batch(tiny_whisper, tiny_cuts)
    model = WhisperKDModel(create_student(teacher, [0, -1]), teacher)
    fp32, _, _ = model(batch=batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16, _, _ = model(batch=batch)
    assert torch.isfinite(bf16)
    # bfloat16 keeps 8 bits of mantissa: about 0.4% relative error per product, not a different loss
    assert float(bf16.detach()) == pytest.approx(float(fp32.detach()), rel=0.02)
    assert bf16.dtype == torch.float32  # the losses are computed in float32 from bfloat16 logits


def test_trainer_autocasts_on_cpu_only_when_asked_and_supported():
    cpu = torch.device("cpu")
    assert autocast_dtype(TrainConfig(), cpu) is None  # the default stays float32 on CPU
    expected = torch.bfloat16 if cpu_supports_bf16() else None
    assert autocast_dtype(TrainConfig(cpu_amp=True), cpu) == expected
    assert autocast_dtype(TrainConfig(cpu_amp=True, amp_dtype="float16"), cpu) is None  # no fp16 on CPU


def test_frozen_token_embedding_stays_the_teachers_and_the_rest_learns(tiny_whisper, tiny_cuts, tmp_path):
    teacher, processor = tiny_whisper
    student = create_student(teacher, [0, -1], freeze_token_embedding=True)
    assert not student.model.decoder.embed_tokens.weight.requires_grad
    assert not student.proj_out.weight.requires_grad  # tied: the same matrix
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    unfrozen = sum(p.numel() for p in create_student(teacher, [0, -1]).parameters() if p.requires_grad)
    assert unfrozen - trainable == student.model.decoder.embed_tokens.weight.numel()
    before = copy.deepcopy(student.state_dict())
    batch = fixed_batch(tiny_whisper, tiny_cuts)
    model = WhisperKDModel(student, teacher)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss, _, _ = model(batch=batch)
    loss.backward()
    optimizer.step()
    after = student.state_dict()
    assert torch.equal(before["model.decoder.embed_tokens.weight"], after["model.decoder.embed_tokens.weight"])
    assert not torch.equal(before["model.decoder.layers.0.fc1.weight"], after["model.decoder.layers.0.fc1.weight"])


def test_best_checkpoint_is_the_lowest_validation_mer_and_patience_stops(tiny_whisper, tiny_cuts, tmp_path):
    # validations at steps 1..6 return these MERs: best at step 2 (0.3); steps 3 and 4 do not improve, so with
    # patience 2 training stops after step 4's validation, having run 4 of its 10 steps
    mers = iter([0.5, 0.3, 0.4, 0.35, 0.1, 0.1])
    saved = []
    trainer = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=10,
                           validate=lambda student: {"mer": next(mers), "loop_events": 0.0})
    trainer.config.valid_every, trainer.config.patience = 1, 2
    trainer.save_best = lambda student, out: saved.append(trainer.state.step)
    state = trainer.fit()
    assert (state.step, state.best_step, state.best_mer, state.plateaued) == (4, 2, 0.3, True)
    assert saved == [1, 2]
    curve = [json.loads(line) for line in (tmp_path / "run" / "validation.jsonl").read_text().splitlines()]
    assert [(r["step"], r["mer"]) for r in curve] == [(1, 0.5), (2, 0.3), (3, 0.4), (4, 0.35)]
    # a rerun of a finished (plateaued) run with the same settings trains no further
    again = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=10, validate=lambda s: {"mer": 0.0})
    again.config.valid_every, again.config.patience = 1, 2
    assert again.fit().step == 4
    # resumed with patience 4 it goes on: steps 5 and 6 are the 3rd and 4th validations without a better MER
    more = iter([0.45, 0.46])
    patient = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=10,
                           validate=lambda student: {"mer": next(more), "loop_events": 0.0})
    patient.config.valid_every, patient.config.patience = 1, 4
    state = patient.fit()
    assert (state.step, state.best_step, state.plateaued) == (6, 2, True)


def test_no_early_stopping_before_min_steps(tiny_whisper, tiny_cuts, tmp_path):
    # best at step 2; with patience 2 the plateau is reached at step 4, but min_steps 6 keeps training until
    # step 6 (4 validations without a better MER by then)
    mers = iter([0.5, 0.3, 0.4, 0.35, 0.36, 0.37, 0.38])
    trainer = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=10,
                           validate=lambda student: {"mer": next(mers), "loop_events": 0.0})
    trainer.config.valid_every, trainer.config.patience, trainer.config.min_steps = 1, 2, 6
    state = trainer.fit()
    assert (state.step, state.best_step, state.best_mer, state.plateaued) == (6, 2, 0.3, True)


def test_sigterm_checkpoints_the_step_and_the_rerun_resumes_exactly(tiny_whisper, tiny_cuts, tmp_path):
    # Slurm's preemption or time limit, or k2d.launch passing on a SIGTERM: no step of work is lost
    import os
    import signal

    from k2d.train.trainer import Stopped

    straight = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "straight", max_steps=6)
    straight.fit()

    def sigterm_at_step_4(state):
        if state.step == 4:  # checkpoints every 3 steps: without the signal's checkpoint, step 4 would be redone
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=6, callbacks=[sigterm_at_step_4])
    with pytest.raises(Stopped):
        stopped.fit()
    assert torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)["state"]["step"] == 4
    resumed = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=6)
    assert resumed.fit().step == 6
    a, b = straight.model.student.state_dict(), resumed.model.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stopped_run_leaves_no_loader_worker_behind(tiny_whisper, tiny_cuts, tmp_path):
    # the worker ignores SIGTERM; left running after Stopped, multiprocessing's exit handler waited for it
    # forever (a bootstrap run stopped by pkill hung at exit until its worker was killed by hand)
    import multiprocessing
    import os
    import signal

    from k2d.train.trainer import Stopped

    def sigterm_at_step_1(state):
        os.kill(os.getpid(), signal.SIGTERM)

    trainer = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=4, callbacks=[sigterm_at_step_1])
    trainer.config.num_workers = 1
    with pytest.raises(Stopped) as stopped:
        trainer.fit()
    assert stopped.value.signum == signal.SIGTERM
    assert multiprocessing.active_children() == []


def test_data_loader_workers_leave_sigterm_to_the_training_process():
    # pkill and Slurm signal every process: a worker that died of SIGTERM took the training process down with
    # it ("DataLoader worker ... is killed by signal: Terminated") before the step could be checkpointed
    import multiprocessing
    import signal

    from k2d.train.trainer import _ignore_sigterm

    def worker(queue):
        _ignore_sigterm(0)
        queue.put(signal.getsignal(signal.SIGTERM))

    queue = multiprocessing.get_context("fork").Queue()
    process = multiprocessing.get_context("fork").Process(target=worker, args=(queue,))
    process.start()
    assert queue.get(timeout=30) == signal.SIG_IGN
    process.join(timeout=30)


def test_training_with_a_loader_worker_process(tiny_whisper, tiny_cuts, tmp_path):
    trainer = make_trainer(tiny_whisper, tiny_cuts, tmp_path / "run", max_steps=2)
    trainer.config.num_workers = 1  # the worker runs _ignore_sigterm at start
    assert trainer.fit().step == 2


def test_loss_from_logits_at_loss_tokens_only_equals_the_full_logits_loss(tiny_whisper, tiny_cuts):
    """The output layer runs only where a loss is taken; the loss is the one of the whole (B, L, V) logits."""
    teacher, _ = tiny_whisper
    batch = fixed_batch(tiny_whisper, tiny_cuts)
    assert (batch.targets == -100).any()  # prefix and padding positions exist, so something is left out
    student = create_student(teacher, [0, -1])
    model = WhisperKDModel(student, teacher, beta=0.8, gamma=1.0, temperature=2.0)
    loss, stats, weight = model(batch=batch)
    with torch.no_grad():
        encoded = student.get_encoder()(batch.features).last_hidden_state
        full = student(encoder_outputs=(encoded,), decoder_input_ids=batch.input_ids).logits
        reference = teacher(encoder_outputs=(encoded,), decoder_input_ids=batch.input_ids).logits
    keep = batch.targets != -100
    ce = torch.nn.functional.cross_entropy(full.transpose(1, 2), batch.targets, ignore_index=-100)
    student_lp = torch.log_softmax(full[keep] / 2.0, -1)
    teacher_lp = torch.log_softmax(reference[keep] / 2.0, -1)
    kl = (teacher_lp.exp() * (teacher_lp - student_lp)).sum(-1).mean() * 4.0
    assert float(stats["ce"]) == pytest.approx(float(ce), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(0.8 * ce + kl), rel=1e-5)
    assert int(weight) == int(keep.sum())


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16")
def test_frozen_output_projection_is_cast_once_and_again_when_it_changes(tiny_whisper, tiny_cuts):
    teacher, _ = tiny_whisper
    batch = fixed_batch(tiny_whisper, tiny_cuts)
    student = create_student(teacher, [0, -1], freeze_token_embedding=True)
    model = WhisperKDModel(student, teacher)
    fp32, _, _ = model(batch=batch)
    assert model._frozen_projection is None  # no autocast: the weight itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first, _, _ = model(batch=batch)
        copy_made = model._frozen_projection[1]
        second, _, _ = model(batch=batch)
    assert model._frozen_projection[1] is copy_made  # made once, not at every step
    assert copy_made.dtype == torch.bfloat16
    assert float(first) == pytest.approx(float(fp32), rel=0.02) and float(second) == float(first)
    with torch.no_grad():  # a checkpoint loaded in place changes the weight: the copy follows
        student.proj_out.weight.mul_(2.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(batch=batch)
    assert torch.equal(model._frozen_projection[1], student.proj_out.weight.detach().to(torch.bfloat16))


def test_train_table_gives_each_modes_median_its_range_and_speed_up_vs_the_first():
    from k2d.bench.training import train_table

    def run(seconds):
        return {"step_seconds": seconds, "peak_bytes": 2**30, "memory": "process peak RSS"}

    runs = {"a": [run(1.2), run(1.0), run(1.1)], "b": [run(0.5), run(0.3), run(0.4)]}
    table = train_table(runs, {"a": "before", "b": "after"}, "header", topk=64)
    # medians 1.1 s and 0.4 s: 3273 and 9000 steps per hour, 1.1 / 0.4 = 2.75x
    assert "| before | 1.100 s | 1.000-1.200 s | 3273 | 1.00x | 1024 MiB |" in table
    assert "| after | 0.400 s | 0.300-0.500 s | 9000 | 2.75x | 1024 MiB |" in table
    assert table.startswith("header (process peak RSS; cached top-k: k = 64)")
