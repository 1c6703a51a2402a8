"""The envelope benchmark's report: medians, spread and the summary line (no timing run)."""

from __future__ import annotations

from bench import bench_envelope as bench
from bench.bench_envelope import Measure

GiB = 1 << 30
MiB = 1 << 20


def runs(size: int, *mib_per_s: float) -> Measure:
    return Measure(seconds=[size / MiB / t for t in mib_per_s], rss_mib=[40.0] * len(mib_per_s))


def results_for(size: int, scale: float) -> dict[str, Measure]:
    return {
        "securedr encrypt": runs(size, 1100 * scale, 1000 * scale, 1200 * scale),
        "securedr encrypt work": runs(size, 1300 * scale, 1350 * scale, 1400 * scale),
        "age -r": runs(size, 900, 1000, 800),
        "securedr decrypt": runs(size, 1500 * scale, 1400 * scale, 1450 * scale),
        "securedr decrypt work": runs(size, 1500 * scale, 1600 * scale, 1550 * scale),
        "age -d": runs(size, 725, 700, 750),
    }


CEILING = {
    bench.CEILING_AES: [9000.0, 9500.0, 9800.0],
    bench.CEILING_SHA: [1700.0, 1680.0, 1690.0],
    bench.CEILING_ONE_THREAD: [1400.0, 1410.0, 1420.0],
    bench.CEILING_TWO_THREADS: [1700.0, 1600.0, 2000.0],
}


def test_median_and_spread_come_from_the_runs() -> None:
    m = runs(GiB, 1100, 1000, 1200)
    assert round(m.throughput(GiB) or 0) == 1100
    spread = m.spread(GiB)
    assert spread is not None and [round(x) for x in spread] == [1000, 1200]


def test_summary_line_has_the_exact_form() -> None:
    sizes = [GiB, 4 * GiB]
    results = {GiB: results_for(GiB, 1.0), 4 * GiB: results_for(4 * GiB, 0.5)}
    line = bench.summary_line(sizes, results, CEILING)
    # encrypt: 1100/900, 550/900; decrypt: 1450/725, 725/725; E: best in-process
    # median (decrypt at 1 GiB, 1550) over the median two-thread ceiling (1700).
    assert line == (
        "bench: encrypt 1.22x age (1 GiB), 0.61x age (4 GiB); "
        "decrypt 2.00x age (1 GiB), 1.00x age (4 GiB); 91% of ceiling"
    )


def test_report_ends_with_the_summary_line_and_shows_spread(capsys) -> None:  # type: ignore[no-untyped-def]
    sizes = [GiB]
    results = {GiB: results_for(GiB, 1.0)}
    bench.print_report(sizes, results, CEILING)
    out = capsys.readouterr().out.rstrip("\n").splitlines()
    assert out[-1] == bench.summary_line(sizes, results, CEILING)
    assert any("1100 (1000-1200)" in line for line in out)  # encrypt: median (min-max)
    assert any("1700 (1600-2000)" in line for line in out)  # the two-thread ceiling
    assert any("decrypt >= 1x age -d" in line and "2.00x MET" in line for line in out)


def test_missing_measurements_read_n_a() -> None:
    line = bench.summary_line([GiB], {GiB: {}}, {})
    assert line == "bench: encrypt n/a (1 GiB); decrypt n/a (1 GiB); n/a of ceiling"
