"""Benchmarks: speed and memory, measured side by side in one process so that ratios are fair.

    # decoding speed (real-time factor) of several models on the same audio, 5 timed runs after a warm-up
    python -m k2d.bench rtf --models teacher=egs/mini_cs/models/teacher student=exp/mini_cs/student_composite/best \\
        --recordings data/mini_cs/manifests/mini_cs_recordings_test_in.jsonl.gz --seconds 120

    # the real architectures with random weights: Whisper Large-v2 vs its 2-decoder-layer student
    python -m k2d.bench shapes --shape large-v2 --tokens 40

    # training step time and peak memory: CE only, KD with the encoder run (shared, or two), KD from the
    # teacher cache (encoder states; encoder states + teacher top-k, no teacher loaded)
    python -m k2d.bench train --teacher egs/mini_cs/models/teacher --cuts CUTS.jsonl.gz

    # training step time of streaming students (seed 003) by variant, on the recipe's own batches
    python -m k2d.bench stream-train --config egs/mini_cs_streaming/conf/train.yaml --data-dir DATA_DIR \
        --tokens TOKENS_DIR --rows espnet narrow32:subsampling_channels=32

    # stage 1 / 3 throughput: audio seconds per second at batch 1 vs batch N
    python -m k2d.bench throughput --teacher T --validator V --recordings REC.jsonl.gz --cuts CHUNKS.jsonl.gz

    # stage 1 with and without voice activity detection (the stage's own config): speed, audio skipped,
    # hallucinations (text over non-speech, repetition loops) and label MER against the true supervisions
    python -m k2d.bench vad --teacher T --config egs/mini_cs_whisper/conf/pseudo_label.yaml \
        --recordings REC.jsonl.gz --supervisions SUP.jsonl.gz

    # one model in every runtime a user may ship it with (k2d, CTranslate2, faster-whisper, sherpa-onnx;
    # float32 and int8), utterance by utterance: size on disk, RTF, MER, same text as k2d
    python -m k2d.bench runtimes --model exp/mini_cs/export --recordings REC.jsonl.gz --supervisions SUP.jsonl.gz \
        --exports-dir exp/mini_cs/runtimes

Each prints a Markdown table and can write it (--output FILE). Absolute times mean something only on the
hardware named in the table; compare ratios within one table.
"""
