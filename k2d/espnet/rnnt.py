"""Transducers for ESPnet models: the loss ESPnet's ASR model asks for, from torchaudio; a transducer head
for k2d's own ESPnet models (the streaming student) made of ESPnet's parts; greedy and beam search over it.

ESPnet's `ESPnetASRModel` with `decoder: transducer` imports `RNNTLoss` from `warprnnt_pytorch`
(warp-transducer), which has no wheel on the package registries and needs a source build. torchaudio's
`rnnt_loss` computes the same loss (log-softmax over the joiner's logits inside, the blank's index given,
mean over the batch), so `provide_warprnnt()` registers a module of that name holding `RNNTLoss` below when
warp-transducer is not installed. ESPnet's own model, task and trainer then run unchanged; an installed
warp-transducer is left alone.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import NamedTuple

import numpy as np
import torch
from espnet2.asr.decoder.transducer_decoder import TransducerDecoder
from espnet2.asr_transducer.joint_network import JointNetwork
from espnet2.asr_transducer.utils import get_transducer_task_io
from torchaudio.functional import rnnt_loss

MODULE = "warprnnt_pytorch"
BLANK = 0  # the blank token's id (ESPnet's token lists begin with <blank>)


class RNNTLoss(torch.nn.Module):
    """warp-transducer's `RNNTLoss(blank, fastemit_lambda, reduction)`, called as
    loss(logits (B, T, U + 1, V), targets (B, U), logit_lengths (B,), target_lengths (B,))."""

    def __init__(self, blank: int = BLANK, fastemit_lambda: float = 0.0, reduction: str = "mean"):
        super().__init__()
        if fastemit_lambda:
            raise ValueError("FastEmit is not supported by torchaudio's rnnt_loss: set fastemit_lambda to 0")
        self.blank, self.reduction = blank, reduction

    def forward(self, logits, targets, logit_lengths, target_lengths):
        return rnnt_loss(logits.float(), targets.int(), logit_lengths.int(), target_lengths.int(), blank=self.blank,
                         reduction=self.reduction)


def provide_warprnnt() -> bool:
    """Make `from warprnnt_pytorch import RNNTLoss` give this module's RNNTLoss unless warp-transducer is
    installed; whether it did."""
    if MODULE in sys.modules or importlib.util.find_spec(MODULE) is not None:
        return False
    module = types.ModuleType(MODULE, "warp-transducer's RNNTLoss, computed by torchaudio (k2d.espnet.rnnt)")
    module.RNNTLoss = RNNTLoss
    sys.modules[MODULE] = module
    return True


class StatelessPrediction(torch.nn.Module):
    """A stateless prediction network (Ghodsi et al., ICASSP 2020; the one icefall's transducers and so
    sherpa-onnx's online transducer formats have): the embeddings of the last `context_size` tokens mixed by a
    depthwise 1-D convolution, then ReLU. Blank (0) is the start and the left padding; its embedding is zero."""

    def __init__(self, vocab_size: int, size: int, context_size: int = 2, dropout: float = 0.1):
        super().__init__()
        if context_size < 1:
            raise ValueError(f"context_size {context_size}: a prediction network sees at least the last token")
        self.context_size = context_size
        self.embed = torch.nn.Embedding(vocab_size, size, padding_idx=BLANK)
        self.dropout = torch.nn.Dropout(dropout)
        self.conv = torch.nn.Conv1d(size, size, context_size, groups=size, bias=False) if context_size > 1 else None

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, U) token ids -> (B, U, size): position u sees tokens u - context_size + 1 .. u."""
        x = self.dropout(self.embed(labels))
        if self.conv is not None:
            x = self.conv(torch.nn.functional.pad(x.transpose(1, 2), (self.context_size - 1, 0))).transpose(1, 2)
        return torch.relu(x)


PREDICTIONS = ("lstm", "stateless")


class TransducerHead(torch.nn.Module):
    """A transducer over an encoder's output, from the parts ESPnet's transducer ASR model uses (seed 002's
    students): a prediction network, `lstm` (ESPnet's `TransducerDecoder`, one LSTM layer over the previous
    tokens) or `stateless` (the last `context_size` tokens, what sherpa-onnx's online transducers run), blank 0
    as the start; ESPnet's joint network; trained by RNNTLoss; `GreedySearch` and `BeamSearch` decode with it."""

    def __init__(self, vocab_size: int, encoder_size: int, prediction_size: int = 256, joint_size: int = 256,
                 dropout: float = 0.1, prediction: str = "lstm", context_size: int = 2):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
        self.stateless = prediction == "stateless"
        self.decoder = (StatelessPrediction(vocab_size, prediction_size, context_size, dropout) if self.stateless
                        else TransducerDecoder(vocab_size, hidden_size=prediction_size, dropout=dropout,
                                               dropout_embed=dropout, embed_pad=BLANK))
        self.joint_network = JointNetwork(vocab_size, encoder_size, prediction_size, joint_space_size=joint_size)
        self.criterion = RNNTLoss(blank=BLANK)

    def start(self, device: torch.device) -> tuple:
        """The prediction network's state before any token: the LSTM's zero state, or `context_size` blanks."""
        if self.stateless:
            return (BLANK,) * self.decoder.context_size
        self.decoder.set_device(device)
        return self.decoder.init_state(1)

    def predict(self, state: tuple, token: int, device: torch.device) -> tuple[torch.Tensor, tuple]:
        """The prediction network's output after `token`, and its next state."""
        if self.stateless:
            state = (*state[1:], token)
            return self.decoder(torch.tensor([state], device=device))[0, -1], state
        embedded = self.decoder.embed(torch.tensor([[token]], device=device))
        out, state = self.decoder.rnn_forward(embedded, state)
        return out[0, 0], state

    def loss(self, encoded: torch.Tensor, lengths: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The RNN-T loss of `text` (B, U), padded with -1 as ESPnet's collate pads it, mean over the batch."""
        decoder_in, target, frames, target_lengths = get_transducer_task_io(text, lengths, ignore_id=-1,
                                                                            blank_id=BLANK)
        if not self.stateless:
            self.decoder.set_device(encoded.device)
        predicted = self.decoder(decoder_in)
        joint = self.joint_network(encoded.unsqueeze(2), predicted.unsqueeze(1))
        return self.criterion(joint, target, frames, target_lengths)


class GreedySearch:
    """Greedy transducer search that can be given the encoder's frames piece by piece (a streaming decoder)
    and gives the same tokens as all frames at once: at each frame the joint network's best token is emitted
    and fed to the prediction network, until the blank wins or `max_symbols` tokens came at that frame."""

    def __init__(self, head: TransducerHead, max_symbols: int = 4, device: str | torch.device = "cpu"):
        if max_symbols < 1:
            raise ValueError(f"max_symbols {max_symbols}: a frame emits at least one token before the blank")
        self.head, self.max_symbols, self.device = head, max_symbols, torch.device(device)
        self.frame = 0
        self.predicted, self.state = head.predict(head.start(self.device), BLANK, self.device)
        self.tokens, self.at = [], []

    @torch.no_grad()
    def accept(self, frames: torch.Tensor) -> tuple[list[int], list[int]]:
        """Tokens of these encoder frames (T, D), and the index of the frame (counted from the first frame
        ever given) that emitted each."""
        tokens, at = [], []
        for frame in frames:
            for _ in range(self.max_symbols):
                best = int(self.head.joint_network(frame, self.predicted).argmax())
                if best == BLANK:
                    break
                tokens.append(best)
                at.append(self.frame)
                self.predicted, self.state = self.head.predict(self.state, best, self.device)
            self.frame += 1
        self.tokens, self.at = self.tokens + tokens, self.at + at
        return tokens, at

    @property
    def result(self) -> tuple[list[int], list[int]]:
        """Every token so far and the frame that emitted each."""
        return self.tokens, self.at


class Hypothesis(NamedTuple):
    log_prob: float
    predicted: torch.Tensor  # the prediction network's output after the hypothesis's last token
    state: tuple  # and its state
    at: tuple[int, ...]  # the frame that emitted each token


class BeamSearch:
    """Modified beam search (as icefall's and sherpa-onnx's `modified_beam_search`), given the encoder's frames
    piece by piece or all at once alike: at most one token per frame; at each frame the `beam` best one-step
    extensions of all hypotheses (the blank keeps a hypothesis's tokens) are kept, those with the same tokens
    merged (their probabilities added). The result is the best hypothesis so far by log-probability per token
    (ESPnet's normalisation: the start counts as one), so it may change as frames come."""

    def __init__(self, head: TransducerHead, beam: int = 4, device: str | torch.device = "cpu"):
        if beam < 1:
            raise ValueError(f"beam {beam}: a beam search keeps at least one hypothesis")
        self.head, self.beam, self.device = head, beam, torch.device(device)
        self.frame = 0
        predicted, state = head.predict(head.start(self.device), BLANK, self.device)
        self.hyps = {(): Hypothesis(0.0, predicted, state, ())}  # tokens -> hypothesis

    @torch.no_grad()
    def accept(self, frames: torch.Tensor) -> None:
        for frame in frames:
            keys = list(self.hyps)
            predicted = torch.stack([self.hyps[k].predicted for k in keys])
            log_probs = torch.log_softmax(self.head.joint_network(frame.expand(len(keys), -1), predicted), dim=-1)
            scores = log_probs + torch.tensor([self.hyps[k].log_prob for k in keys])[:, None]
            top = scores.flatten().topk(min(self.beam, scores.numel()))
            hyps = {}
            for score, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                row, token = divmod(index, scores.shape[1])
                old = self.hyps[keys[row]]
                key = keys[row] if token == BLANK else (*keys[row], token)
                if key in hyps:  # the same tokens (so the same prediction) by another path: probabilities add;
                    # topk is sorted, so the likelier path came first and its frames stay
                    hyps[key] = hyps[key]._replace(log_prob=float(np.logaddexp(hyps[key].log_prob, score)))
                elif token == BLANK:
                    hyps[key] = old._replace(log_prob=score)
                else:
                    hyps[key] = Hypothesis(score, *self.head.predict(old.state, token, self.device),
                                           (*old.at, self.frame))
            self.hyps = hyps
            self.frame += 1

    @property
    def result(self) -> tuple[list[int], list[int]]:
        """The best hypothesis so far: its tokens and the frame that emitted each."""
        tokens, hyp = max(self.hyps.items(), key=lambda item: item[1].log_prob / (len(item[0]) + 1))
        return list(tokens), list(hyp.at)
