"""The transducer loss ESPnet's ASR model asks for, from torchaudio.

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

import torch
from torchaudio.functional import rnnt_loss

MODULE = "warprnnt_pytorch"


class RNNTLoss(torch.nn.Module):
    """warp-transducer's `RNNTLoss(blank, fastemit_lambda, reduction)`, called as
    loss(logits (B, T, U + 1, V), targets (B, U), logit_lengths (B,), target_lengths (B,))."""

    def __init__(self, blank: int = 0, fastemit_lambda: float = 0.0, reduction: str = "mean"):
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
