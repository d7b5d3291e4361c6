"""Generate the Python protobuf modules and their mypy stubs from proto/.

Run from anywhere: ``python tools/gen_proto.py``. Output goes to
``services/wire/pb/``; the result is committed and CI fails when it drifts
(``python tools/gen_proto.py --check``). Generator versions are pinned in
pyproject.toml's ``dev`` extra (grpcio-tools, mypy-protobuf) so every machine
produces the same bytes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "services" / "wire" / "pb"
PACKAGE = "services.wire.pb"

_IMPORT = re.compile(r"^import (\w+_pb2)( as \w+)?$", re.MULTILINE)


def _protoc_plugin() -> str:
    plugin = shutil.which("protoc-gen-mypy") or str(Path(sys.executable).parent / "protoc-gen-mypy")
    if not Path(plugin).exists():
        raise SystemExit("protoc-gen-mypy not found: pip install -e '.[dev]' first")
    return plugin


def generate(out: Path) -> None:
    """Write *_pb2.py and *_pb2.pyi for every proto into ``out``."""
    protos = sorted(p.name for p in PROTO_DIR.glob("*.proto"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--plugin=protoc-gen-mypy={_protoc_plugin()}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_DIR)
    for path in sorted(out.glob("*_pb2.py*")):
        text = _IMPORT.sub(lambda m: f"from {PACKAGE} import {m.group(1)}{m.group(2) or ''}", path.read_text())
        path.write_text(text)
    (out / "__init__.py").write_text('"""Generated protobuf modules: do not edit; run tools/gen_proto.py."""\n')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code differs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)  # into a scratch folder first: a failed run leaves the committed code alone
        if not args.check:
            if OUT_DIR.exists():
                shutil.rmtree(OUT_DIR)
            shutil.copytree(fresh, OUT_DIR)
            return 0
        want = {p.name: p.read_bytes() for p in fresh.iterdir()}
        have = {p.name: p.read_bytes() for p in OUT_DIR.iterdir() if p.is_file()} if OUT_DIR.exists() else {}
        if want != have:
            drift = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
            print(f"generated protobuf code drifted from proto/: {', '.join(drift)}", file=sys.stderr)
            print("run: python tools/gen_proto.py  and commit the result", file=sys.stderr)
            return 1
    print("generated protobuf code matches proto/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
