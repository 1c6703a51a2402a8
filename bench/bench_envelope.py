"""Benchmark: SecureDR envelopes against age, restic and the raw-crypto ceiling.

Prints one table with throughput (MiB of plaintext per second: the median of ``--repeat``
runs, with the slowest and fastest run) and peak RSS (MiB, the maximum over runs) for every
tool, on the same random file, for each size in ``--sizes``, then whether the targets are
met, what caps the throughput, and last a one-line summary (see :func:`summary_line`)::

    bench: encrypt Ax age (1 GiB), Bx age (4 GiB); decrypt Cx age (1 GiB), Dx age (4 GiB);
    E of ceiling            <- all on one line

Every tool, SecureDR included, runs as a child process under GNU time, so that its wall
time and peak RSS are measured the same way. Test files live in a temporary directory that
is deleted at the end.

    PYTHONPATH=plugins .venv/bin/python bench/bench_envelope.py --sizes 1G,4G

Timing is reported, never asserted: numbers from a shared 2-core VM are noisy."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

MiB = 1 << 20
GNU_TIME = "/usr/bin/time"  # Debian package "time"; measures each child's peak RSS
KMS_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/bench"
# Stands in for a KMS CiphertextBlob, which for a 32-byte key is about this long.
KMS_BLOB = bytes(184)


# --- Child side: SecureDR in its own process ---------------------------------------------


def child_main(argv: Sequence[str]) -> int:
    """``--child encrypt|decrypt|verify SRC DST KEYS_JSON``: one SecureDR operation."""
    from securedr.core import envelope

    started = time.perf_counter()
    op, src, dst, keys_path = argv
    keys = json.loads(Path(keys_path).read_text())
    data_key = bytes.fromhex(keys["data_key"])
    if op == "encrypt":
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            result = envelope.encrypt_stream(
                fin,
                fout,
                data_key=data_key,
                kms_key_arn=KMS_KEY_ARN,
                kms_wrapped_key=KMS_BLOB,
                recovery_public_key=keys["recovery_public_key"],
            )
    elif op == "decrypt":
        # No fsync: neither age nor restic syncs what it writes, so neither do we here.
        result = envelope.decrypt_file(
            src, dst, data_key=data_key, expected_sha256=keys["sha256"], fsync=False
        )
    elif op == "verify":
        with open(src, "rb") as fin:
            result = envelope.verify_stream(fin, data_key=data_key, expected_sha256=keys["sha256"])
    else:
        raise SystemExit(f"unknown child operation {op!r}")
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"sha256": result.plaintext_sha256, "size": result.plaintext_size, "seconds": seconds}
        )
    )
    return 0


# --- Parent side ---------------------------------------------------------------------------


@dataclass
class Measure:
    """All runs of one (operation, size)."""

    seconds: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)

    def throughput(self, size: int) -> float | None:
        """MiB/s of the median run."""
        return size / MiB / statistics.median(self.seconds) if self.seconds else None

    def spread(self, size: int) -> tuple[float, float] | None:
        """MiB/s of the slowest and the fastest run."""
        if not self.seconds:
            return None
        return size / MiB / max(self.seconds), size / MiB / min(self.seconds)

    def peak_rss(self) -> float | None:
        return max(self.rss_mib) if self.rss_mib else None


def read_through(path: Path) -> None:
    """Read a file (or every file under a directory) once, so that it is hot in the page
    cache and in the VM's memory."""
    buf = bytearray(MiB)
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            with open(file, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def run_child(
    cmd: Sequence[str],
    work: Path,
    env: dict[str, str] | None = None,
    inputs: Sequence[Path] = (),
    warm: int = 0,
) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, peak RSS MiB of the child, stdout).

    Right before the child starts, ``warm`` bytes are written and deleted (see
    :func:`warm_page_pool`), so that every tool writes its output into memory freed just
    before it started, whatever ran before it.

    Peak RSS comes from GNU time, which reports its own child's ``ru_maxrss``. Linux keeps
    a process's peak RSS across ``exec``, so a child forked straight from this (large)
    Python process would report at least this process's RSS, whatever the tool used.
    """
    os.sync()  # start every run with no dirty pages left over from the previous one
    # Same start for every tool: its input hot in the page cache. On this kind of VM, memory
    # untouched for a while is slow to touch again, which would favour whoever runs second.
    for path in inputs:
        read_through(path)
    if warm:
        warm_page_pool(work, warm)
    rss_file = work / "rss.txt"
    start = time.perf_counter()
    done = subprocess.run(
        [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd],
        capture_output=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])}... exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}"
        )
    rss_kib = int(rss_file.read_text().split()[-1])
    return elapsed, rss_kib / 1024, done.stdout.decode()


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def make_random_file(path: Path, size: int) -> str:
    """Incompressible test data (AES-CTR keystream, fast); returns its SHA-256."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    stream = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    zeros = bytes(4 * MiB)
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = stream.update(zeros[: min(left, len(zeros))])
            sha.update(block)
            f.write(block)
            left -= len(block)
    return sha.hexdigest()


def warm_page_pool(directory: Path, size: int) -> None:
    """Write and delete ``size`` bytes so that outputs land on memory the VM already backs.

    On this VM, the system time a process spends writing into the page cache swings with
    what ran before it: in one series, decrypt_file took 0.4 to 2.2 s of system time for
    the same 1 GiB, and in the benchmark the tool that ran right after another tool's
    output was deleted wrote fastest. (The balloon device has free page reporting, so
    memory freed a few seconds earlier may have gone back to the host.) Every run gets
    this same preamble, and each size a first one of twice its size.
    """
    scratch = directory / "warm.bin"
    block = bytes(16 * MiB)
    with open(scratch, "wb") as f:
        for _ in range(0, size, len(block)):
            f.write(block)
    scratch.unlink()
    os.sync()


CEILING_AES = "AES-256-GCM encrypt (cryptography)"
CEILING_SHA = "SHA-256 (hashlib)"
CEILING_ONE_THREAD = "AES-GCM + SHA-256, 1 thread"
CEILING_TWO_THREADS = "AES-GCM || SHA-256, 2 threads"


def sample_ceilings(samples: dict[str, list[float]], total: int = 1 << 30) -> None:
    """Add one in-process MiB/s sample per primitive row, on 1 MiB buffers: the most the
    libraries can do with no I/O. Called between rounds, so that the ceiling sees the same
    background load as the tools it is compared with."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = memoryview(bytearray(os.urandom(MiB)))
    out = memoryview(bytearray(MiB + 16))
    aead = AESGCM(os.urandom(32))
    nonce = bytes(12)
    calls = max(1, total // MiB)

    def aes() -> None:
        for _ in range(calls):
            aead.encrypt_into(nonce, data, None, out)

    def sha() -> None:
        h = hashlib.sha256()
        for _ in range(calls):
            h.update(data)

    def both_one_thread() -> None:
        h = hashlib.sha256()
        for _ in range(calls):
            h.update(data)
            aead.encrypt_into(nonce, data, None, out)

    def both_two_threads() -> None:
        worker = threading.Thread(target=sha)
        worker.start()
        aes()
        worker.join()

    for name, fn in (
        (CEILING_AES, aes),
        (CEILING_SHA, sha),
        (CEILING_ONE_THREAD, both_one_thread),
        (CEILING_TWO_THREADS, both_two_threads),
    ):
        start = time.perf_counter()
        fn()
        samples.setdefault(name, []).append(calls / (time.perf_counter() - start))


def missing_tools() -> list[str]:
    missing = [tool for tool in ("age", "age-keygen", "restic") if shutil.which(tool) is None]
    return missing if Path(GNU_TIME).exists() else [*missing, GNU_TIME]


def bench_size(
    work: Path, size: int, repeat: int, py: str, ceiling: dict[str, list[float]]
) -> dict[str, Measure]:
    """Run every tool ``repeat`` times on one random file of ``size`` bytes, and take one
    ceiling sample per round into ``ceiling``."""
    results: dict[str, Measure] = {}
    src = work / "plain.bin"
    print(f"[{human(size)}] writing test file...", file=sys.stderr)
    sha = make_random_file(src, size)
    warm_page_pool(work, 2 * size)

    def measure(
        label: str, cmd: Sequence[str], inputs: Sequence[Path], env: dict[str, str] | None = None
    ) -> str:
        elapsed, rss, out = run_child(cmd, work, env, inputs, warm=size)
        m = results.setdefault(label, Measure())
        m.seconds.append(elapsed)
        m.rss_mib.append(rss)
        if label.startswith("securedr"):
            # The part of the wall time that is Python starting and importing, not work.
            work_seconds = json.loads(out)["seconds"]
            startup = results.setdefault("securedr startup", Measure())
            startup.seconds.append(elapsed - work_seconds)
            results.setdefault(f"{label} work", Measure()).seconds.append(work_seconds)
        print(
            f"[{human(size)}] {label}: {size / MiB / elapsed:.0f} MiB/s, {rss:.1f} MiB",
            file=sys.stderr,
        )
        return out

    def remove(*paths: Path) -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # Keys and repositories, untimed. restic runs with its defaults (repository v2,
    # compression auto) into a fresh local repository for every backup.
    from securedr.core.envelope import generate_recovery_keypair

    _, public = generate_recovery_keypair()
    keys = work / "keys.json"
    keys.write_text(
        json.dumps(
            {
                "data_key": os.urandom(32).hex(),
                "recovery_public_key": public.decode(),
                "sha256": sha,
            }
        )
    )
    me = [py, str(Path(__file__).resolve()), "--child"]
    enc, dec = work / "securedr.enc", work / "securedr.out"
    identity = work / "age.key"
    remove(identity)
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    age_enc, age_dec = work / "age.enc", work / "age.out"
    repo, restored = work / "restic-repo", work / "restic-restore"
    env = {
        **os.environ,
        "RESTIC_PASSWORD": "bench-only-password",
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }

    def securedr_encrypt() -> None:
        remove(enc)
        got = json.loads(
            measure("securedr encrypt", [*me, "encrypt", str(src), str(enc), str(keys)], [src])
        )
        assert got["sha256"] == sha, "SecureDR returned a wrong SHA-256"

    def age_encrypt() -> None:
        remove(age_enc)
        measure("age -r", ["age", "-r", recipient, "-o", str(age_enc), str(src)], [src])

    def restic_backup() -> None:
        remove(repo, work / "restic-cache")
        subprocess.run(
            ["restic", "-r", str(repo), "init", "-q"], check=True, capture_output=True, env=env
        )
        measure("restic backup", ["restic", "-r", str(repo), "backup", "-q", str(src)], [src], env)

    def securedr_decrypt() -> None:
        got = json.loads(
            measure("securedr decrypt", [*me, "decrypt", str(enc), str(dec), str(keys)], [enc])
        )
        assert got["sha256"] == sha and dec.stat().st_size == size
        remove(dec)
        measure("securedr verify", [*me, "verify", str(enc), "-", str(keys)], [enc])

    def age_decrypt() -> None:
        measure(
            "age -d",
            ["age", "-d", "-i", str(identity), "-o", str(age_dec), str(age_enc)],
            [age_enc],
        )
        assert age_dec.stat().st_size == size
        remove(age_dec)

    def restic_restore() -> None:
        measure(
            "restic restore",
            ["restic", "-r", str(repo), "restore", "latest", "-q", "--target", str(restored)],
            [repo],
            env,
        )
        assert (restored / src.relative_to(src.anchor)).stat().st_size == size
        remove(restored)
        measure(
            "restic check --read-data",
            ["restic", "-r", str(repo), "check", "--read-data"],
            [repo],
            env,
        )

    # Tools take turns within each round, and who goes first rotates from round to round:
    # on a shared VM both background load and how costly fresh memory is drift over time,
    # and the first writer after a phase change pays most for fresh pages.
    for phase in (
        [securedr_encrypt, age_encrypt, restic_backup],
        [securedr_decrypt, age_decrypt, restic_restore],
    ):
        for round_no in range(repeat):
            sample_ceilings(ceiling)
            shift = round_no % len(phase)
            for step in phase[shift:] + phase[:shift]:
                step()
    remove(enc, age_enc)
    remove(repo, work / "restic-cache", src)
    return results


ROWS: list[tuple[str, list[str]]] = [
    ("encrypt + hash", ["securedr encrypt", "securedr encrypt work", "age -r", "restic backup"]),
    (
        "decrypt + verify",
        [
            "securedr decrypt",
            "securedr decrypt work",
            "securedr verify",
            "securedr verify work",
            "age -d",
            "restic restore",
            "restic check --read-data",
        ],
    ),
]
LABELS = {
    "securedr encrypt": "SecureDR encrypt_stream",
    "securedr decrypt": "SecureDR decrypt_file",
    "securedr verify": "SecureDR verify_stream (no output)",
    "securedr encrypt work": "  same, without Python start-up",
    "securedr decrypt work": "  same, without Python start-up",
    "securedr verify work": "  same, without Python start-up",
    "age -r": "age -r",
    "age -d": "age -d -i",
    "restic backup": "restic backup",
    "restic restore": "restic restore",
    "restic check --read-data": "restic check --read-data",
}


AGE_TARGET = 1.0  # SecureDR at least as fast as age
CEILING_TARGET = 0.75  # SecureDR at least 75% of the two-thread ceiling
RSS_LIMIT_MIB = 64.0


def ratio_to(results: dict[str, Measure], size: int, mine: str, theirs: str) -> float | None:
    """Median throughput of ``mine`` over that of ``theirs``."""
    a, b = results.get(mine), results.get(theirs)
    ta, tb = (a.throughput(size) if a else None), (b.throughput(size) if b else None)
    return ta / tb if ta and tb else None


def of_ceiling(results: dict[str, Measure], size: int, mine: str, ceiling: float) -> float | None:
    m = results.get(mine)
    t = m.throughput(size) if m else None
    return t / ceiling if t and ceiling else None


def best_of_ceiling(
    sizes: Sequence[int], results: dict[int, dict[str, Measure]], ceiling: dict[str, list[float]]
) -> float | None:
    """E: SecureDR's best in-process encrypt or decrypt_file median throughput (any size)
    over the median two-thread AES-GCM || SHA-256 ceiling. In-process (the child's own
    timing of the call, without interpreter start-up) because the ceiling is in-process."""
    two = ceiling.get(CEILING_TWO_THREADS)
    if not two:
        return None
    fractions = [
        f
        for s in sizes
        for key in ("securedr encrypt work", "securedr decrypt work")
        if (f := of_ceiling(results[s], s, key, statistics.median(two))) is not None
    ]
    return max(fractions) if fractions else None


def summary_line(
    sizes: Sequence[int], results: dict[int, dict[str, Measure]], ceiling: dict[str, list[float]]
) -> str:
    """The report's last line: SecureDR over age (whole processes, medians) per operation and
    size, then E (see :func:`best_of_ceiling`)."""

    def ratios(mine: str, theirs: str) -> str:
        parts = []
        for s in sizes:
            r = ratio_to(results[s], s, mine, theirs)
            parts.append(f"{r:.2f}x age ({human(s)})" if r is not None else f"n/a ({human(s)})")
        return ", ".join(parts)

    e = best_of_ceiling(sizes, results, ceiling)
    return (
        f"bench: encrypt {ratios('securedr encrypt', 'age -r')}; "
        f"decrypt {ratios('securedr decrypt', 'age -d')}; "
        f"{f'{e:.0%}' if e is not None else 'n/a'} of ceiling"
    )


def print_report(
    sizes: Sequence[int], results: dict[int, dict[str, Measure]], ceiling: dict[str, list[float]]
) -> None:
    width = 36
    cell = 22
    head = f"{'operation':<18}{'tool':<{width}}" + "".join(
        f"{human(s) + ' MiB/s (min-max)':>{cell}}{'RSS MiB':>9}" for s in sizes
    )
    print(head)
    print("-" * len(head))

    def tput_cell(median: float | None, spread: tuple[float, float] | None) -> str:
        if median is None or spread is None:
            return f"{'-':>{cell}}"
        return f"{f'{median:.0f} ({spread[0]:.0f}-{spread[1]:.0f})':>{cell}}"

    for group, keys in ROWS:
        for i, key in enumerate(keys):
            line = f"{group if i == 0 else '':<18}{LABELS[key]:<{width}}"
            for s in sizes:
                m = results[s].get(key)
                line += tput_cell(m.throughput(s) if m else None, m.spread(s) if m else None)
                rss = m.peak_rss() if m else None
                line += f"{rss:>9.1f}" if rss else f"{'-':>9}"
            print(line)
    for i, (name, values) in enumerate(ceiling.items()):
        group = "ceiling (no I/O)" if i == 0 else ""
        median = statistics.median(values)
        print(
            f"{group:<18}{name:<{width}}{tput_cell(median, (min(values), max(values)))}"
            f"  in-process, {len(values)} samples between rounds"
        )
    print()
    startups = [
        statistics.median(results[s]["securedr startup"].seconds)
        for s in sizes
        if "securedr startup" in results[s]
    ]
    if startups:
        print(
            "SecureDR rows include the child's Python start-up and imports, "
            f"{statistics.median(startups):.2f} s per run (median); the 'without Python "
            "start-up' rows are the child's own timing of the call.\n"
        )

    two = statistics.median(ceiling[CEILING_TWO_THREADS])
    sha = statistics.median(ceiling[CEILING_SHA])
    aes = statistics.median(ceiling[CEILING_AES])
    print(
        f"what caps it: SHA-256 alone runs at {sha:.0f} MiB/s and AES-256-GCM alone at "
        f"{aes:.0f} MiB/s on one core; the two-thread ceiling ({two:.0f} MiB/s) is "
        f"{two / sha:.0%} of SHA-256 alone. The whole-plaintext SHA-256 is one sequential "
        "hash, so no number of threads takes SecureDR past it.\n"
    )

    def verdict(value: float | None, goal: float, unit: str) -> str:
        if value is None:
            return "n/a"
        shown = f"{value:.0%}" if unit == "%" else f"{value:.2f}x"
        return f"{shown} {'MET' if value >= goal else 'NOT MET'}"

    def row(name: str, fn: Callable[[int], float | None], goal: float, unit: str) -> None:
        parts = [f"{human(s)}: {verdict(fn(s), goal, unit)}" for s in sizes]
        print(f"  {name:<46}" + "; ".join(parts))

    print(f"targets (medians; ceiling = AES-GCM || SHA-256 on 2 threads, {two:.0f} MiB/s):")
    row(
        "encrypt >= 1x age -r (whole processes)",
        lambda s: ratio_to(results[s], s, "securedr encrypt", "age -r"),
        AGE_TARGET,
        "x",
    )
    row(
        "decrypt >= 1x age -d (whole processes)",
        lambda s: ratio_to(results[s], s, "securedr decrypt", "age -d"),
        AGE_TARGET,
        "x",
    )
    for op in ("encrypt", "decrypt"):
        row(
            f"{op} >= 75% of ceiling (in-process)",
            lambda s, op=op: of_ceiling(results[s], s, f"securedr {op} work", two),
            CEILING_TARGET,
            "%",
        )
    for op in ("encrypt", "decrypt"):
        row(
            f"  {op}, whole process (with start-up)",
            lambda s, op=op: of_ceiling(results[s], s, f"securedr {op}", two),
            CEILING_TARGET,
            "%",
        )
    parts = []
    for s in sizes:
        rss = max(
            (results[s][k].peak_rss() or 0.0)
            for k in ("securedr encrypt", "securedr decrypt", "securedr verify")
            if k in results[s]
        )
        verdict_rss = "MET" if rss <= RSS_LIMIT_MIB else "NOT MET"
        parts.append(f"{human(s)}: {rss:.1f} MiB {verdict_rss}")
    print(f"  {'SecureDR peak RSS <= 64 MiB':<46}" + "; ".join(parts))
    print()
    print(summary_line(sizes, results, ceiling))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1G,4G", help="comma-separated, e.g. 64M,1G,4G")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (median is shown)")
    parser.add_argument("--dir", default=None, help="where to put test files (default: $TMPDIR)")
    args = parser.parse_args(argv)

    missing = missing_tools()
    if missing:
        print(
            f"missing tools: {', '.join(missing)}. Run `make bench`, which installs them "
            "(apt-get install -y age restic time).",
            file=sys.stderr,
        )
        return 2
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="securedr-bench-", dir=args.dir))
    # A plain `kill` should still remove the multi-GiB test files: make it an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        free = shutil.disk_usage(work).free
        if free < 5 * max(sizes):
            print(f"need about {human(5 * max(sizes))} free in {work}", file=sys.stderr)
            return 2
        load_before = os.getloadavg()[0]
        ceiling: dict[str, list[float]] = {}
        results = {s: bench_size(work, s, args.repeat, sys.executable, ceiling) for s in sizes}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    where = args.dir or "$TMPDIR"
    print(
        f"\nSecureDR envelope benchmark: {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}, median (slowest-fastest) of {args.repeat} runs, files in "
        f"{where}; "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    print_report(sizes, results, ceiling)
    return 0


if __name__ == "__main__":
    sys.exit(main())
