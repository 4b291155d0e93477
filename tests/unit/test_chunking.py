"""Stage 2 chunking rule, worked by hand (max_chunk 30 s, continued_min 1 s)."""

from k2d.chunking import ChunkStats, TeacherSegment, chunk_segments


def seg(start, end, text="x"):
    return TeacherSegment(start, end, text)


def spans(chunks):
    return [[(s.start, s.end) for s in c.segments] for c in chunks]


def test_greedy_grouping_and_gap_crossing():
    # D would end at 35 > 0 + 30 and starts after the boundary: not continued
    chunks = chunk_segments([seg(0, 10), seg(12, 25), seg(26, 29.5), seg(31, 35)])
    assert spans(chunks) == [[(0, 10), (12, 25), (26, 29.5)], [(31, 35)]]
    assert [c.continued for c in chunks] == [False, False]
    assert (chunks[0].start, chunks[0].end, chunks[1].start, chunks[1].end) == (0, 29.5, 31, 35)


def test_segment_ending_exactly_at_30_s_fits():
    chunks = chunk_segments([seg(0, 10), seg(20, 30)])
    assert spans(chunks) == [[(0, 10), (20, 30)]]


def test_continued_rule():
    # B starts at 25, more than 1 s before the boundary at 30, and runs past it: continued
    chunks = chunk_segments([seg(0, 20), seg(25, 33)])
    assert spans(chunks) == [[(0, 20)], [(25, 33)]]
    assert chunks[0].continued and chunks[0].end == 30 and chunks[0].complete_end == 20
    assert not chunks[1].continued
    # B starts at 29.5, within 1 s of the boundary: not continued, the chunk ends with A
    chunks = chunk_segments([seg(0, 20), seg(29.5, 33)])
    assert not chunks[0].continued and chunks[0].end == 20


def test_segment_longer_than_max_chunk_is_dropped():
    stats = ChunkStats()
    chunks = chunk_segments([seg(0, 5), seg(6, 40), seg(41, 45)], stats=stats)
    assert spans(chunks) == [[(0, 5)], [(41, 45)]]
    assert (stats.dropped_too_long, stats.dropped_seconds, stats.chunks) == (1, 34, 2)


def test_empty_segments_are_skipped():
    stats = ChunkStats()
    chunks = chunk_segments([seg(0, 5, "a"), seg(6, 8, "  "), seg(9, 10, "b")], stats=stats)
    assert spans(chunks) == [[(0, 5), (9, 10)]]
    assert stats.dropped_empty == 1


def test_unsorted_input_and_previous_text():
    chunks = chunk_segments([seg(40, 45, "后面"), seg(0, 5, "前面")], max_chunk=30)
    assert [c.text for c in chunks] == ["前面", "后面"]
    assert [c.prev_text for c in chunks] == [None, "前面"]


def test_no_segments_no_chunks():
    assert chunk_segments([]) == []


def test_window_end_and_next_segment_start():
    # A (0-20) closes the chunk when B (25-33) would end past 30: the window ends at 30, B begins inside it
    chunks = chunk_segments([seg(0, 20), seg(25, 33), seg(40, 45)])
    assert (chunks[0].boundary, chunks[0].next_start) == (30, 25)
    # B and C (ends at 45, within B's window 25-55) share the recording's last chunk: nothing follows it
    assert spans(chunks)[1] == [(25, 33), (40, 45)] and chunks[1].next_start is None
    # the next segment starts after the window: the window holds no part of it
    chunks = chunk_segments([seg(0, 10), seg(31, 35)])
    assert (chunks[0].boundary, chunks[0].next_start) == (30, None)
    # a segment too long to be a chunk still begins inside the window before it: its start is kept
    chunks = chunk_segments([seg(0, 5), seg(6, 40), seg(41, 45)])
    assert chunks[0].next_start == 6 and chunks[0].continued


def test_pause_before_each_chunk():
    # chunk 1 starts at 2 s (the recording's start is 0); chunk 2 (25-33) 5 s after A's end at 20;
    # chunk 3 (41-45) follows the too-long segment B2 (33.5-70) that was dropped: its end counts (speech)
    chunks = chunk_segments([seg(2, 20), seg(25, 33), seg(33.5, 70), seg(71, 75)], max_chunk=30)
    assert spans(chunks) == [[(2, 20)], [(25, 33)], [(71, 75)]]
    assert [c.pause_before for c in chunks] == [2.0, 5.0, 1.0]
    # an empty segment's span counts too; overlapping segments give no pause (0, not negative)
    chunks = chunk_segments([seg(0, 5), seg(5, 12, " "), seg(11, 20), seg(41, 45)], max_chunk=10)
    assert spans(chunks) == [[(0, 5)], [(11, 20)], [(41, 45)]]
    assert [c.pause_before for c in chunks] == [0.0, 0.0, 21.0]
