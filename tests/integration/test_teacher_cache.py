"""The teacher cache (k2d.cache_teacher): training from stored teacher outputs gives the loss and the
checkpoint of training with the teacher run every step, within float16 rounding; the cache resumes after a
kill and is refused where it would not be exact."""

import pytest
import torch
from lhotse import CutSet

from k2d import cache_teacher, distill
from k2d.cuts import ChunkFields, cached_encoder_states
from k2d.models.student import create_student
from k2d.models.whisper import save_model_dir
from k2d.train.data import Collator, CutDataset, LabelOptions, make_sampler
from k2d.train.model import WhisperKDModel
from k2d.train.trainer import TrainConfig, Trainer
from tests.helpers import write_tiny_cuts


@pytest.fixture
def validated(tmp_path):
    """Six 2 s chunks as stage 3 leaves them; the fourth is one no metric keeps (composite 0.9)."""
    cuts = list(CutSet.from_file(write_tiny_cuts(tmp_path / "audio", count=6)))
    previous = None
    for i, cut in enumerate(cuts):
        text = cut.supervisions[0].text
        distance = 0.9 if i == 3 else 0.1
        distances = {"mer": distance, "per": distance, "teacher_loops": False, "validator_loops": False,
                     "composite": distance}
        cut.custom = ChunkFields(text, False, cut.duration, previous, validator_text="x",
                                 distances=distances).to_custom()
        previous = text
    path = tmp_path / "validated.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_whisper):
    path = tmp_path_factory.mktemp("teacher") / "tiny"
    save_model_dir(*tiny_whisper, path)
    return path


def run_cache(teacher_dir, validated, output, *extra):
    """Cache the chunks a stage-4 filter kept: all but the fourth (composite distance 0.9)."""
    kept = output.parent / f"kept_{output.name}"
    CutSet.from_file(validated).filter(lambda c: c.custom["distances"]["composite"] < 0.5).to_file(kept)
    return cache_teacher.main(["--teacher", str(teacher_dir), "--cuts", str(validated), "--kept", str(kept),
                               "--output", str(output), "--cache-batch-size", "2", "--cache-block-size", "2", *extra])


def batches(processor, cuts, options):
    dataset = CutDataset(processor.tokenizer, Collator(processor.feature_extractor, processor.tokenizer.eos_token_id),
                         options)
    sampler = make_sampler(cuts, max_duration=4.0, num_buckets=1, seed=0, shuffle=False)
    sampler.set_epoch(0)
    return [dataset[c] for c in sampler]


def test_cached_training_matches_the_teacher_run_every_step(tiny_whisper, teacher_dir, validated, tmp_path):
    teacher, processor = tiny_whisper
    vocab = len(processor.tokenizer)
    output = tmp_path / "cached.jsonl.gz"
    assert run_cache(teacher_dir, validated, output, "--cache-topk", str(vocab)) == 0  # every token: exact KL
    cached_cuts = CutSet.from_file(output)
    assert len(cached_cuts) == 5  # the chunk stage 4 kept for no student is not cached
    first = next(iter(cached_cuts))
    assert cached_encoder_states(first).shape == (500, teacher.config.d_model)
    assert first.custom["teacher_cache"]["topk"] == vocab

    CutSet.from_file(validated).subset(cut_ids=list(cached_cuts.ids)).to_file(tmp_path / "plain.jsonl.gz")
    plain_cuts = CutSet.from_file(tmp_path / "plain.jsonl.gz")  # read back as the cached cuts are: same shuffle
    options = LabelOptions(window=10.0, timestamp_prob=0.5, prompt_prob=0.5, seed=4)
    plain, cached = batches(processor, plain_cuts, options), batches(processor, cached_cuts, options)
    assert cached[0].features is None and cached[0].encoder_states is not None
    assert cached[0].teacher_logprobs.shape[-1] == vocab
    torch.manual_seed(0)
    student = create_student(teacher, [0, -1])
    with torch.no_grad():
        for a, b in zip(plain, cached, strict=True):
            assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.targets, b.targets)
            loss_a, stats_a, _ = WhisperKDModel(student, teacher).eval()(batch=a)
            loss_b, stats_b, _ = WhisperKDModel(student, None).eval()(batch=b)  # no teacher at all
            assert loss_b.item() == pytest.approx(loss_a.item(), rel=2e-3)
            assert stats_b["kl"].item() == pytest.approx(stats_a["kl"].item(), rel=5e-3, abs=1e-3)

    def train(cuts, with_teacher):
        torch.manual_seed(0)
        model = WhisperKDModel(create_student(teacher, [0, -1]), teacher if with_teacher else None)
        sampler = make_sampler(cuts, max_duration=4.0, num_buckets=1, seed=1)
        dataset = CutDataset(processor.tokenizer,
                             Collator(processor.feature_extractor, processor.tokenizer.eos_token_id), options)
        config = TrainConfig(learning_rate=1e-3, warmup_steps=1, max_steps=3, num_workers=0, valid_every=100)
        Trainer(model, sampler, dataset, tmp_path / f"run_{with_teacher}", config, torch.device("cpu")).fit()
        return model.student.state_dict()

    initial = {k: v.clone() for k, v in create_student(teacher, [0, -1]).state_dict().items()}
    uncached, from_cache = train(plain_cuts, True), train(cached_cuts, False)
    # Adam moves every weight by about the learning rate per step, whatever the gradient's size, so rounding
    # can flip the few near-zero gradients: compare the runs' difference with the training's own change.
    changed = torch.cat([(uncached[k] - initial[k]).abs().flatten() for k in initial])
    differ = torch.cat([(uncached[k] - from_cache[k]).abs().flatten() for k in initial])
    assert float(differ.mean()) < 0.05 * float(changed.mean())


def test_cache_resumes_after_a_kill_and_refuses_an_unfrozen_encoder(teacher_dir, validated, tmp_path, monkeypatch):
    straight = tmp_path / "straight.jsonl.gz"
    assert run_cache(teacher_dir, validated, straight) == 0
    killed = tmp_path / "killed.jsonl.gz"
    real = cache_teacher.cache_block
    calls = []

    def dying(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt  # killed while writing the second block
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_teacher, "cache_block", dying)
    with pytest.raises(KeyboardInterrupt):
        run_cache(teacher_dir, validated, killed)
    monkeypatch.setattr(cache_teacher, "cache_block", real)
    assert run_cache(teacher_dir, validated, killed) == 0
    progress = tmp_path / ".progress" / "killed" / "shard-00000-of-00001.jsonl"
    assert len(progress.read_text().splitlines()) == 5  # each chunk cached once
    a, b = CutSet.from_file(straight), CutSet.from_file(killed)
    assert list(a.ids) == list(b.ids)
    for x, y in zip(a, b, strict=True):
        assert (cached_encoder_states(x) == cached_encoder_states(y)).all()
    with pytest.raises(SystemExit):
        run_cache(teacher_dir, validated, tmp_path / "no.jsonl.gz", "--freeze-encoder", "false")


def test_distill_joins_kept_chunks_with_the_cache(teacher_dir, validated, tmp_path):
    cached = tmp_path / "cached.jsonl.gz"
    assert run_cache(teacher_dir, validated, cached) == 0
    kept = tmp_path / "kept.jsonl.gz"
    CutSet.from_file(validated).subset(first=2).to_file(kept)
    plain = {"whole_window": False, "pause_open": 0.0}
    assert distill.attach_cache(kept, cached, tmp_path / "joined.jsonl.gz", plain) == 2
    everything = tmp_path / "all.jsonl.gz"
    CutSet.from_file(validated).to_file(everything)  # holds the uncached chunk
    with pytest.raises(RuntimeError, match="no cached teacher outputs"):
        distill.attach_cache(everything, cached, tmp_path / "joined2.jsonl.gz", plain)
    with pytest.raises(RuntimeError, match="cached for training windows"):
        distill.attach_cache(kept, cached, tmp_path / "joined3.jsonl.gz", {"whole_window": True, "pause_open": 0.0})


def test_windows_opened_at_the_pause_are_cached_again_and_only_they(teacher_dir, validated, tmp_path):
    """Chunks 0.2-1.8 s of 2 s recordings (speech 0.2-1.8 s, 0.2 s of pause before): with pause_open 1 each
    window opens 0.2 s earlier, at 0 s, which reads other audio: those chunks are cached again, and going
    back to pause_open 0 finds everything done."""
    from lhotse.utils import fastcopy

    chunks = []
    for cut in CutSet.from_file(validated):
        supervision = fastcopy(cut.supervisions[0], start=0.0)
        custom = {**cut.custom, "complete_end": 1.6, "window_end": 1.8, "pause_before": 0.2}
        chunks.append(fastcopy(cut, start=0.2, duration=1.6, supervisions=[supervision], custom=custom))
    path = tmp_path / "chunks.jsonl.gz"
    CutSet.from_cuts(chunks).to_file(path)
    output = tmp_path / "cached.jsonl.gz"
    progress = tmp_path / ".progress" / "cached" / "shard-00000-of-00001.jsonl"
    assert run_cache(teacher_dir, path, output, "--whole-window", "true") == 0
    at_start = [cached_encoder_states(c) for c in CutSet.from_file(output)]
    assert len(progress.read_text().splitlines()) == 5
    assert run_cache(teacher_dir, path, output, "--whole-window", "true", "--pause-open", "1.0") == 0
    assert len(progress.read_text().splitlines()) == 10  # five windows, opened 0.2 s earlier
    opened = list(CutSet.from_file(output))
    assert opened[0].custom["teacher_cache"]["pause_open"] == 1.0
    assert not (cached_encoder_states(opened[0]) == at_start[0]).all()
    assert run_cache(teacher_dir, path, output, "--whole-window", "true") == 0
    assert len(progress.read_text().splitlines()) == 10  # nothing computed again
    assert all((cached_encoder_states(c) == s).all() for c, s in zip(CutSet.from_file(output), at_start, strict=True))
