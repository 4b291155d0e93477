"""The speed table's encoder share: time inside the encoder's forward only, on a fake clock."""

from types import SimpleNamespace

import torch

from k2d import speed


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _recognizer(clock: FakeClock, encoder_seconds: float):
    class Encoder(torch.nn.Module):
        def forward(self, x):
            clock.now += encoder_seconds
            return x

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()

        def get_encoder(self):
            return self.encoder

    return SimpleNamespace(model=Model())


def test_the_encoder_clock_counts_encoder_time_only_while_open(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(speed.time, "perf_counter", clock)
    recognizer = _recognizer(clock, encoder_seconds=2.0)
    encoder = recognizer.model.get_encoder()
    with speed.encoder_clock(recognizer) as spent:
        encoder(torch.zeros(1))
        clock.now += 5.0  # decoder work: not counted
        encoder(torch.zeros(1))
    assert spent == [4.0]
    encoder(torch.zeros(1))  # the hooks are gone
    assert spent == [4.0]


def test_a_backend_without_a_torch_model_has_no_encoder_share():
    with speed.encoder_clock(SimpleNamespace()) as spent:
        assert spent is None


def test_the_speed_table_shows_the_speed_up_and_encoder_share():
    rows = [{"model": "t", "parameters": 72e6, "rtf": 0.06, "rtf_std": 0.001, "encoder_share": 0.25},
            {"model": "s", "parameters": 55e6, "rtf": 0.04, "rtf_std": 0.0, "encoder_share": None}]
    lines = speed.rtf_table(rows).splitlines()
    assert lines[2] == "| t | 72.00M | 0.0600 ± 0.0010 | 1.00x | 25% |"
    assert lines[3] == "| s | 55.00M | 0.0400 ± 0.0000 | 1.50x | - |"  # 0.06 / 0.04
