"""The one inference core of stages 1, 3, 6, held-out validation and the benchmarks.

A recognizer (a loaded model behind one backend) decodes a batch of windows exactly once each, with
Whisper's decoding rules; `transcribe` runs the openai long-form algorithm (seek, temperature fallback,
no-speech skipping, previous-text prompts) on top of it, the same for every backend.

    recognizer = load_recognizer("egs/mini_cs/models/teacher", device="cpu")
    results = transcribe_audios(recognizer, [audio], GenerationSettings())
"""
