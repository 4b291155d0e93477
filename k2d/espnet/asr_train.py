"""ESPnet's ASR training, `espnet2.bin.asr_train` with all of its options, where a transducer model
(`decoder: transducer`) gets its loss from torchaudio when warp-transducer is not installed (k2d.espnet.rnnt).

    python -m k2d.espnet.asr_train --config conf/finetune.yaml --output_dir exp/asr ...
"""

from __future__ import annotations

from espnet2.bin.asr_train import main as espnet_asr_train

from k2d.espnet.rnnt import provide_warprnnt


def main(argv: list[str] | None = None) -> None:
    provide_warprnnt()
    espnet_asr_train(argv)


if __name__ == "__main__":
    main()
