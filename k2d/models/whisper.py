"""Loading Whisper models (teacher, validator, student) and the code-switching generation settings.

A model is a Hugging Face id (`openai/whisper-large-v2`), a local directory written by `save_pretrained`,
or the name of a model install.sh put in $K2D_MODELS (`whisper-base`); the demo's own models load through
exactly the same path as real Whisper checkpoints.

    model, processor = load_whisper("openai/whisper-base", device="cuda", dtype="float16")
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

from k2d.models.names import resolve_model
from k2d.models.tokenizer import (
    ENCODER_POSITIONS_PER_SECOND,
    TIME_PRECISION,
    WHISPER_LANGUAGES,
    check_whisper_tokenizer,
    window_seconds,
)

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_device_argument(parser) -> None:
    """The one --device option of every CLI that runs a model."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} asked for, but no CUDA device is available")
    return torch.device(device)


def load_whisper(
    name_or_path: str | Path, device: str = "cpu", dtype: str = "float32", mix_lang_emb: bool = False
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Load a Whisper model and its processor, failing clearly when they cannot be found.

    `mix_lang_emb` applies the K2D authors' code-switching embedding (see apply_mix_lang_emb) unless the
    checkpoint already carries it (a student distilled from a mixed teacher)."""
    source = resolve_model(str(name_or_path))
    if dtype != "float32" and resolve_device(device).type == "cpu":
        log.warning("%s on CPU: using float32 instead (half precision is for GPUs)", dtype)
        dtype = "float32"
    is_local = Path(source).exists()
    if not is_local and source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model directory {source} does not exist")
    if is_local:
        check_model_files(Path(source))
    try:
        processor = WhisperProcessor.from_pretrained(source)
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=DTYPES[dtype])
    except OSError as error:
        hint = "" if is_local else " (offline: download it first, or give a local directory written by save_pretrained)"
        raise RuntimeError(f"cannot load Whisper model {source}{hint}: {error}") from None
    except (RuntimeError, ValueError) as error:
        mismatch = shape_mismatch(Path(source)) if is_local else None
        raise RuntimeError(f"cannot load Whisper model {source}: "
                           f"{mismatch or str(error).splitlines()[-1]}") from None
    check_whisper_tokenizer(processor.tokenizer, f"model {source}")
    complete_generation_config(model.generation_config, processor.tokenizer, model.config)
    if mix_lang_emb:
        apply_mix_lang_emb(model, processor.tokenizer)
    model.to(resolve_device(device)).eval()
    return model, processor


def check_model_files(model_dir: Path) -> None:
    """Raise RuntimeError naming the file when a model directory lacks config.json or holds weights that
    cannot be read (corrupt, truncated or empty safetensors), before transformers fails without a name."""
    from safetensors import SafetensorError, safe_open

    if not model_dir.is_dir():
        raise RuntimeError(f"model {model_dir} is not a directory (a model is a directory written by save_pretrained)")
    if not (model_dir / "config.json").is_file():
        raise RuntimeError(f"{model_dir / 'config.json'} is missing: a model directory needs the config.json "
                           "save_pretrained writes beside the weights")
    for weights in sorted(model_dir.glob("*.safetensors")):
        try:
            with safe_open(weights, "pt") as reader:
                reader.keys()
        except (SafetensorError, OSError) as error:
            raise RuntimeError(f"{weights} cannot be read ({error}): the file is corrupt, truncated or empty; "
                               "copy or export the model again") from None


def shape_mismatch(model_dir: Path) -> str | None:
    """The first weight whose shape in model.safetensors differs from what config.json describes, said in
    words (a config.json edited by hand, or taken from another model)."""
    import json

    from safetensors import safe_open
    from transformers import WhisperConfig

    weights = model_dir / "model.safetensors"
    try:
        config = WhisperConfig.from_pretrained(model_dir)
    except (OSError, ValueError, json.JSONDecodeError) as error:
        return f"{model_dir / 'config.json'} cannot be read: {error}"
    if not weights.is_file():
        return None
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in WhisperForConditionalGeneration(config).state_dict().items()}
    with safe_open(str(weights), framework="pt") as stored:
        for name in stored.keys():
            shape = tuple(stored.get_slice(name).get_shape())
            if name in expected and expected[name] != shape:
                return (f"{weights} holds {name} of shape {list(shape)}, but {model_dir / 'config.json'} describes "
                        f"{list(expected[name])}: the config does not belong to these weights")
    return None


def complete_generation_config(generation_config: GenerationConfig, tokenizer, model_config) -> GenerationConfig:
    """Fill the Whisper fields generate() needs, where a checkpoint lacks them (e.g. one built from scratch)."""
    ids = tokenizer.convert_tokens_to_ids
    defaults = {
        "decoder_start_token_id": ids("<|startoftranscript|>"),
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|endoftext|>"),
        "pad_token_id": ids("<|endoftext|>"),
        "no_timestamps_token_id": ids("<|notimestamps|>"),
        "prev_sot_token_id": ids("<|startofprev|>"),
        "lang_to_id": {f"<|{code}|>": ids(f"<|{code}|>") for code in WHISPER_LANGUAGES},
        "task_to_id": {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        "is_multilingual": True,
        "max_length": model_config.max_target_positions,
        "begin_suppress_tokens": [ids("Ġ"), ids("<|endoftext|>")],
        "suppress_tokens": [],
        # The first timestamp may fall anywhere in the window (Whisper's own checkpoints keep 50 = 1 s).
        "max_initial_timestamp_index": int(model_config.max_source_positions * 2 * 0.01 / TIME_PRECISION),
    }
    for key, value in defaults.items():
        if getattr(generation_config, key, None) is None:
            setattr(generation_config, key, value)
    generation_config.forced_decoder_ids = None
    # from_model_config marks a config that from_pretrained() then strips of the Whisper fields.
    generation_config._from_model_config = False
    return generation_config


def apply_mix_lang_emb(model: WhisperForConditionalGeneration, tokenizer) -> None:
    """K2D authors' option: the <|zh|> embedding becomes the mean of <|zh|> and <|en|> (code-switching prior).

    Applied once: the model's config records it (`k2d_mix_lang_emb`), and a model that carries it already
    (a saved student of a mixed teacher) is left as it is."""
    if getattr(model.config, MIXED_FLAG, False):
        return
    zh, en = tokenizer.convert_tokens_to_ids("<|zh|>"), tokenizer.convert_tokens_to_ids("<|en|>")
    embedding = model.get_decoder().embed_tokens.weight
    with torch.no_grad():
        embedding[zh] = 0.5 * (embedding[zh] + embedding[en])
    setattr(model.config, MIXED_FLAG, True)


MIXED_FLAG = "k2d_mix_lang_emb"


def shorten_window(model: WhisperForConditionalGeneration, processor: WhisperProcessor, seconds: float) -> None:
    """Give a Whisper model a shorter input window (e.g. 10 s for short synthetic speech): the encoder keeps
    its first position embeddings, and the config, the encoder and the feature extractor agree on the length.
    A 10 s window costs about a third of the encoder's 30 s compute."""
    from transformers import WhisperFeatureExtractor

    positions = int(round(seconds * ENCODER_POSITIONS_PER_SECOND))
    encoder = model.get_encoder()
    if positions > encoder.embed_positions.num_embeddings:
        longest = window_seconds(encoder.embed_positions.num_embeddings)
        raise ValueError(f"a {seconds} s window is longer than the model's {longest} s")
    table = encoder.embed_positions.weight.data[:positions].clone()
    encoder.embed_positions = torch.nn.Embedding(positions, table.shape[1]).to(table.device, table.dtype)
    encoder.embed_positions.weight.data.copy_(table)
    encoder.embed_positions.requires_grad_(False)
    encoder.max_source_positions = positions
    model.config.max_source_positions = positions
    extractor = processor.feature_extractor
    processor.feature_extractor = WhisperFeatureExtractor(feature_size=extractor.feature_size,
                                                          chunk_length=int(round(seconds)))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model_dir(model, processor, out_dir: Path, dtype: torch.dtype | None = None) -> None:
    """save_pretrained (model + processor) into a temporary directory, then swap it in, so an existing
    model directory is always complete. `dtype` converts the saved copy (e.g. float16 to ship small)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    original = model.dtype
    if dtype is not None:
        model.to(dtype)
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    finally:
        model.to(original)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
