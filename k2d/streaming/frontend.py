"""Front ends of the streaming task and how each one frames audio.

- `default`: ESPnet's log-mel (DefaultFrontend) with `center: false`: frame i is samples [i hop, i hop + n_fft).
- `kaldi_fbank`: Kaldi's 80-bin log filter bank as sherpa-onnx computes it for WeNet-style CTC models (25 ms
  povey window every 10 ms, pre-emphasis 0.97, DC removed, 20 Hz to Nyquist - 400 Hz, no dither, samples in
  the 16-bit range, `snip_edges` false: frame i is samples [160 i - 120, 160 i + 280), mirrored past either
  end of the audio, (samples + 80) // 160 frames in all). A student trained on it runs in sherpa-onnx
  (k2d.streaming.onnx).

`Framing` is what the streaming decoder needs to compute the features of new audio only: which frames are final
once some samples are in, and which samples a run of frames needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.train.class_choices import ClassChoices

from k2d.audio import SAMPLE_RATE

INT16_SCALE = 32768.0  # sherpa-onnx gives WeNet models samples in [-32768, 32767]


@dataclass(frozen=True)
class Framing:
    window: int  # samples in a frame
    shift: int  # samples between frame starts
    offset: int  # frame i starts at i * shift - offset
    mirrored: bool  # frames reach past the audio's ends, which are mirrored (Kaldi's snip_edges false)

    def ready(self, samples: int, final: bool) -> int:
        """Frames whose samples are all in after `samples` (when final, also those that mirror the end)."""
        if final and self.mirrored:
            return (samples + self.shift // 2) // self.shift
        reach = samples + self.offset - self.window
        return 0 if reach < 0 else reach // self.shift + 1

    def span(self, first: int, end: int) -> tuple[int, int]:
        """The samples [start, stop) behind frames first..end-1 (start < 0 or stop past the audio: mirrored)."""
        return first * self.shift - self.offset, (end - 1) * self.shift - self.offset + self.window


def mirrored_slice(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """audio[start:stop] where sample -k is sample k - 1 and sample n + k is sample n - 1 - k (Kaldi's
    ExtractWindow), for start >= -len(audio) and stop <= 2 len(audio)."""
    n = audio.size
    index = np.arange(start, stop)
    index = np.where(index < 0, -index - 1, index)
    index = np.where(index >= n, 2 * n - 1 - index, index)
    return audio[index]


class KaldiFbank(AbsFrontend):
    """Kaldi filter-bank features as sherpa-onnx computes them (see the module docstring)."""

    def __init__(self, n_mels: int = 80, fs: int = SAMPLE_RATE):
        super().__init__()
        if fs != SAMPLE_RATE:
            raise ValueError(f"frontend_conf fs {fs}: kaldi_fbank is defined at {SAMPLE_RATE} Hz")
        self.n_mels = n_mels
        self.framing = Framing(window=400, shift=160, offset=120, mirrored=True)

    def output_size(self) -> int:
        return self.n_mels

    def features(self, samples: torch.Tensor, snip_edges: bool) -> torch.Tensor:
        """(frames, n_mels) of one signal; snip_edges: frames from its first sample, none past its end."""
        import torchaudio.compliance.kaldi as kaldi

        return kaldi.fbank(samples[None].float() * INT16_SCALE, num_mel_bins=self.n_mels, dither=0.0,
                           low_freq=20.0, high_freq=-400.0, snip_edges=snip_edges,
                           sample_frequency=SAMPLE_RATE)

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor):
        feats = [self.features(x[: int(n)], snip_edges=False) for x, n in zip(input, input_lengths, strict=True)]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long, device=input.device)
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths

    def frames(self, samples: np.ndarray) -> torch.Tensor:
        """Frames of samples already cut (and mirrored) to the frames' span: (frames, n_mels)."""
        return self.features(torch.from_numpy(samples), snip_edges=True)


def framing_of(frontend: AbsFrontend) -> Framing:
    if isinstance(frontend, KaldiFbank):
        return frontend.framing
    return Framing(window=frontend.stft.n_fft, shift=frontend.stft.hop_length, offset=0, mirrored=False)


def frames_of(frontend: AbsFrontend, samples: np.ndarray) -> torch.Tensor:
    """(frames, bins) of samples cut to the frames' span (Framing.span), for either front end."""
    if isinstance(frontend, KaldiFbank):
        return frontend.frames(samples)
    speech = torch.from_numpy(samples.astype(np.float32))
    return frontend(speech[None], torch.tensor([speech.shape[0]]))[0][0]


frontend_choices = ClassChoices("frontend", classes=dict(default=DefaultFrontend, kaldi_fbank=KaldiFbank),
                                type_check=AbsFrontend, default="default")
