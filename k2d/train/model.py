"""The trainable model: a Whisper student, optionally a frozen teacher for KD, optionally a CTC head.

It follows ESPnet's model contract (an espnet2 `AbsESPnetModel`: `forward(speech, speech_lengths, text,
text_lengths) -> (loss, stats, weight)` and `collect_feats`), so ESPnet's trainer can drive it too; this
toolkit's trainer calls `loss_from_batch` with features computed in the data loader workers.
"""

from __future__ import annotations

import torch
from espnet2.train.abs_espnet_model import AbsESPnetModel
from transformers import WhisperForConditionalGeneration

from k2d.audio import SAMPLE_RATE
from k2d.train.data import Batch
from k2d.train.labels import IGNORE_INDEX
from k2d.train.losses import cross_entropy, ctc_loss, kl_divergence, kl_divergence_topk, token_accuracy


def encoders_identical(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True when two encoders hold the same weights (a student's encoder copied from its teacher)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


class WhisperKDModel(AbsESPnetModel):
    def __init__(
        self,
        student: WhisperForConditionalGeneration,
        teacher: WhisperForConditionalGeneration | None = None,
        *,
        beta: float = 0.8,
        gamma: float = 1.0,
        temperature: float = 2.0,
        ctc_weight: float = 0.0,
        ctc_classes: int | None = None,
        feature_extractor=None,
    ):
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.beta, self.gamma, self.temperature, self.ctc_weight = beta, gamma, temperature, ctc_weight
        self.feature_extractor = feature_extractor  # the ESPnet-style frontend, used by forward()
        if teacher is not None:
            teacher.requires_grad_(False).eval()
        encoder = student.get_encoder()
        self.encoder_frozen = not any(p.requires_grad for p in encoder.parameters())
        # A frozen copy of the teacher's encoder gives the same output: run it once for both decoders.
        self.share_encoder = (
            teacher is not None and self.encoder_frozen and encoders_identical(encoder, teacher.get_encoder())
        )
        self.log_accuracy = True  # the token accuracy in the stats (the k2d trainer asks only when it logs)
        self._frozen_projection = None  # (key, copy): a frozen output projection in the autocast dtype
        self.ctc_head = None
        if ctc_weight > 0:
            # default classes: the text tokens, i.e. the ids below <|endoftext|>
            classes = ctc_classes or student.config.eos_token_id
            self.ctc_head = torch.nn.Linear(student.config.d_model, classes + 1)  # + blank

    def train(self, mode: bool = True):
        super().train(mode)
        # Frozen parts stay in eval mode: no dropout in a frozen encoder or in the teacher.
        if self.teacher is not None:
            self.teacher.eval()
        if self.encoder_frozen:
            self.student.get_encoder().eval()
        return self

    def loss_from_batch(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        return self._loss(batch.features, batch.input_ids, batch.targets, batch.ctc_targets, batch.ctc_lengths,
                          batch.encoder_states, batch.teacher_logprobs, batch.teacher_ids)

    def _encode(self, features, cached_states):
        if cached_states is not None:  # the frozen encoder's stored output (k2d.cache_teacher)
            if not self.encoder_frozen:
                raise RuntimeError("cached encoder states need a frozen encoder")
            return cached_states.to(self.student.dtype)
        features = features.to(self.student.dtype)
        with torch.set_grad_enabled(not self.encoder_frozen and torch.is_grad_enabled()):
            return self.student.get_encoder()(features).last_hidden_state

    def _loss(self, features, input_ids, targets, ctc_targets=None, ctc_lengths=None, encoder_states=None,
              teacher_logprobs=None, teacher_ids=None):
        encoder_out = self._encode(features, encoder_states)
        hidden = self.student.get_decoder()(
            input_ids=input_ids, encoder_hidden_states=encoder_out, use_cache=False
        ).last_hidden_state
        # The vocabulary-sized output layer only where a loss is taken (not the prompt, prefix or padding):
        # from here on every tensor is (tokens, ...), the losses' masks all true.
        loss_tokens = targets != IGNORE_INDEX
        student_logits = self._output_logits(hidden, loss_tokens).float()  # once for both losses
        targets = targets[loss_tokens]
        if teacher_logprobs is not None:
            teacher_logprobs, teacher_ids = teacher_logprobs[loss_tokens], teacher_ids[loss_tokens]
        ce = cross_entropy(student_logits, targets)
        stats = {"ce": ce.detach()}
        if self.log_accuracy or not torch.is_grad_enabled():
            stats["acc"] = token_accuracy(student_logits.detach(), targets)
        has_teacher = self.teacher is not None or teacher_logprobs is not None
        if self.gamma > 0 and not has_teacher:
            raise RuntimeError("gamma > 0 (KL to the teacher) needs the teacher or its cached top-k outputs")
        loss = self.beta * ce if has_teacher else ce
        if has_teacher and self.gamma > 0:
            if teacher_logprobs is not None:
                kl = kl_divergence_topk(student_logits, teacher_logprobs, teacher_ids, targets, self.temperature)
            else:
                with torch.no_grad():
                    teacher_encoder_out = (
                        encoder_out if self.share_encoder or encoder_states is not None
                        else self.teacher.get_encoder()(features.to(self.teacher.dtype)).last_hidden_state
                    )
                    teacher_logits = self.teacher(
                        encoder_outputs=(teacher_encoder_out,), decoder_input_ids=input_ids
                    ).logits[loss_tokens]
                kl = kl_divergence(student_logits, teacher_logits, targets, self.temperature)
            loss = loss + self.gamma * kl
            stats["kl"] = kl.detach()
        if self.ctc_head is not None and ctc_targets is not None:
            log_probs = self.ctc_head(encoder_out).log_softmax(-1)
            frames = torch.full((encoder_out.shape[0],), encoder_out.shape[1], device=encoder_out.device)
            ctc = ctc_loss(log_probs, frames, ctc_targets, ctc_lengths, blank=self.ctc_head.out_features - 1)
            loss = (1 - self.ctc_weight) * loss + self.ctc_weight * ctc
            stats["ctc"] = ctc.detach()
        stats["loss"] = loss.detach()
        return loss, stats, loss_tokens.sum()

    def _output_logits(self, hidden: torch.Tensor, loss_tokens: torch.Tensor) -> torch.Tensor:
        """(tokens, V): the student's output projection (tied to its token embedding) at the loss tokens.
        When it is frozen and autocast is on, its copy in the autocast dtype is made once instead of at
        every step (autocast caches casts of trainable weights only; the cast of 26.5M weights was 13% of
        a bf16 CPU step)."""
        hidden = hidden[loss_tokens]
        weight = self.student.get_output_embeddings().weight
        device = hidden.device.type
        if weight.requires_grad or not torch.is_autocast_enabled(device):
            return torch.nn.functional.linear(hidden, weight)
        dtype = torch.get_autocast_dtype(device)
        key = (weight.data_ptr(), weight._version, dtype)  # in-place updates (load_state_dict) bump _version
        if self._frozen_projection is None or self._frozen_projection[0] != key:
            self._frozen_projection = (key, weight.detach().to(dtype))
        return torch.nn.functional.linear(hidden, self._frozen_projection[1])

    # ---- ESPnet contract ----
    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
        if self.feature_extractor is None:
            raise RuntimeError("this model was built without a frontend (feature_extractor)")
        audio = [s[: int(n)].float().cpu().numpy() for s, n in zip(speech, speech_lengths, strict=True)]
        feats = self.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        feats = feats.to(speech.device)
        return {"feats": feats, "feats_lengths": torch.full((len(audio),), feats.shape[-1], device=speech.device)}

    def forward(
        self,
        speech: torch.Tensor | None = None,
        speech_lengths: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
        text_loss_start: torch.Tensor | None = None,
        batch: Batch | None = None,
        **kwargs,
    ):
        """ESPnet-style call. `text` holds whole decoder sequences (prompt, forced prefix, body,
        <|endoftext|>) padded with -1; tokens before `text_loss_start` (default: the 3-token prefix
        <|startoftranscript|><|lang|><|task|>) take no loss. This toolkit's trainer passes `batch`
        instead (features already computed by the data loader), through the same call so DDP sees it."""
        if batch is not None:
            return self.loss_from_batch(batch)
        feats = self.collect_feats(speech, speech_lengths)["feats"]
        pad = self.student.config.pad_token_id
        sequences = text.masked_fill(text < 0, pad)
        input_ids, targets = sequences[:, :-1], sequences[:, 1:].clone()
        positions = torch.arange(targets.shape[1], device=text.device)[None, :] + 1
        start = text_loss_start if text_loss_start is not None else torch.full_like(text_lengths, 3)
        targets[(positions < start[:, None]) | (positions >= text_lengths[:, None])] = IGNORE_INDEX
        return self._loss(feats, input_ids, targets)
