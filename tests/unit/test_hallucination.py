"""Hallucination counts of long-form labels, worked out by hand."""

from k2d.metrics.hallucination import HallucinationCounts, hallucinations, speech_seconds

SPEECH = [(1.0, 3.0), (5.0, 6.0)]


def test_speech_seconds_adds_the_overlap_with_each_span():
    assert speech_seconds(0.0, 10.0, SPEECH) == 3.0
    assert speech_seconds(2.5, 5.5, SPEECH) == 1.0  # 0.5 s of the first span, 0.5 s of the second
    assert speech_seconds(3.0, 5.0, SPEECH) == 0.0  # touches both, covers neither


def test_text_over_non_speech_is_counted_with_its_units():
    segments = [
        (1.0, 3.0, "我们 train"),        # all speech
        (2.9, 4.9, "谢谢观看"),           # 0.1 s of 2 s is speech (5% < 25%): over non-speech, 4 units
        (4.0, 5.6, "the model"),          # 0.6 s of 1.6 s (37.5%): counted as speech
        (7.0, 8.0, "Thank you."),         # no speech at all: over non-speech, 2 units
        (8.0, 9.0, "  "),                 # no text: not a segment
    ]
    counts = hallucinations(segments, SPEECH)
    assert counts == HallucinationCounts(segments=4, over_non_speech=2, over_non_speech_units=6, loop_events=0)


def test_a_zero_length_segment_with_text_is_over_non_speech():
    assert hallucinations([(2.0, 2.0, "好")], SPEECH).over_non_speech == 1


def test_loops_are_counted_on_the_recording_text_across_segments():
    # "abcdef" 5 times across two segments: the 6-gram "abcdef" reaches 5 occurrences once (the paper's rule)
    segments = [(1.0, 2.0, "abcdef abcdef abcdef"), (2.0, 3.0, "abcdef abcdef")]
    assert hallucinations(segments, SPEECH).loop_events == 1
    assert hallucinations(segments[:1], SPEECH).loop_events == 0


def test_counts_add_up_over_recordings():
    one = HallucinationCounts(segments=3, over_non_speech=1, over_non_speech_units=4, loop_events=2)
    assert one + one == HallucinationCounts(6, 2, 8, 4)
