"""Stage 5 through ESPnet's own trainer (`trainer: espnet` in distill.yaml): the kept chunks as ESPnet data
directories, an ESPnet config from k2d's distillation config, `python -m k2d.espnet.asr_kd`, and the best
checkpoint back as a Hugging Face directory (OUT_DIR/best/), so stages 6 and 7 see what k2d's trainer makes.

The mapping: AdamW (lr, weight decay), warm-up then constant (ESPnet's warmupsteplr with gamma 1),
`batch_bins` = max_duration seconds of audio (numel batches), accum_grad, grad_clip, an epoch of
valid_every steps (validation and checkpoints each epoch, the best by validation accuracy), seed and
workers as given. ESPnet resumes from its checkpoint.pth when run again.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import yaml

from k2d.config import ConfigError

log = logging.getLogger(__name__)


def espnet_config(config, teacher: str, window: float, n_mels: int, ngpu: int) -> dict:
    """ESPnet's training options for k2d's DistillConfig."""
    if config.schedule != "constant":
        raise ConfigError("trainer espnet: only schedule constant (warm-up, then a constant rate) has an ESPnet "
                          "equivalent here")
    epochs = max(1, -(-config.max_steps // config.valid_every))
    return {
        "model": "whisper_kd",
        "model_conf": {"teacher": teacher, "decoder_layers": list(config.decoder_layers), "beta": config.beta,
                       "gamma": config.gamma, "temperature": config.temperature,
                       "freeze_decoder_positions": config.freeze_decoder_positions,
                       "mix_lang_emb": config.mix_lang_emb},
        "frontend": "whisper_logmel",
        "frontend_conf": {"n_mels": n_mels, "window_seconds": int(round(window))},
        "language": config.language, "timestamp_prob": config.timestamp_prob, "prompt_prob": config.prompt_prob,
        "window_seconds": window, "token_type": "whisper_hf",
        "optim": "adamw", "optim_conf": {"lr": config.learning_rate, "weight_decay": config.weight_decay},
        "scheduler": "warmupsteplr",
        "scheduler_conf": {"warmup_steps": max(1, config.warmup_steps), "steps_per_epoch": config.valid_every,
                           "step_size": 1, "gamma": 1.0},
        "batch_type": "numel", "batch_bins": int(config.max_duration * 16000),
        "accum_grad": config.grad_accum, "grad_clip": config.clip_grad_norm or -1,
        "max_epoch": epochs, "num_iters_per_epoch": config.valid_every,
        "best_model_criterion": [["valid", "acc", "max"]], "keep_nbest_models": 1,
        "seed": config.seed, "num_workers": config.num_workers, "ngpu": ngpu,
    }


def train_with_espnet(config, teacher: str, train_cuts, valid_cuts, out_dir: Path, device: str) -> dict:
    """Train the student with ESPnet; returns what summary.yaml records of the run."""
    from transformers import WhisperConfig

    from k2d.espnet.data_dir import write_data_dir
    from k2d.espnet.to_hf import espnet_to_hf
    from k2d.models.names import resolve_model
    from k2d.models.tokenizer import window_seconds

    teacher_config = WhisperConfig.from_pretrained(resolve_model(teacher))
    window = window_seconds(teacher_config.max_source_positions)
    data = out_dir / "espnet_data"
    for name, cuts in (("train", train_cuts), ("valid", valid_cuts)):
        if write_data_dir(cuts, data / name, dump_audio=True) == 0:
            raise RuntimeError(f"no {name} chunks for ESPnet (valid_percent {config.valid_percent})")
    options = espnet_config(config, teacher, window, teacher_config.num_mel_bins, 1 if device.startswith("cuda") else 0)
    config_path = out_dir / "espnet_kd.yaml"
    config_path.write_text(yaml.safe_dump(options, sort_keys=False), encoding="utf-8")
    command = [sys.executable, "-m", "k2d.espnet.asr_kd", "--config", str(config_path),
               "--output_dir", str(out_dir / "espnet"), "--resume", "true"]
    for name in ("train", "valid"):
        command += [f"--{name}_data_path_and_name_and_type", f"{data / name / 'wav.scp'},speech,sound",
                    f"--{name}_data_path_and_name_and_type", f"{data / name / 'text_ts'},text,text",
                    f"--{name}_data_path_and_name_and_type", f"{data / name / 'prompt'},prompt,text",
                    f"--{name}_shape_file", str(data / name / "speech_shape")]
    log.info("ESPnet trains the student: %s", " ".join(command))
    subprocess.run(command, check=True)
    best = out_dir / "espnet" / "valid.acc.best.pth"
    espnet_to_hf(out_dir / "espnet" / "config.yaml", best, out_dir / "best")
    return {"trainer": "espnet", "espnet_dir": str(out_dir / "espnet"), "best_checkpoint": str(best.resolve()),
            "steps": options["max_epoch"] * options["num_iters_per_epoch"]}
