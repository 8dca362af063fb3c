"""`auwild-extract inspect | verify | merge | consolidate`: thin wrappers over the store library."""

from __future__ import annotations

import argparse
import json
import sys

from data_manifest.cli_support import UserError
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
    print(json.dumps(info, indent=2) if args.json else format_inspect(info))
    return 0


@_user_errors
def _verify(args: argparse.Namespace) -> int:
    from extract.store.verify import format_verify, format_verify_json, verify_store

    report = verify_store(args.store, _storage_options(args))
    if args.json:
        print(format_verify_json(report))
    else:
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


def register(subparsers, add_common_options) -> None:
    """Add the store sub-commands to `auwild-extract`."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--storage-options",
            metavar="JSON",
            help='fsspec options for remote stores, e.g. \'{"endpoint_url": "http://host:9000"}\'',
        )
        add_common_options(p)

    p = subparsers.add_parser(
        "inspect", help="tracks, frames, arrays, bytes per frame, fingerprints"
    )
    p.add_argument("store", help="store path or fsspec URL (s3://bucket/features.zarr)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    common(p)
    p.set_defaults(func=_inspect)

    p = subparsers.add_parser(
        "verify", help="check every complete track; non-zero exit on problems"
    )
    p.add_argument("store", help="store path or fsspec URL")
    p.add_argument(
        "--json", action="store_true", help="print the report as JSON (problems, leases, ...)"
    )
    common(p)
    p.set_defaults(func=_verify)

    p = subparsers.add_parser("merge", help="copy the tracks of several stores into one")
    p.add_argument("stores", nargs="+", help="stores to merge (group fingerprints must agree)")
    p.add_argument("--out", required=True, help="output store (created, or added to)")
    common(p)
    p.set_defaults(func=_merge)

    p = subparsers.add_parser("consolidate", help="write consolidated metadata (repeatable)")
    p.add_argument("store", help="store path or fsspec URL")
    common(p)
    p.set_defaults(func=_consolidate)
