"""The Python API (auwild/) against the functions it wraps, on a store and a run made here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import auwild
from data_manifest.user_error import UserError
from extract.store import MissingChunk, StoreReader
from tests.train.store_factory import make_dataset
from train.checkpoint import load_checkpoint
from train.predict import predict_split
from train.recipes import resolve
from train.run import thresholds_of
from train.train_data import build_data, open_split

SMALL = ["optim.batch_size=4", "data.window=16", "data.stride=8", "model.hidden=32"]


def make_api_data(
    root: Path, folds: int = 0, patch_kind: str = "fp16", recipe: str = "baseline", model=None
) -> tuple[str, str, str]:
    """(store, manifest, run): the test store and a run trained on it for 3 epochs (the
    baseline recipe unless `recipe` and `model` say otherwise)."""
    from train.loop import fit_run

    store, manifest = make_dataset(
        root, n_train=4, n_val=2, n_test=2, frames=60, patch_kind=patch_kind
    )
    sets = [*SMALL, "optim.epochs=3", "optim.lr=3e-3", "optim.device=cpu", f"folds.k={folds}"]
    config = resolve(recipe, sets)
    if model is not None:
        config.model = dict(model)
    fit_run(config.validate(), str(store), str(manifest), root / "run", progress=False)
    return str(store), str(manifest), str(root / "run")


@pytest.fixture(scope="module")
def api_data(tmp_path_factory):
    return make_api_data(tmp_path_factory.mktemp("api"))


# ----------------------------------------------------------------------------- package


def test_import_is_light_and_names_are_there():
    code = (
        "import sys, auwild; assert 'torch' not in sys.modules, 'torch imported';"
        "print(auwild.__version__, len(auwild.AUS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, n = out.stdout.split()
    assert version and int(n) == 12
    assert auwild.AUS[0] == "AU1" and auwild.AUS[-1] == "AU26"
    for name in auwild.__all__:
        assert getattr(auwild, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        auwild.nothing_here  # noqa: B018


# ----------------------------------------------------------------------------- Store


def test_store_reads_what_the_reader_reads(api_data):
    store_url, _, _ = api_data
    store, reader = auwild.open_store(store_url), StoreReader(store_url)
    assert store.tracks() == reader.tracks() and len(store.tracks()) == 8
    track = store.tracks()[1]
    assert store.arrays(track) == reader.arrays(track)
    assert store.n_frames(track) == reader.n_frames(track)
    assert store.info(track) == reader.track_attrs(track)
    assert store.fingerprints() == {g: e["fingerprint"] for g, e in reader.groups.items()}
    for name in store.arrays(track):
        expect = reader.read(track, name, 5, 40)
        got = store.read(track, name, 5, 40)
        assert got.dtype == expect.dtype and np.array_equal(got, expect), name
        tensor = store.read(track, name, 5, 40, format="torch")
        assert isinstance(tensor, torch.Tensor) and tensor.shape == expect.shape
        assert np.array_equal(tensor.numpy(), expect), name
    names = ["visual/dinov2/cls", "face/valid", "time"]
    window = store.window(track, names, start=10, length=20)
    assert list(window) == names
    for name, values in reader.read_window(track, names, 10, 30).items():
        assert np.array_equal(window[name], values)
    whole = store.window(track, names)
    assert len(whole["time"]) == store.n_frames(track)
    tail = store.window(track, names, start=store.n_frames(track) - 5, length=20)
    assert len(tail["face/valid"]) == 5  # cut at the track's end, never padded
    with pytest.raises(ValueError, match="format must be one of"):
        store.read(track, "time", format="pandas")


def test_store_missing_chunk_raises_never_zeros(api_data, tmp_path):
    store_url, _, _ = api_data
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store_url, copy)
    store = auwild.open_store(str(copy))
    track = store.tracks()[0]
    chunks = [p for p in (copy / "tracks" / track / "visual/dinov2/cls").rglob("*") if p.is_file()]
    chunks = [p for p in chunks if p.name != "zarr.json"]
    assert chunks
    for p in chunks:
        p.unlink()
    with pytest.raises(MissingChunk, match=track):
        store.read(track, "visual/dinov2/cls")
    with pytest.raises(MissingChunk):
        store.window(track, ["visual/dinov2/cls"], 0, 8, format="torch")


def test_torch_reads_do_not_alias_the_memory_cache(api_data):
    store_url, _, _ = api_data
    store = auwild.open_store(store_url, cache=True)
    track = store.tracks()[0]
    before = store.read(track, "visual/dinov2/cls", 0, 10).copy()
    tensor = store.read(track, "visual/dinov2/cls", 0, 10, format="torch")
    tensor.fill_(7)
    assert np.array_equal(store.read(track, "visual/dinov2/cls", 0, 10), before)


# ----------------------------------------------------------------------------- SplitDataset


@pytest.mark.parametrize(
    "features",
    [None, {"cls": "visual/dinov2/cls", "patch": "visual/dinov2/patch", "audio": "audio/wavlm"}],
)
def test_split_dataset_items_are_the_trainers_batches(api_data, features):
    """Items stacked equal the batches of the trainer's RAM cache for the same windows."""
    store_url, manifest, _ = api_data
    config = resolve("baseline", [*SMALL, "data.cache=ram", "data.prefetch=0"])
    if features is not None:
        config.data.features = dict(features)
    keys = sorted(config.data.features)
    data = build_data(config, open_split(config, store_url, manifest), keys, torch.device("cpu"))
    ds = auwild.SplitDataset(auwild.open_store(store_url), manifest, "train", recipe=config)
    assert ds.keys == keys and ds.track_ids == [t.track_id for t in data.train_tracks]
    assert np.array_equal(ds.windows, data.windows) and len(ds) == len(data.windows)
    order = np.random.default_rng(0).permutation(len(ds))[:8]
    batches = list(data.loader.epoch(order))
    expect = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    items = [ds[int(i)] for i in order]
    got = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    assert sorted(got) == sorted(expect)
    assert ("audio_valid" in got) == ("audio" in keys)
    for k in expect:
        assert got[k].dtype == expect[k].dtype and torch.equal(got[k], expect[k]), k
    assert got["labels"].shape == (8, 16, 12)
    track, start = ds.window_of(int(order[0]))
    assert track == ds.track_ids[int(ds.windows[order[0], 0])] and start == ds.windows[order[0], 1]
    assert np.array_equal(ds.labels(track), data.train_tracks[ds.track_ids.index(track)].labels)


def test_split_dataset_windows_labels_and_loader(api_data):
    store_url, manifest, _ = api_data
    store = auwild.open_store(store_url)
    ds = auwild.SplitDataset(
        store_url,
        manifest,
        "test",
        features={"cls": "visual/dinov2/cls"},
        window=24,
        stride=12,
        labelled_only=False,
    )
    from train.windows import window_starts

    expect = [(t, s) for t in ds.track_ids for s in window_starts(store.n_frames(t), 24, 12)]
    assert [ds.window_of(i) for i in range(len(ds))] == expect
    item = ds[len(ds) - 1]
    track, start = ds.window_of(len(ds) - 1)
    assert item["cls"].shape == (24, 16) and bool((item["labels"] == -1).all())  # no labels
    cls = store.read(track, "visual/dinov2/cls", start, start + 24)
    assert np.allclose(item["cls"].numpy(), cls.astype(np.float32))  # normalize = none
    assert torch.equal(
        item["face_valid"], torch.from_numpy(store.read(track, "face/valid")[start : start + 24])
    )
    with pytest.raises(UserError, match="no training window"):
        auwild.SplitDataset(store, manifest, "test")
    with pytest.raises(KeyError, match="not in split"):
        ds.labels("vid0_left")

    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1)
    first = next(iter(loader))
    for k, v in first.items():
        assert torch.equal(v, torch.stack([ds[i][k] for i in range(4)])), k


# ----------------------------------------------------------------------------- Run


def test_run_predict_equals_predict_split(api_data):
    store_url, _, run_dir = api_data
    preds = predict_split(run_dir, "test", device="cpu")
    run = auwild.load_run(run_dir, device="cpu")
    store = auwild.open_store(store_url)
    assert run.features == {"cls": "visual/dinov2/cls"}
    assert run.arrays == ["visual/dinov2/cls", "face/valid"]
    _, meta = load_checkpoint(Path(run_dir) / "best.pt")
    assert np.array_equal(run.thresholds, thresholds_of(meta)) and run.thresholds.shape == (12,)
    assert json.loads(json.dumps(run.config.to_dict())) == meta["config"]  # tuples as lists
    for track in preds.order:
        probs, decisions = run.predict(store.window(track, run.arrays))
        assert probs.shape == (store.n_frames(track), 12) and probs.dtype == np.float32
        assert np.array_equal(probs, preds.probs[track]), track
        assert np.array_equal(decisions, preds.binary[track]), track
        tensors = {p: store.read(track, p, format="torch") for p in run.arrays}
        assert np.array_equal(run.predict(tensors)[0], probs)
        p2, d2 = run.predict_track(store, track)
        assert np.array_equal(p2, probs) and np.array_equal(d2, decisions)


def test_run_predict_refuses_incomplete_arrays(api_data):
    store_url, _, run_dir = api_data
    run = auwild.load_run(run_dir, which="last", device="cpu")
    store = auwild.open_store(store_url)
    arrays = store.window(store.tracks()[0], run.arrays)
    with pytest.raises(UserError, match="face/valid"):
        run.predict({"visual/dinov2/cls": arrays["visual/dinov2/cls"]})
    with pytest.raises(UserError, match="different lengths"):
        run.predict({**arrays, "face/valid": arrays["face/valid"][:-1]})
    with pytest.raises(UserError, match="not a run directory"):
        auwild.load_run(Path(store_url).parent / "nowhere")


def test_run_refuses_a_store_extracted_otherwise(api_data):
    """A group whose fingerprint differs from the one the model was trained on is refused
    before anything is predicted (the same check `auwild-train predict` makes)."""
    store_url, _, run_dir = api_data
    run = auwild.load_run(run_dir, device="cpu")
    store = auwild.open_store(store_url)
    track = store.tracks()[0]
    run.predict_track(store, track)  # the store it was trained on: accepted
    saved = run.models[0][1]["store_fingerprints"]
    group = "visual/dinov2"
    assert saved.get(group)
    saved[group] = "0" * 16  # as if trained on a store extracted with other settings
    with pytest.raises(UserError, match=r"visual/dinov2.*fingerprints different"):
        run.predict_track(store, track)


def test_fold_run_predict_equals_predict_split(tmp_path):
    store_url, _, run_dir = make_api_data(tmp_path, folds=2)
    preds = predict_split(run_dir, "test", device="cpu")
    run = auwild.load_run(run_dir, device="cpu")
    assert len(run.models) == 2 and run.thresholds.shape == (2, 12)
    store = auwild.open_store(store_url)
    for track in preds.order:
        probs, decisions = run.predict_track(store, track)
        assert np.allclose(probs, preds.probs[track], atol=1e-6), track
        assert np.array_equal(decisions, preds.binary[track]), track


def test_run_on_int8_tokens_and_audio(tmp_path):
    """A model reading int8 patch tokens, ROIs, CLS and audio: predict_track is predict_split
    exactly; predict on dequantised arrays agrees to float16 rounding."""
    tiny = {"d_model": 16, "heads": 2, "hidden": 16, "use_audio": True, "use_cls": True}
    model = {"name": "hga_mlp", "pool": "flat", **tiny}
    store_url, manifest, run_dir = make_api_data(tmp_path, 0, "int8", "abaw10", model)
    preds = predict_split(run_dir, "test", device="cpu")
    run = auwild.load_run(run_dir, device="cpu")
    assert set(run.features) == {"audio", "cls", "patch", "rois"} and run.config.recipe == "abaw10"
    assert run.arrays[-2:] == ["face/valid", "audio/valid"]
    store = auwild.open_store(store_url)
    assert store.reader.token_storage(preds.order[0], "visual/dinov2/patch").kind == "int8"
    for track in preds.order:
        probs, decisions = run.predict_track(store, track)
        assert np.array_equal(probs, preds.probs[track]), track
        assert np.array_equal(decisions, preds.binary[track]), track
        near, _ = run.predict(store.window(track, run.arrays))
        assert np.abs(near - probs).max() < 2e-2, track
    ds = auwild.SplitDataset(store, manifest, "val", recipe=run.config)
    item = ds[0]
    assert item["patch"].shape == (16, 2, 2, 8) and item["audio_valid"].dtype == torch.bool
