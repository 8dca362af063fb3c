"""ConvNeXt's augmented local views through the job: (T, K, D) per track, drawn per frame from
the track id and frame index (identical on a rerun and across shards), and K and the draw rule in
the group's fingerprint, so a store is never mixed."""

from __future__ import annotations

import numpy as np
import pytest

from extract.cli import main as extract_main
from tests.extract.job.job_world import args_for, arrays_of


def _args(world, store, *extra):
    convnext = f"convnext={world['models']['convnext']}"
    return args_for(world, store, "--visual", convnext, *extra, audio=None, visual=False)


@pytest.fixture(scope="module")
def views_store(world):
    store = world["base"] / "convnext_views.zarr"
    assert extract_main(_args(world, store, "--local-views", "3", "--view-seed", "1")) == 0
    return store


def test_convnext_local_views_per_frame_and_identical_across_shards(world, views_store, tmp_path):
    from extract.store import StoreReader

    reader = StoreReader(str(views_store))
    for tid in reader.tracks():
        n = reader.n_frames(tid)
        local = reader.read(tid, "visual/convnext/local")  # (T, K, D)
        assert local.shape == (n, 3, 32)
        valid = reader.read(tid, "face/valid")
        assert not local[~valid].any()  # frames without a face: zeros
        faces = local[valid]
        assert faces.any(axis=(1, 2)).all()
        assert not np.allclose(faces[0], faces[1])  # each frame its own views
    sharded = tmp_path / "sharded.zarr"
    for shard in ("0/2", "1/2"):
        extra = ("--local-views", "3", "--view-seed", "1", "--shard", shard)
        assert extract_main(_args(world, sharded, *extra)) == 0
    a, b = arrays_of(views_store), arrays_of(sharded)
    assert sorted(a) == sorted(b)
    for key in a:
        if key.endswith("convnext/local"):
            np.testing.assert_array_equal(a[key], b[key])


def test_convnext_local_view_settings_are_in_the_fingerprint(world, views_store, capsys):
    from extract.job.config import ExtractConfig
    from extract.job.group_fields import group_fields

    visual = {"convnext": world["models"]["convnext"]}
    fields = group_fields(ExtractConfig(visual=visual, local_views=3, view_seed=1))
    views = fields["visual/convnext"]["local_views"]
    assert views["views"] == 3 and views["seed"] == 1 and views["area"] == [0.6, 0.9]
    assert views["flip_p"] == 0.5 and views["max_angle"] == 10.0
    none = group_fields(ExtractConfig(visual=visual, local_views=0))
    assert none["visual/convnext"]["local_views"] == "none"
    capsys.readouterr()
    rc = extract_main(_args(world, views_store, "--local-views", "2", "--view-seed", "1"))
    out = capsys.readouterr()
    assert rc != 0, "a store with 3 views per frame took 2"
    assert "visual/convnext" in out.err and "local_views" in out.err, out.err
