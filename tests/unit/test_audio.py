"""Reading windows of lhotse recordings (k2d.audio)."""

import numpy as np
import soundfile as sf
from lhotse import Recording

from k2d.audio import SAMPLE_RATE, read_whole, read_window


def test_a_recording_declared_shorter_than_its_file_reads_as_declared(tmp_path):
    # 3 s on disk, 1 s in the manifest (what the benchmark's --seconds does to long recordings): reading the whole
    # declared recording must give that second, not lhotse's "declared samples diverged" error
    samples = np.arange(3 * SAMPLE_RATE, dtype=np.float32) / (3 * SAMPLE_RATE)
    path = tmp_path / "a.wav"
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    full = Recording.from_file(path)
    declared = Recording(full.id, full.sources, SAMPLE_RATE, SAMPLE_RATE, 1.0)
    window = read_window(declared, 0.0, 30.0)
    assert window.shape == (SAMPLE_RATE,)
    np.testing.assert_allclose(window, samples[:SAMPLE_RATE])
    assert read_whole(declared).shape == (SAMPLE_RATE,)
    assert read_window(full, 0.0, 30.0).shape == (3 * SAMPLE_RATE,)  # an untruncated recording is unchanged
    np.testing.assert_allclose(read_window(full, 2.5, 30.0), samples[int(2.5 * SAMPLE_RATE):])
