"""Import a CTranslate2 Whisper model (a faster-whisper model directory) as a Hugging Face transformers model
directory: the exact inverse of k2d.export.

    python -m k2d.models.import_ct2 --model CT2_DIR --out HF_DIR [--dtype float16]

CT2_DIR holds model.bin (CTranslate2's binary format, version 6, a WhisperSpec), config.json and
tokenizer.json (preprocessor_config.json when the model has one, e.g. 128 mel bins for large-v3). HF_DIR
gets safetensors weights, the WhisperConfig, the tokenizer (with Whisper's 1,501 timestamp tokens, which
faster-whisper's tokenizer.json lacks), the feature extractor and a generation config derived from the
CTranslate2 config (suppressed tokens, language ids, alignment heads) and the tokenizer. CTranslate2 fuses
the attention projections (self-attention q/k/v, cross-attention k/v) and carries a key bias that
transformers' Whisper does not have: it is checked to be zero, then dropped. Quantised models (int8, int16)
cannot be imported: their float weights are gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import struct
import sys
from pathlib import Path

import numpy as np
import torch

from k2d.models.tokenizer import TIME_PRECISION, SpecialTokens, check_whisper_tokenizer, timestamp_tokens
from k2d.models.whisper import DTYPES, save_model_dir
from k2d.utils import setup_logging

log = logging.getLogger("k2d.models.import_ct2")

# CTranslate2's DataType enum (include/ctranslate2/types.h), in order
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
SUPPORTED_BINARY_VERSION = 6
# openai's decoding default: the first timestamp of a window is at most 1.0 s
MAX_INITIAL_TIMESTAMP_SECONDS = 1.0


class ImportError_(ValueError):
    """A CTranslate2 directory that cannot be imported; the message says why."""


def read_ct2_model(path: Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, variables, aliases) of a CTranslate2 model.bin."""
    with open(path, "rb") as f:
        def unpack(fmt: str):
            size = struct.calcsize(fmt)
            data = f.read(size)
            if len(data) != size:
                raise ImportError_(f"{path} is truncated")
            return struct.unpack(fmt, data)[0]

        def string() -> str:
            return f.read(unpack("H"))[:-1].decode("utf-8")

        version = unpack("I")
        if version != SUPPORTED_BINARY_VERSION:
            raise ImportError_(f"{path}: CTranslate2 binary version {version}; only {SUPPORTED_BINARY_VERSION} is read")
        spec = string()
        unpack("I")  # spec revision
        variables = {}
        for _ in range(unpack("I")):
            name = string()
            shape = [unpack("I") for _ in range(unpack("B"))]
            dtype_id = unpack("B")
            data = f.read(unpack("I"))
            dtype = CT2_DTYPES.get(dtype_id)
            if dtype is None:
                raise ImportError_(f"{path}: variable {name} has an unknown data type ({dtype_id})")
            if dtype == "bfloat16":
                array = torch.frombuffer(bytearray(data), dtype=torch.bfloat16).float().numpy()
            else:
                array = np.frombuffer(data, dtype=dtype)
            variables[name] = array.reshape(shape)
        aliases = {string(): string() for _ in range(unpack("I"))}
    return spec, variables, aliases


def layer_count(variables: dict, prefix: str) -> int:
    return len({m.group(1) for name in variables if (m := re.match(rf"{prefix}/layer_(\d+)/", name))})


def hf_state_dict(variables: dict[str, np.ndarray], encoder_layers: int, decoder_layers: int) -> dict:
    """transformers WhisperForConditionalGeneration tensors from CTranslate2's variables."""
    state: dict[str, torch.Tensor] = {}

    def put(hf_name: str, array: np.ndarray) -> None:
        state[hf_name] = torch.from_numpy(np.array(array, dtype=np.float32))

    def linear(hf: str, ct2: str) -> None:
        put(f"{hf}.weight", variables[f"{ct2}/weight"])
        put(f"{hf}.bias", variables[f"{ct2}/bias"])

    def norm(hf: str, ct2: str) -> None:
        put(f"{hf}.weight", variables[f"{ct2}/gamma"])
        put(f"{hf}.bias", variables[f"{ct2}/beta"])

    def split(hf_names: list[str], ct2: str) -> None:
        """A fused projection back into its parts; the key projection's bias must be zero (dropped)."""
        weights = np.split(variables[f"{ct2}/weight"], len(hf_names))
        biases = np.split(variables[f"{ct2}/bias"], len(hf_names))
        for name, weight, bias in zip(hf_names, weights, biases, strict=True):
            put(f"{name}.weight", weight)
            if name.endswith("k_proj"):
                if np.any(bias != 0):
                    raise ImportError_(f"{ct2}: the key bias is not zero; transformers' Whisper has none")
            else:
                put(f"{name}.bias", bias)

    def ffn(hf: str, ct2: str) -> None:
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    put("model.encoder.embed_positions.weight", variables["encoder/position_encodings/encodings"])
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    for i in range(encoder_layers):
        hf, ct2 = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        split([f"{hf}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")], f"{ct2}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        ffn(hf, ct2)
    put("model.decoder.embed_tokens.weight", variables["decoder/embeddings/weight"])
    put("model.decoder.embed_positions.weight", variables["decoder/position_encodings/encodings"])
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for i in range(decoder_layers):
        hf, ct2 = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        split([f"{hf}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")], f"{ct2}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
        split([f"{hf}.encoder_attn.{p}" for p in ("k_proj", "v_proj")], f"{ct2}/attention/linear_1")
        linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2")
        norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        ffn(hf, ct2)
    return state


def check_float_weights(variables: dict) -> None:
    quantised = sorted({str(v.dtype) for name, v in variables.items()
                        if name.endswith("/weight") and v.dtype in (np.int8, np.int16)})
    if quantised or any(name.endswith("weight_scale") for name in variables):
        raise ImportError_(f"the model is quantised ({', '.join(quantised) or 'weight scales'}): its float weights "
                           "are gone; import a float16 or float32 CTranslate2 model instead")


def load_ct2_tokenizer(ct2_dir: Path):
    """A transformers WhisperTokenizer from faster-whisper's tokenizer.json, with the timestamp tokens added."""
    from transformers import WhisperTokenizer


    path = ct2_dir / "tokenizer.json"
    if not path.is_file():
        raise ImportError_(f"{ct2_dir} has no tokenizer.json (the byte-level BPE merges are needed)")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = WhisperTokenizer(vocab=model["vocab"], merges=merges)
    added = sorted(data.get("added_tokens", []), key=lambda t: t["id"])
    specials = [t["content"] for t in added if t["content"] != "<|endoftext|>" and not re.fullmatch(
        r"<\|\d+\.\d\d\|>", t["content"])]
    tokenizer.add_special_tokens({"extra_special_tokens": specials})
    tokenizer.add_tokens(timestamp_tokens())
    for token in added:
        if tokenizer.convert_tokens_to_ids(token["content"]) != token["id"]:
            raise ImportError_(f"{path}: token {token['content']} gets id "
                               f"{tokenizer.convert_tokens_to_ids(token['content'])}, not {token['id']}")
    check_whisper_tokenizer(tokenizer, str(path))
    return tokenizer


def generation_config(ct2_config: dict, tokenizer, max_target_positions: int):
    from transformers import GenerationConfig


    specials = SpecialTokens.of(tokenizer)
    lang_ids = ct2_config.get("lang_ids") or []
    config = GenerationConfig(
        decoder_start_token_id=specials.sot, bos_token_id=specials.eot, eos_token_id=specials.eot,
        pad_token_id=specials.eot, no_timestamps_token_id=specials.no_timestamps,
        prev_sot_token_id=specials.sot_prev, max_length=max_target_positions,
        suppress_tokens=list(ct2_config.get("suppress_ids") or []),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin") or []),
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads") or []],
        lang_to_id={tokenizer.convert_ids_to_tokens(i): i for i in lang_ids},
        task_to_id={"transcribe": specials.transcribe, "translate": specials.translate},
        is_multilingual=bool(lang_ids),
        max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP_SECONDS / TIME_PRECISION),
        return_timestamps=False,
    )
    config._from_model_config = False  # else from_pretrained() strips the Whisper fields
    return config


def import_ct2(ct2_dir: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Convert CT2_DIR into OUT_DIR (replaced whole, so an existing output is complete)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration


    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    for name in ("model.bin", "config.json"):
        if not (ct2_dir / name).is_file():
            raise ImportError_(f"{ct2_dir} is not a CTranslate2 model directory: no {name}")
    spec, variables, aliases = read_ct2_model(ct2_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ImportError_(f"{ct2_dir}/model.bin holds a {spec}, not a Whisper model (WhisperSpec)")
    check_float_weights(variables)
    ct2_config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = load_ct2_tokenizer(ct2_dir)
    encoder_layers, decoder_layers = layer_count(variables, "encoder"), layer_count(variables, "decoder")
    vocab, d_model = variables["decoder/embeddings/weight"].shape
    config = WhisperConfig(
        vocab_size=int(vocab), d_model=int(d_model), num_mel_bins=int(variables["encoder/conv1/weight"].shape[1]),
        encoder_layers=encoder_layers, decoder_layers=decoder_layers,
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        begin_suppress_tokens=None, suppress_tokens=None, tie_word_embeddings=True,
    )
    if aliases.get("decoder/projection/weight") not in (None, "decoder/embeddings/weight"):
        raise ImportError_("the output projection is not tied to the token embedding, as transformers' Whisper is")
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(hf_state_dict(variables, encoder_layers, decoder_layers), strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the embedding
    if missing or unexpected:
        raise ImportError_(f"weights do not fit a Whisper model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.generation_config = generation_config(ct2_config, tokenizer, config.max_target_positions)
    if (ct2_dir / "preprocessor_config.json").is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(ct2_dir)
    else:
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins,
                                            chunk_length=int(config.max_source_positions / 50))
    from transformers import WhisperProcessor

    save_model_dir(model.to(DTYPES[dtype]), WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer), out_dir)
    return out_dir


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="CTranslate2 Whisper directory (model.bin ...)")
    parser.add_argument("--out", type=Path, required=True, help="transformers model directory to write")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="weights saved as")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    try:
        import_ct2(args.model, args.out, args.dtype)
    except (ImportError_, OSError) as error:
        log.error("cannot import %s: %s", args.model, error)
        return 1
    log.info("transformers Whisper model in %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
