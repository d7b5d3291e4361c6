"""Sharing by link through the real CLI: `emma link` prints one line, `emma get LINK` fetches the library file
from a player the hub names, checks it against the link's id and downloads; bad links write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.runtime import config as config_mod
from tests.cli.helpers import assert_one_line_error, emma
from tools.swarm import Swarm, make_stuff

pytestmark = pytest.mark.slow
BOOK = 16 * 1024


def test_share_by_link_with_hub_keys(tmp_path: Path) -> None:
    source = tmp_path / "stuff" / "clip.bin"
    source.parent.mkdir(parents=True)
    make_stuff(source, 20 * BOOK + 3, seed=8)
    with Swarm(tmp_path / "swarm", maestro=True) as swarm:  # CURVE everywhere: the hub's key is in the link
        swarm.start_hub()
        seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
        library = swarm.share(seed, source, BOOK)
        swarm.start_player(seed)
        swarm.start_player(leecher)
        swarm.wait_serving([seed, leecher])
        swarm.wait_announced(library, [seed])

        lib = config_mod.load(seed.data_dir).libs_dir / library.file_name
        printed = emma(seed.data_dir, "link", str(lib))
        assert printed.exit_code == 0, printed.output
        [link] = printed.stdout.splitlines()
        assert link.startswith(f"emma:{library.id_hex}?hub=") and f"@{swarm.hub_endpoint}" in link
        assert json.loads(emma(seed.data_dir, "link", str(lib), "--json").stdout)["link"] == link

        libs = config_mod.load(leecher.data_dir).libs_dir
        before = sorted(libs.iterdir())
        unknown = link.replace(library.id_hex, "ab" * 32)
        for bad, error in [(link[:40], "64 hex digits"), (link + "&x=1", "holds 'x'"),
                           (unknown, "no player serves library abababababababab")]:
            assert_one_line_error(emma(leecher.data_dir, "get", bad), error)
        assert sorted(libs.iterdir()) == before  # nothing written
        assert json.loads(emma(leecher.data_dir, "downloads", "--json").stdout) == []

        got = emma(leecher.data_dir, "get", link, "--wait", "--timeout", "120", "--json")
        assert got.exit_code == 0, got.output
        result = json.loads(got.stdout)
        assert (result["id"], result["name"], result["state"]) == (library.id_hex, "clip.bin", "seeding")
        assert Path(result["path"]).read_bytes() == source.read_bytes()
        assert (libs / library.file_name).read_bytes() == lib.read_bytes()  # the publisher's file, signature kept
