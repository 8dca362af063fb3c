"""Every loader gives the plain reference's batches; caches are used only when they fit."""

import logging

import numpy as np
import pytest
import torch

from tests.train.store_factory import make_dataset
from train import loaders as L
from train import tracks as T
from train.config import ConfigError, DataConfig, from_dict
from train.recipes import resolve
from train.train_data import build_data, open_split
from train.windows import FrameTable, epoch_order, training_windows, whole_tracks

FEATURES = {
    "cls": "visual/dinov2/cls",
    "patch": "visual/dinov2/patch",
    "rois": "face/rois",
    "audio": "audio/wavlm",
}
KEYS = ["audio", "cls", "patch", "rois"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["fp16", "int8"])
def dataset(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("loaders")
    return make_dataset(root, n_train=3, n_val=1, n_test=0, frames=40, patch_kind=request.param)


def _split(store, manifest, **cfg):
    cfg = DataConfig(features=FEATURES, window=12, stride=5, normalize="track", **cfg)
    reader = T.open_store(str(store))
    rows = T.split_rows(T.read_manifest(str(manifest)), "train")
    tracks = [T.load_track(reader, r, FEATURES, KEYS, cfg, False) for _, r in rows.iterrows()]
    return reader, tracks, cfg


def _reference(reader, tracks, cfg, order, bs):
    """The plain path: whole tracks read into memory, windows gathered one batch at a time."""
    full = [T.read_features(reader, t.without_arrays(), FEATURES, KEYS) for t in tracks]
    table = FrameTable(whole_tracks(full), KEYS, cfg)
    windows = training_windows(tracks, cfg)
    return list(L.memory_batches(table, windows, order, bs, cfg.window, CPU))


def _same(a, b):
    assert len(a) == len(b) > 1
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k in x:
            assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k


@pytest.mark.parametrize(
    "kind,workers,prefetch",
    [("ram", 0, 0), ("ram", 0, 2), ("gpu", 0, 2), ("stream", 0, 0), ("stream", 0, 3)],
)
def test_every_loader_gives_the_reference_batches(dataset, kind, workers, prefetch):
    store, manifest = dataset
    reader, tracks, cfg = _split(store, manifest, workers=workers, prefetch=prefetch)
    windows = training_windows(tracks, cfg)
    order = epoch_order(len(windows), 1, 7)
    want = _reference(reader, tracks, cfg, order, 4)
    if kind == "stream":
        source = L.StoreBatches(str(store), tracks, windows, FEATURES, KEYS, cfg, 4)
        loader = L.WindowLoader(kind, windows, cfg, 4, CPU, store=source)
    else:  # "gpu" with the device as CPU: the same code path, the table on the device
        table = L.build_cache(kind, reader, tracks, FEATURES, KEYS, cfg, CPU)
        loader = L.WindowLoader(kind, windows, cfg, 4, CPU, table=table)
    _same(list(loader.epoch(order)), want)
    assert want[-1]["mask"].shape[0] == len(order) % 4 or len(order) % 4 == 0


@pytest.mark.slow
def test_store_reads_in_worker_processes_give_the_reference_batches(dataset):
    store, manifest = dataset
    reader, tracks, cfg = _split(store, manifest, workers=2, prefetch=2)
    windows = training_windows(tracks, cfg)
    order = epoch_order(len(windows), 0, 3)
    source = L.StoreBatches(str(store), tracks, windows, FEATURES, KEYS, cfg, 5)
    loader = L.WindowLoader("stream", windows, cfg, 5, CPU, store=source)
    _same(list(loader.epoch(order)), _reference(reader, tracks, cfg, order, 5))


def test_cache_estimate_from_metadata_matches_the_cache(dataset):
    store, manifest = dataset
    reader, tracks, cfg = _split(store, manifest)
    need = L.cache_bytes(reader, [t.track_id for t in tracks], FEATURES, KEYS)
    table = L.build_cache("ram", reader, tracks, FEATURES, KEYS, cfg, CPU)
    assert table.nbytes <= need <= 1.05 * table.nbytes + 4096


def test_ram_cache_refuses_to_over_commit():
    gib = 2**30
    kind, why = L.choose_cache("ram", CPU, 10 * gib, ram=lambda: 12 * gib)
    assert kind == "stream" and "does not fit" in why and "12.00 GiB available" in why
    assert L.choose_cache("ram", CPU, 5 * gib, ram=lambda: 12 * gib)[0] == "ram"
    assert L.choose_cache("auto", CPU, 5 * gib, ram=lambda: 12 * gib)[0] == "ram"
    assert L.choose_cache("none", CPU, 1, ram=lambda: 12 * gib)[0] == "stream"
    kind, why = L.choose_cache("ram", CPU, 3 * gib, ram=lambda: 12 * gib, processes=4)
    assert kind == "stream" and "each of 4 processes" in why  # DDP ranks share the host
    cuda = torch.device("cuda", 0)
    free = {"gpu": lambda d: 40 * gib, "ram": lambda: 12 * gib}
    assert L.choose_cache("auto", cuda, 10 * gib, **free)[0] == "gpu"
    kind, why = L.choose_cache("auto", cuda, 30 * gib, **free)
    assert kind == "stream" and "free on cuda:0" in why
    kind, why = L.choose_cache("gpu", cuda, 25 * gib, gpu=lambda d: 40 * gib, ram=lambda: 64 * gib)
    assert kind == "ram" and "free on cuda:0" in why


def test_build_data_streams_when_the_split_does_not_fit(dataset, monkeypatch, caplog):
    store, manifest = dataset
    config = resolve("baseline", ["data.window=12", "data.stride=6", "optim.batch_size=4"])
    split = open_split(config, str(store), str(manifest))
    data = build_data(config, split, ["cls"], CPU)
    assert data.cache == "ram" and data.val_table is not None
    monkeypatch.setattr(L, "available_ram", lambda: 1000)
    with caplog.at_level(logging.WARNING):
        data = build_data(config, split, ["cls"], CPU)
    assert data.cache == "stream" and data.val_table is None
    assert "does not fit" in caplog.text and "available RAM" in caplog.text
    batch = next(iter(data.loader.epoch(np.arange(4))))
    assert batch["cls"].shape == (4, 12, 16)


def test_frames_per_step_shrinks_the_batch_as_windows_grow():
    config = resolve("baseline", ["optim.frames_per_step=1024", "data.window=512"])
    assert config.batch_size() == 2
    assert resolve("baseline", ["optim.batch_size=16"]).batch_size() == 16


def test_prefetch_raises_the_producers_error_in_the_consumer():
    def batches():
        yield {"x": torch.zeros(2)}
        raise RuntimeError("bad chunk in track t7")

    it = iter(L.Prefetch(batches(), 2, CPU))
    assert torch.equal(next(it)["x"], torch.zeros(2))
    with pytest.raises(RuntimeError, match="track t7"):
        next(it)


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    def endless():
        while True:
            yield {"x": torch.ones(3)}

    prefetch = L.Prefetch(endless(), 2, CPU)
    it = iter(prefetch)
    next(it)
    it.close()  # as when an epoch is cut short
    assert not prefetch.thread.is_alive()


def test_unknown_choices_fail_at_load_with_the_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match=r"data.faceless_predict must be one of \['nearest'"):
        resolve("baseline", ["data.faceless_predict=nearst"])
    with pytest.raises(ConfigError, match="data.cache"):
        from_dict({"data": {"cache": "disk"}})
    with pytest.raises(ConfigError, match="optim.batch_size"):
        resolve("baseline", ["optim.batch_size=0"])
    config = resolve("baseline")
    config.data.faceless_train = "drop"  # set in code: fit refuses before reading anything
    from train.loop import fit

    with pytest.raises(ConfigError, match="faceless_train"):
        fit(config, tmp_path / "no-store", tmp_path / "no-manifest", tmp_path / "run")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_cache_on_cuda_gives_the_reference_batches(dataset):
    store, manifest = dataset
    reader, tracks, cfg = _split(store, manifest)
    windows = training_windows(tracks, cfg)
    order = epoch_order(len(windows), 0, 0)
    cuda = torch.device("cuda")
    table = L.build_cache("gpu", reader, tracks, FEATURES, KEYS, cfg, cuda)
    assert table.data["patch"].device.type == "cuda"
    got = [
        {k: v.cpu() for k, v in b.items()}
        for b in L.WindowLoader("gpu", windows, cfg, 4, cuda, table=table).epoch(order)
    ]
    want = _reference(reader, tracks, cfg, order, 4)
    for x, y in zip(got, want):
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=1e-6)
