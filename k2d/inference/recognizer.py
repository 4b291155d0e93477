"""A Whisper model ready to decode windows: the backend-independent part, and the transformers backend.

A recognizer decodes each window of a batch exactly once (`generate`), applying Whisper's decoding rules
itself (k2d.inference.rules) instead of transformers' `generate`, which may decode a window several times
in one call and return the passes concatenated. Greedy, sampling at a temperature, and beam search.

    recognizer = load_recognizer("egs/mini_cs/models/teacher")   # k2d.inference.backends: or backend="ctranslate2"
    encoded = recognizer.encode([audio])
    [hypothesis] = recognizer.generate(encoded, [recognizer.prefix(settings)], temperature=0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from k2d.audio import SAMPLE_RATE
from k2d.inference.rules import filter_logits
from k2d.models.tokenizer import SpecialTokens, window_seconds

# Whisper keeps at most half its 448-token context for the previous text (openai: n_text_ctx // 2 - 1).
MAX_PROMPT_TOKENS = 223


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens, without the prefix and without <|endoftext|>
    sum_logprob: float  # log-probability of the tokens and the <|endoftext|> that closed them
    no_speech_prob: float  # P(<|nospeech|>) right after <|startoftranscript|>; 0 without that token

    @property
    def avg_logprob(self) -> float:
        return self.sum_logprob / (len(self.tokens) + 1)


class Recognizer:
    """What every backend shares: tokenizer, special tokens, window, prefixes and text decoding."""

    backend = "base"

    def __init__(self, tokenizer, feature_extractor, generation_config, max_source_positions: int,
                 max_target_positions: int, name: str):
        self.tokenizer, self.feature_extractor, self.name = tokenizer, feature_extractor, name
        self.specials = SpecialTokens.of(tokenizer)
        self.window = window_seconds(max_source_positions)
        self.max_target_positions = max_target_positions
        self.suppress = sorted(set(generation_config.suppress_tokens or []) | set(self.specials.never_generated()))
        self.begin_suppress = list(generation_config.begin_suppress_tokens or [])
        self.max_initial_timestamp_index = getattr(generation_config, "max_initial_timestamp_index", None)

    def prefix(self, settings, prompt: list[int] | None = None) -> list[int]:
        """[<|startofprev|> prompt] <|startoftranscript|> <|lang|> <|task|> [<|notimestamps|>]"""
        tokens = self.specials.prefix(settings.language, settings.task, settings.timestamps)
        if prompt:
            tokens = [self.specials.sot_prev, *prompt[-MAX_PROMPT_TOKENS:], *tokens]
        return tokens

    def decode_text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def features(self, audios: list[np.ndarray]) -> np.ndarray:
        """Log-mel features of each audio, padded (or cut) to the model's window: (B, mels, frames)."""
        return self.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features

    def _filter(self, logits: torch.Tensor, generated: list[list[int]], timestamps: bool) -> torch.Tensor:
        return filter_logits(
            logits, generated, self.specials, timestamps=timestamps, suppress=self.suppress,
            begin_suppress=self.begin_suppress, max_initial_timestamp_index=self.max_initial_timestamp_index,
        )


class TransformersRecognizer(Recognizer):
    backend = "transformers"

    def __init__(self, model, processor, name: str = ""):
        super().__init__(processor.tokenizer, processor.feature_extractor, model.generation_config,
                         model.config.max_source_positions, model.config.max_target_positions, name)
        self.model, self.processor = model, processor

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def encode(self, audios: list[np.ndarray]) -> torch.Tensor:
        features = torch.from_numpy(self.features(audios)).to(self.device, self.model.dtype)
        return self.model.get_encoder()(features).last_hidden_state

    @staticmethod
    def select(encoded: torch.Tensor, rows: list[int]) -> torch.Tensor:
        return encoded[rows]

    def _forward(self, tokens, mask, positions, encoder_out, cache):
        out = self.model.model.decoder(
            input_ids=tokens, attention_mask=mask, position_ids=positions, encoder_hidden_states=encoder_out,
            past_key_values=cache, use_cache=True,
        )
        return self.model.proj_out(out.last_hidden_state).float(), out.past_key_values

    def _start(self, encoder_out: torch.Tensor, prefixes: list[list[int]]):
        """Run the (left-padded) prefixes; return next-token logits, cache, mask, positions, no-speech probs."""
        device, longest = self.device, max(len(p) for p in prefixes)
        tokens = torch.full((len(prefixes), longest), self.specials.eot, dtype=torch.long)
        mask = torch.zeros((len(prefixes), longest), dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            tokens[row, longest - len(prefix):] = torch.tensor(prefix)
            mask[row, longest - len(prefix):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        tokens, mask, positions = tokens.to(device), mask.to(device), positions.to(device)
        logits, cache = self._forward(tokens, mask, positions, encoder_out, None)
        no_speech = torch.zeros(len(prefixes))
        if self.specials.no_speech is not None:
            sot_at = [longest - len(p) + p.index(self.specials.sot) for p in prefixes]
            sot_logits = logits[torch.arange(len(prefixes)), torch.tensor(sot_at)]
            no_speech = sot_logits.softmax(-1)[:, self.specials.no_speech].cpu()
        return logits[:, -1], cache, mask, positions[:, -1:], no_speech

    def budget(self, prefixes: list[list[int]], max_new_tokens: int) -> int:
        return max(1, min(max_new_tokens, self.max_target_positions - max(len(p) for p in prefixes)))

    @torch.no_grad()
    def generate(self, encoded: torch.Tensor, prefixes: list[list[int]], temperature: float = 0.0,
                 num_beams: int = 1, max_new_tokens: int = 224, timestamps: bool = True) -> list[Hypothesis]:
        if num_beams > 1 and temperature == 0.0:
            return self._beam_search(encoded, prefixes, num_beams, max_new_tokens, timestamps)
        eot = self.specials.eot
        logits, cache, mask, position, no_speech = self._start(encoded, prefixes)
        generated: list[list[int]] = [[] for _ in prefixes]
        sum_logprobs = [0.0] * len(prefixes)
        active = list(range(len(prefixes)))  # rows still decoding, in cache order
        for _ in range(self.budget(prefixes, max_new_tokens)):
            logits = self._filter(logits, [generated[r] for r in active], timestamps)
            logprobs = torch.log_softmax(logits, dim=-1)
            if temperature > 0:
                chosen = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1).squeeze(1)
            else:
                chosen = logits.argmax(dim=-1)
            chosen_logprobs = logprobs.gather(1, chosen[:, None]).squeeze(1).tolist()
            keep = []
            for i, (row, token) in enumerate(zip(active, chosen.tolist(), strict=True)):
                sum_logprobs[row] += chosen_logprobs[i]
                if token == eot:
                    continue
                generated[row].append(token)
                keep.append(i)
            if not keep:
                break
            if len(keep) < len(active):  # drop finished rows from the batch
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                encoded, mask, position, chosen = encoded[index], mask[index], position[index], chosen[index]
                active = [active[i] for i in keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            position = position + 1
            logits, cache = self._forward(chosen[:, None], mask, position, encoded, cache)
            logits = logits[:, -1]
        return [Hypothesis(g, lp, float(ns)) for g, lp, ns in zip(generated, sum_logprobs, no_speech, strict=True)]

    def _beam_search(self, encoded, prefixes, beams: int, max_new_tokens: int, timestamps: bool):
        """openai's beam search (patience 1): `beams` live hypotheses per row until `beams` have ended;
        the best ended one by log-probability per token wins."""
        eot, rows = self.specials.eot, len(prefixes)
        expanded = [p for p in prefixes for _ in range(beams)]
        logits, cache, mask, position, no_speech = self._start(encoded.repeat_interleave(beams, 0), expanded)
        encoded = encoded.repeat_interleave(beams, 0)
        sequences: list[list[int]] = [[] for _ in expanded]
        scores = torch.full((rows, beams), float("-inf"))
        scores[:, 0] = 0.0  # the copies start identical: only the first may spread
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(rows)]
        for _ in range(self.budget(prefixes, max_new_tokens)):
            logits = self._filter(logits, sequences, timestamps)
            logprobs = torch.log_softmax(logits, dim=-1).cpu().view(rows, beams, -1)
            candidates = (scores[:, :, None] + logprobs).view(rows, -1)
            top_scores, top_index = candidates.topk(2 * beams, dim=-1)
            source, next_tokens, new_scores = [], [], torch.full((rows, beams), float("-inf"))
            for row in range(rows):
                kept = 0
                for score, index in zip(top_scores[row].tolist(), top_index[row].tolist(), strict=True):
                    beam, token = divmod(index, logprobs.shape[-1])
                    parent = row * beams + beam
                    if score == float("-inf"):
                        break
                    if token == eot:
                        if len(finished[row]) < beams:
                            finished[row].append((score, sequences[parent]))
                        continue
                    if kept < beams:
                        source.append(parent)
                        next_tokens.append(token)
                        new_scores[row, kept] = score
                        kept += 1
                while kept < beams:  # pad a row whose candidates ran out with a dead copy
                    source.append(row * beams)
                    next_tokens.append(eot)
                    kept += 1
            if all(len(f) >= beams for f in finished):
                break
            sequences = [sequences[s] + [t] for s, t in zip(source, next_tokens, strict=True)]
            scores = new_scores
            index = torch.tensor(source, device=self.device)
            cache.reorder_cache(index)
            mask = torch.cat([mask[index], torch.ones_like(mask[:, :1])], dim=1)
            position = position[index] + 1
            tokens = torch.tensor(next_tokens, device=self.device)[:, None]
            logits, cache = self._forward(tokens, mask, position, encoded, cache)
            logits = logits[:, -1]
        hypotheses = []
        for row in range(rows):
            pool = finished[row] or [(float(scores[row, b]), sequences[row * beams + b]) for b in range(beams)]
            score, tokens = max(pool, key=lambda item: item[0] / max(1, len(item[1])))
            hypotheses.append(Hypothesis(tokens, score, float(no_speech[row * beams])))
        return hypotheses
