"""`auwild-extract inspect | verify | merge | consolidate | transcode | export`: thin wrappers over the store library."""

from __future__ import annotations

import argparse
import json
import sys

from data_manifest.cli_options import (
    add_command,
    add_json,
    add_out,
    add_progress,
    add_store,
    add_tracks,
    write_json,
)
from data_manifest.user_error import UserError
from extract.store.fingerprint import FingerprintMismatch
from extract.store.integrity import CorruptChunk, MissingChunk
from extract.store.lease import TrackLeased
from extract.store.location import StoreNotFound
from extract.store.writer import StoreVersionError


def _storage_options(args: argparse.Namespace) -> dict:
    if not getattr(args, "storage_options", None):
        return {}
    try:
        opts = json.loads(args.storage_options)
    except json.JSONDecodeError as exc:
        raise UserError(f"--storage-options is not valid JSON: {exc}") from None
    if not isinstance(opts, dict):
        raise UserError("--storage-options must be a JSON object")
    return opts


def _user_errors(func):
    """Turn the store's expected failures into one-line user errors."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (
            StoreNotFound,
            StoreVersionError,
            FingerprintMismatch,
            MissingChunk,
            CorruptChunk,
            TrackLeased,
            ValueError,
        ) as exc:
            raise UserError(str(exc)) from exc

    return run


@_user_errors
def _inspect(args: argparse.Namespace) -> int:
    from extract.store.inspect import format_inspect, inspect_store

    info = inspect_store(args.store, _storage_options(args))
    if not write_json(args.json, json.dumps(info, indent=2)):
        print(format_inspect(info))
    return 0


@_user_errors
def _verify(args: argparse.Namespace) -> int:
    from extract.store.verify import format_verify, format_verify_json, verify_store

    report = verify_store(args.store, _storage_options(args))
    if not write_json(args.json, format_verify_json(report)):
        print(format_verify(report), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


@_user_errors
def _merge(args: argparse.Namespace) -> int:
    from extract.store.merge import format_merge, merge_stores

    print(format_merge(merge_stores(args.stores, args.out, _storage_options(args))))
    return 0


@_user_errors
def _consolidate(args: argparse.Namespace) -> int:
    from extract.store.consolidate import consolidate_store

    n = consolidate_store(args.store, _storage_options(args))
    print(f"{args.store}: consolidated metadata of {n} nodes")
    return 0


@_user_errors
def _transcode(args: argparse.Namespace) -> int:
    from extract.store.quantize import TokenStorage
    from extract.store.transcode import transcode_store

    storage = TokenStorage(kind=args.token_dtype, pool=args.patch_pool or None)
    done = transcode_store(args.store, args.out, storage, storage_options=_storage_options(args))
    print(
        f"{args.out}: {len(done)} tracks copied with patch tokens {storage.kind}, pool {storage.pool}"
    )
    return 0


@_user_errors
def _export(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from extract.store.export import export_store, format_export

    arrays = [a.strip() for a in args.arrays.split(",") if a.strip()] if args.arrays else None
    report = export_store(
        args.store,
        args.out,
        args.format,
        arrays=arrays,
        tracks=args.tracks,
        dequantize=args.dequantize,
        gzip=args.gzip,
        overwrite=args.overwrite,
        storage_options=_storage_options(args),
        progress=not args.no_progress,
        warn=lambda line: None,  # the summary names every track left out
    )
    if not write_json(args.json, json.dumps({**asdict(report), "ok": report.ok}, indent=2)):
        print(format_export(report), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def register(subparsers) -> None:
    """Add the store sub-commands to `auwild-extract`."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = add_command(subparsers, name, help)
        p.add_argument(
            "--storage-options",
            metavar="JSON",
            help='fsspec options for remote stores, e.g. \'{"endpoint_url": "http://host:9000"}\'',
        )
        return p

    p = command("inspect", "tracks, frames, arrays, bytes per frame, fingerprints")
    add_store(p, positional=True)
    add_json(p, "the summary")
    p.set_defaults(func=_inspect)

    p = command("verify", "check every complete track; non-zero exit on problems")
    add_store(p, positional=True)
    add_json(p, "the report (problems, leases, ...)")
    p.set_defaults(func=_verify)

    p = command("merge", "copy the tracks of several stores into one")
    p.add_argument("stores", nargs="+", help="stores to merge (group fingerprints must agree)")
    add_out(p, "output store (created, or added to)")
    p.set_defaults(func=_merge)

    p = command("consolidate", "write consolidated metadata (repeatable)")
    add_store(p, positional=True)
    p.set_defaults(func=_consolidate)

    p = command("transcode", "copy a store with its patch tokens stored another way (int8, pooled)")
    add_store(p, positional=True)
    add_out(p, "new store (created, or its missing tracks added)")
    p.add_argument(
        "--token-dtype", default="int8", choices=["fp16", "int8"], help="patch token storage"
    )
    p.add_argument(
        "--patch-pool", type=int, default=None, help="pool the grid to this side (0: keep it)"
    )
    p.set_defaults(func=_transcode)

    p = command("export", "copy features to one HDF5 file or a folder of .npy files")
    add_store(p, positional=True)
    add_out(p, "the .h5 file, or the folder of .npy files (made whole, then renamed into place)")
    p.add_argument(
        "--format",
        choices=["h5", "npy"],
        default=None,
        help="output format (default: h5 for a .h5/.hdf5 path, else npy)",
    )
    p.add_argument(
        "--arrays",
        default=None,
        metavar="A,B",
        help="array paths or group names, e.g. visual/dinov2/cls,audio/wavlm,face "
        "(default: all; time always)",
    )
    add_tracks(p, "only these tracks")
    p.add_argument(
        "--dequantize",
        action="store_true",
        help="int8 patch tokens as float32 (default: int8 with their <name>_scale array)",
    )
    p.add_argument(
        "--gzip",
        type=int,
        default=None,
        metavar="LEVEL",
        help="h5 only: gzip level 0..9 (default: none)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_progress(p)
    add_json(p, "the summary")
    p.set_defaults(func=_export)
