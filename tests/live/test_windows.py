"""WindowBook: a window follows its job's attributed energy, at an interval's steady power within it."""

from __future__ import annotations

import pytest

from agent.live.windows import WindowBook, WindowError
from collectors.workloads import JobKey
from tests.support.clock import FakeClock

A, B = JobKey("slurm", "1"), JobKey("slurm", "2")
CPU = ("cpu", "package-0", "rapl")
GPU = ("gpu", "gpu0", "nvml")


def close(book: WindowBook, clock: FakeClock, a_w: float, b_w: float = 0.0, gpu_w: float = 0.0) -> None:
    """One second passes; A drew `a_w` of CPU and `gpu_w` of the GPU, B `b_w` of CPU."""
    clock.advance(1.0)
    shares = {A: {CPU: a_w, GPU: gpu_w}, B: {CPU: b_w}}
    node = {CPU: a_w + b_w + 10.0, GPU: 2 * gpu_w}
    book.close_interval(clock(), shares, node, {CPU: 10.0, GPU: gpu_w}, lambda job: True)


def test_a_window_is_its_jobs_energy_prorated_at_both_edges() -> None:
    clock = FakeClock(100.0)
    book = WindowBook(clock)
    close(book, clock, 50.0)  # t=101
    clock.advance(0.25)
    book.begin(A, "w")  # t=101.25: 3/4 of the next interval is in the window
    clock.advance(0.75)
    book.close_interval(
        clock(), {A: {CPU: 100.0, GPU: 40.0}, B: {CPU: 999.0}}, {CPU: 1200.0, GPU: 80.0}, {}, lambda j: True
    )
    close(book, clock, 200.0, b_w=999.0, gpu_w=40.0)  # t=103
    clock.advance(0.5)  # ends half an interval past the last sample: at the last interval's power
    r = book.end(A, "w")
    assert r.by_component["cpu"] == pytest.approx(0.75 * 100.0 + 200.0 + 0.5 * 200.0)
    assert r.by_source == {"rapl": pytest.approx(375.0), "nvml": pytest.approx(0.75 * 40 + 40 + 20)}
    assert r.gpu_shares == {"gpu0": pytest.approx(0.5)}  # half of what the GPU used
    assert r.interpolated_s == pytest.approx(0.75 + 0.5)
    assert r.begin == 101.25 and r.end == 103.5


def test_a_window_shorter_than_an_interval_takes_the_last_intervals_power() -> None:
    clock = FakeClock(0.0)
    book = WindowBook(clock)
    book.begin(B, "long")  # keeps B followed
    close(book, clock, 0.0, b_w=30.0)
    close(book, clock, 0.0, b_w=60.0)
    clock.advance(0.2)
    book.begin(B, "short")
    clock.advance(0.3)
    r = book.end(B, "short")
    assert r.total_j == pytest.approx(60.0 * 0.3)
    assert r.interpolated_s == pytest.approx(0.3)


def test_names_limits_and_ended_jobs() -> None:
    clock = FakeClock(0.0)
    book = WindowBook(clock, max_open=2)
    book.begin(A, "x")
    with pytest.raises(WindowError) as taken:
        book.begin(A, "x")
    assert taken.value.status == 409
    book.begin(A, "y")
    with pytest.raises(WindowError) as full:
        book.begin(A, "z")
    assert full.value.status == 429
    book.begin(B, "x")  # another job's names are its own
    with pytest.raises(WindowError) as missing:
        book.end(A, "nope")
    assert missing.value.status == 404
    clock.advance(1.0)
    book.close_interval(clock(), {}, {}, {}, lambda job: job != A)  # A ended: its windows are forgotten
    assert book.open_windows(A) == []
    assert [name for name, _ in book.open_windows(B)] == ["x"]


def test_nested_and_overlapping_windows_each_see_their_own_span() -> None:
    clock = FakeClock(0.0)
    book = WindowBook(clock)
    close(book, clock, 10.0)
    book.begin(A, "outer")
    close(book, clock, 10.0)
    book.begin(A, "inner")
    close(book, clock, 20.0)
    inner = book.end(A, "inner")
    close(book, clock, 40.0)
    outer = book.end(A, "outer")
    assert inner.total_j == pytest.approx(20.0)
    assert outer.total_j == pytest.approx(10.0 + 20.0 + 40.0)


def test_a_process_tree_read_at_its_begin_counts_its_whole_first_interval() -> None:
    from collectors.workloads import JobInfo, JobUsage

    clock = FakeClock(0.0)
    book = WindowBook(clock)
    tree = JobKey("process", "4242")
    close(book, clock, 0.0)  # t=1: the tree is in no scan yet
    clock.advance(0.5)
    book.begin(tree, "w", baseline=JobUsage(tree, JobInfo(), 10**9, 0))  # read at t=1.5
    assert book.baseline(tree) is not None and book.baseline(tree) is None  # handed over once
    clock.advance(0.5)
    # The accountant's first interval of the tree counts from the baseline: all of it is inside.
    book.close_interval(clock(), {tree: {CPU: 30.0}}, {CPU: 100.0}, {}, lambda job: True)
    r = book.end(tree, "w")
    assert r.total_j == pytest.approx(30.0)
