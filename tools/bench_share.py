"""Benchmark: is ``emma share`` at least as fast as ``sha256sum`` on the same file?

Makes (or takes with ``--file``) a file of random-looking data, reads it once so
both tools start from a warm page cache, then times the real CLI as a
subprocess, ``emma share FILE --out TMP`` (BLAKE3 books, start-up included), and
``sha256sum FILE``, best of ``--rounds`` each. ``emma share --hash sha256`` is
timed too, for information. Exits 1 if emma is slower than sha256sum.

    python tools/bench_share.py                 # 1 GiB temporary file
    python tools/bench_share.py --size 256M
    python tools/bench_share.py --file big.iso
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

MIB = 1024 * 1024
BLOCK = 64 * MIB
STRIDE = 16 * 1024  # a counter every 16 KiB, so no two books are alike
UNITS = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}
REPO = Path(__file__).resolve().parent.parent


def parse_size(text: str) -> int:
    """``1073741824``, ``512M``, ``1G`` or ``64K`` (binary units)."""
    unit = text[-1:].upper() if text[-1:].isalpha() else ""
    number = text[: -1] if unit else text
    if unit not in UNITS or not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use e.g. 1073741824, 512M or 1G")
    return int(number) * UNITS[unit]


def make_file(path: Path, size: int) -> None:
    """Write ``size`` bytes: one random block, stamped with a counter every 16 KiB."""
    block = bytearray(os.urandom(min(BLOCK, size)))
    written = 0
    with open(path, "wb") as handle:
        while written < size:
            for offset in range(0, len(block) - 7, STRIDE):
                struct.pack_into("<Q", block, offset, written + offset)
            chunk = min(len(block), size - written)
            handle.write(memoryview(block)[:chunk])
            written += chunk


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as handle:
        while handle.read(16 * MIB):
            pass


def best_time(command: Sequence[str], rounds: int) -> float:
    """The fastest of ``rounds`` runs of ``command``, in seconds; any failure aborts."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, cwd=REPO, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.decode().strip()}")
        best = min(best, elapsed)
    return best


def emma_share(data_dir: Path, path: Path, out: Path, algorithm: str) -> list[str]:
    return [sys.executable, "-m", "services.cli.app", "--data-dir", str(data_dir), "share", str(path),
            "--out", str(out), "--hash", algorithm]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--file", type=Path, help="benchmark this file instead of a generated one")
    parser.add_argument("--size", type=parse_size, default=1024 * MIB, help="generated file size (default 1G)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command; the best counts")
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        sys.exit("sha256sum not found")

    with tempfile.TemporaryDirectory(prefix="bench_share_") as scratch:
        work = Path(scratch)
        if args.file is not None:
            path: Path = args.file.expanduser().absolute()
        else:
            path = work / "stuff.bin"
            print(f"writing {args.size / MIB:.0f} MiB to {path} ...", flush=True)
            make_file(path, args.size)
        size = path.stat().st_size
        warm(path)

        emma = best_time(emma_share(work / "data", path, work / "out.lib", "blake3"), args.rounds)
        sha = best_time(["sha256sum", str(path)], args.rounds)
        emma_sha = best_time(emma_share(work / "data", path, work / "out256.lib", "sha256"), args.rounds)

    def rate(seconds: float) -> float:
        return size / MIB / seconds

    print(f"file        {path.name}: {size / MIB:.0f} MiB, best of {args.rounds}, warm page cache")
    print(f"emma share  {rate(emma):8.0f} MiB/s  ({emma:.2f} s, blake3, CLI start-up included)")
    print(f"sha256sum   {rate(sha):8.0f} MiB/s  ({sha:.2f} s)")
    print(f"ratio       {sha / emma:8.2f} x  (emma share / sha256sum throughput)")
    print(f"emma share --hash sha256  {rate(emma_sha):.0f} MiB/s  ({emma_sha:.2f} s, for information)")
    if emma > sha:
        print("FAIL: emma share is slower than sha256sum", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
