"""``emma share`` and ``emma lib show|verify``: making and inspecting libraries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.cli.context import cli_context, fail
from services.cli.fmt import printable, utc_time
from services.cli.progress import byte_progress
from services.cli.sharing import ShareError, share_file
from services.peer import links, signing
from services.peer.librarifier import verify
from services.peer.library import HashAlgorithm, Library, LibraryError, read_library
from services.runtime.logs import log_to_files
from services.runtime.units import UnitError, parse_size

lib_app = typer.Typer(help="Inspect and verify library (.lib) files.", no_args_is_help=True, rich_markup_mode=None)


def share(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The file, or folder, to share.")],
    out: Annotated[Path | None, typer.Option(help="Write the library here instead of <data>/libs/.")] = None,
    book_size: Annotated[
        str | None, typer.Option(metavar="SIZE", help="Book size, a power of two: 1M, 4M, 65536 (default: automatic).")
    ] = None,
    hash: Annotated[HashAlgorithm, typer.Option(case_sensitive=False, help="Book hash.")] = HashAlgorithm.BLAKE3,
    hub: Annotated[
        list[str] | None, typer.Option(help="Hub endpoint tcp://HOST:PORT (repeatable; default: from settings).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Librarify FILE (a file or a folder): write lib_<id>.lib and seed it from this player."""
    config = cli_context(ctx).config()
    log_to_files(config.data_dir, "cli")  # what the hub check logs
    try:
        book = parse_size(book_size) if book_size is not None else None
    except UnitError as exc:
        fail(f"--book-size: {exc}")
    try:
        done = share_file(config, file, hubs=tuple(hub or ()), book_size=book, algorithm=hash, out=out)
    except ShareError as exc:
        fail(str(exc))
    library, target, elapsed = done.library, done.lib_path, done.seconds
    if json_out:
        typer.echo(json.dumps({"id": library.id_hex, "path": str(target), "name": library.name,
                               "size": library.size, "books": library.books, "seconds": round(elapsed, 3),
                               "files": len(library.tree) if library.tree is not None else 1,
                               "skipped": done.skipped, "data_dir": str(config.data_dir),
                               "link": links.of_library(library).text if library.hubs else None}))
        return
    typer.echo(f"library {library.id_hex}")
    typer.echo(f"written to {printable(target)}")
    if library.tree is not None:
        skipped = f" ({done.skipped} skipped)" if done.skipped else ""
        typer.echo(f"{len(library.tree)} files{skipped}, {len(library.tree.empty_dirs)} empty folders")
    typer.echo(f"{library.books} books of {library.book_size} bytes, {library.size} bytes in {elapsed:.2f}s")
    typer.echo(f"seeded by the player of {config.data_dir} (now if it runs, else when `emma peer` starts)")
    if library.hubs:
        typer.echo(f"link: {printable(links.of_library(library).text)}")


LARGEST_SHOWN = 5


def describe(library: Library) -> dict[str, object]:
    info: dict[str, object] = {
        "id": library.id_hex,
        "name": library.name,
        "size": library.size,
        "book_size": library.book_size,
        "books": library.books,
        "hash": library.hash_algorithm.value,
        "hubs": list(library.hubs),
        "created_at": library.created_at,
        "creator": library.creator,
        "format_version": library.format_version,
        "hub_keys": [library.hub_key(n) for n in range(len(library.hubs))],
        "publisher": library.publisher_key.hex(),  # empty: unsigned; a signature that does not hold fails to load
    }
    tree = library.tree
    if tree is not None:
        info["files"] = [{"path": tree.paths[i], "size": tree.sizes[i], "root": tree.root(i).hex(),
                          "first_book": tree.first_books[i], "books": len(tree.books_of(i))} for i in range(len(tree))]
        info["empty_dirs"] = list(tree.empty_dirs)
    return info


def tree_summary(library: Library) -> list[tuple[str, object]]:
    """Rows for `lib show` of a tree: how many files and folders, and the largest files."""
    tree = library.tree
    if tree is None:
        return []
    rows: list[tuple[str, object]] = [("files", f"{len(tree)} files, {len(tree.folders())} folders "
                                                f"({len(tree.empty_dirs)} empty)")]
    largest = sorted(range(len(tree)), key=lambda i: (-tree.sizes[i], tree.paths[i]))[:LARGEST_SHOWN]
    for rank, index in enumerate(largest):
        rows.append(("largest" if rank == 0 else "", f"{tree.sizes[index]:>14} bytes  {tree.paths[index]}"))
    if len(tree) > len(largest):
        rows.append(("", f"... and {len(tree) - len(largest)} more (`--json` lists every file)"))
    return rows


def signed_by(library: Library) -> str:
    """Who signed a loaded library (its signature held, or it would not have loaded)."""
    if not library.publisher_key:
        return "unsigned (made before signed libraries, or by hand): anyone could have changed its hubs"
    return f"publisher {library.publisher_key.hex()} (the signature holds)"


def trusted_refusal(ctx: typer.Context, library: Library) -> str:
    """Why this player's trusted publishers refuse ``library`` ("" when they take it)."""
    config = cli_context(ctx).config()
    try:
        return signing.Trusted.from_file(config.get("security.publishers")).refusal(library.publisher_key)
    except signing.SignatureError as exc:
        fail(str(exc))


def _load(path: Path) -> Library:
    try:
        return read_library(path)
    except LibraryError as exc:
        fail(str(exc))


@lib_app.command("show")
def show(
    ctx: typer.Context,
    lib: Annotated[Path, typer.Argument(help="A .lib file.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Print a readable summary of a library (of a tree: its files and the largest; --json lists every file): who
    signed it, and whether this player trusts them."""
    library = _load(lib)
    info = describe(library)
    refusal = trusted_refusal(ctx, library)
    if json_out:
        typer.echo(json.dumps({**info, "trusted": not refusal}))
        return
    created = utc_time(int(str(info["created_at"])))
    rows = [("id", info["id"]), ("name", info["name"] if library.tree is None else f"{info['name']}/"),
            ("size", f"{info['size']} bytes"), *tree_summary(library),
            ("books", f"{info['books']} x {info['book_size']} bytes"), ("hash", info["hash"]),
            ("hubs", ", ".join(library_hubs(info))), ("created", created), ("creator", info["creator"]),
            ("signed", signed_by(library))]
    keys = [f"{hub} {library.hub_key(n) or '(in clear)'}" for n, hub in enumerate(library.hubs)]
    rows += [("hub-key", key) for key in keys]
    if refusal:
        rows.append(("trust", f"refused here: {refusal}"))
    for key, value in rows:
        typer.echo(f"{key:8} {printable(value)}")


def library_hubs(info: dict[str, object]) -> list[str]:
    hubs = info["hubs"]
    return [str(h) for h in hubs] if isinstance(hubs, list) else []


@lib_app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    lib: Annotated[Path, typer.Argument(help="A .lib file.")],
    path: Annotated[Path | None, typer.Argument(
        help="The file (or, of a folder's library, the folder) to check (none: the library alone).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Check LIB's signature (and that this player trusts its publisher), then re-hash PATH against it; exit 0
    only if all holds and every book is good."""
    library = _load(lib)  # a signature that does not hold fails here, in one line
    refusal = trusted_refusal(ctx, library)
    if refusal:
        fail(refusal, code=1)
    if path is None:
        if json_out:
            typer.echo(json.dumps({"ok": True, "publisher": library.publisher_key.hex()}))
        else:
            typer.echo(f"signed by {signed_by(library)}")
            typer.echo("OK")
        return
    try:
        with byte_progress(f"verifying {printable(path.name)}", library.size) as advance:
            result = verify(library, path, advance)
    except LibraryError as exc:
        fail(str(exc))
    if json_out:
        typer.echo(json.dumps({"ok": result.ok, "good": len(result.good), "bad": result.bad,
                               "size_matches": result.size_matches}))
    else:
        typer.echo(f"{len(result.good)}/{library.books} books good")
        if result.bad:
            shown = ", ".join(str(i) for i in result.bad[:20]) + (" ..." if len(result.bad) > 20 else "")
            typer.echo(f"bad books: {shown}")
        if not result.size_matches:
            what = "a file is missing or of another size" if library.tree is not None else \
                f"size differs: library says {library.size} bytes"
            typer.echo(what)
        typer.echo("OK" if result.ok else "FAILED")
    raise typer.Exit(0 if result.ok else 1)
