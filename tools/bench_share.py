"""Benchmark: is ``emma share`` at least as fast as ``sha256sum`` on the same file?

Makes (or takes with ``--file``) a file of random-looking data, reads it once so
both tools start from a warm page cache, then times the real CLI as a
subprocess, ``emma share FILE --out TMP`` (BLAKE3 books, start-up included), and
``sha256sum FILE``, best of ``--rounds`` each. ``emma share --hash sha256`` is
timed too, for information. Exits 1 if emma is slower than sha256sum.

    python tools/bench_share.py                 # 1 GiB temporary file
    python tools/bench_share.py --size 256M
    python tools/bench_share.py --file big.iso
    python tools/bench_share.py --dir           # trees: 10,000 files of 4 KiB to 1 MiB, and 8 large files

With ``--dir`` it times ``emma share DIR`` against ``find DIR -type f -print0 | xargs -0
sha256sum`` on two generated trees (target: at least 2x sha256sum's throughput on both), and
how long a library of 100,000 small files takes to load and how many bytes each file costs
in it beyond its book hashes (targets: under 1 s, at most 100 bytes). Exits 1 if any target
is missed.
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

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.runtime.units import parse_size

MIB = 1024 * 1024
BLOCK = 64 * MIB
STRIDE = 16 * 1024  # a counter every 16 KiB, so no two books are alike
REPO = Path(__file__).resolve().parent.parent


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


def warm_tree(root: Path) -> int:
    """Read every file under ``root`` once; the bytes in all."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            warm(path)
            total += path.stat().st_size
    return total


def share_tree(work: Path, root: Path, rounds: int) -> bool:
    """emma share DIR against find | xargs sha256sum on ``root``: True if emma is at least twice as fast."""
    size = warm_tree(root)
    files = sum(len(names) for _, _, names in os.walk(root))
    emma = best_time(emma_share(work / "data", root, work / "tree.lib", "blake3"), rounds)
    sha = best_time(["sh", "-c", f"find '{root}' -type f -print0 | xargs -0 sha256sum"], rounds)

    def rate(seconds: float) -> float:
        return size / MIB / seconds

    ratio = sha / emma
    print(f"tree        {root.name}: {files} files, {size / MIB:.0f} MiB, best of {rounds}, warm page cache")
    print(f"  emma share DIR          {rate(emma):8.0f} MiB/s  ({emma:.2f} s, blake3, CLI start-up included)")
    print(f"  find | xargs sha256sum  {rate(sha):8.0f} MiB/s  ({sha:.2f} s)")
    print(f"  ratio                   {ratio:8.2f} x  (target >= 2.0: {'met' if ratio >= 2.0 else 'NOT met'})")
    return ratio >= 2.0


def load_many(work: Path, count: int = 100_000) -> bool:
    """A library of ``count`` small files: seconds to read and check it, bytes per file beyond book hashes."""
    from services.peer.library import HASH_LEN, FileEntry, HashAlgorithm, make_library, read_library, write_library

    entries = [FileEntry(f"shard-{i // 1000:03d}/part-{i:06d}.bin", 4096 + i % 8192, os.urandom(32), i)
               for i in range(count)]
    library = make_library(name="many", size=sum(e.size for e in entries), book_size=64 * 1024,
                           hash_algorithm=HashAlgorithm.BLAKE3, book_hashes=os.urandom(HASH_LEN * count),
                           hubs=("tcp://127.0.0.1:7070",), created_at=1, creator="bench", files=entries)
    path = work / "many.lib"
    write_library(library, path)
    per_file = (path.stat().st_size - library.books * HASH_LEN) / count
    seconds = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        read_library(path)
        seconds = min(seconds, time.perf_counter() - started)
    ok = seconds < 1.0 and per_file <= 100
    print(f"library of {count} files: loads in {seconds:.2f} s (target < 1 s), {per_file:.1f} bytes of metadata "
          f"per file beyond its book hash (target <= 100): {'met' if ok else 'NOT met'}")
    return ok


def main_dir(args: argparse.Namespace) -> int:
    from tools.swarm import make_sized_tree

    with tempfile.TemporaryDirectory(prefix="bench_share_dir_") as scratch:
        work = Path(scratch)
        small, large = work / "small-files", work / "large-files"
        print(f"writing {args.files} files of 4 KiB to 1 MiB ...", flush=True)
        make_sized_tree(small, args.files, 4096, MIB, seed=1)
        print(f"writing 8 files of {args.large / MIB:.0f} MiB ...", flush=True)
        make_sized_tree(large, 8, args.large, args.large + 1, seed=2)
        ok = share_tree(work, small, args.rounds)
        ok &= share_tree(work, large, args.rounds)
        ok &= load_many(work)
    if not ok:
        print("FAIL: a target was missed", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--file", type=Path, help="benchmark this file instead of a generated one")
    parser.add_argument("--size", type=parse_size, default=1024 * MIB, help="generated file size (default 1G)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command; the best counts")
    parser.add_argument("--dir", action="store_true", help="benchmark trees (emma share DIR) instead of a file")
    parser.add_argument("--files", type=int, default=10_000, help="with --dir: files in the tree of small files")
    parser.add_argument("--large", type=parse_size, default=128 * MIB,
                        help="with --dir: size of each of the 8 large files (default 128M)")
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        sys.exit("sha256sum not found")
    if args.dir:
        return main_dir(args)

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
