import numpy as np
import pytest
import torch

from data_manifest.user_error import UserError
from tests.train.store_factory import make_dataset
from train import data as D
from train.config import DataConfig
from train.models import build_model


@pytest.fixture(scope="module", params=["fp16", "int8"])
def dataset(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("data")
    store, manifest = make_dataset(
        root, n_train=2, n_val=1, n_test=1, frames=40, patch_kind=request.param
    )
    return store, manifest


def _tracks(store, manifest, split, keys, cfg, read=True):
    reader = D.open_store(str(store))
    rows = D.split_rows(D.read_manifest(str(manifest)), split)
    features = cfg.features
    return reader, [D.load_track(reader, r, features, keys, cfg, read) for _, r in rows.iterrows()]


def test_window_starts_cover_every_frame():
    for n, w, s in [(10, 4, 3), (4, 8, 2), (17, 5, 5), (16, 4, 4)]:
        starts = D.window_starts(n, w, s)
        covered = np.zeros(n, bool)
        for st in starts:
            covered[st : st + w] = True
        assert covered.all() and starts.max() + min(w, n) == n


def test_labels_join_masks_and_rule(dataset):
    store, manifest = dataset
    cfg = DataConfig(features={"cls": "visual/dinov2/cls", "audio": "audio/wavlm"})
    reader, tracks = _tracks(store, manifest, "train", ["audio", "cls"], cfg)
    t = tracks[0]
    assert t.labels.shape == (t.n_frames, 12) and "dropped" in t.note
    assert (t.labels[:3, :3] == -1).all() and t.audio_valid.all()
    keep = D.train_mask(t, cfg)
    assert not keep[~t.face_valid].any()
    rates = D.positive_rates(tracks)
    assert rates.shape == (12,) and 0 < rates.min() < rates.max() < 1
    w = D.pos_weights(tracks, type("I", (), {"pos_weight": "auto", "max_pos_weight": 10.0})())
    assert len(w) == 12 and all(1.0 <= x <= 10.0 for x in w)


def test_memory_and_store_loaders_give_the_same_batches(dataset):
    store, manifest = dataset
    cfg = DataConfig(
        features={
            "cls": "visual/dinov2/cls",
            "patch": "visual/dinov2/patch",
            "rois": "face/rois",
            "audio": "audio/wavlm",
        },
        window=48,
        stride=8,
    )
    keys = ["audio", "cls", "patch", "rois"]
    _, tracks = _tracks(store, manifest, "train", keys, cfg)
    windows = D.training_windows(tracks, cfg)
    quantised = bool(tracks[0].scales)
    assert tracks[0].arrays["patch"].dtype == (np.int8 if quantised else np.float16)
    assert tracks[0].arrays["cls"].dtype == np.float16
    mem = D.TensorWindows(tracks, keys, cfg)
    lazy = D.StoreWindows(str(store), tracks, windows, cfg.features, keys, cfg)
    sel = np.arange(len(windows))
    a = mem.gather(windows[sel, 0], windows[sel, 1], cfg.window)
    b = torch.utils.data.default_collate([lazy[i] for i in sel])
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k].to(a[k].dtype)), k
    assert a["patch"].shape[1:] == (48, 2, 2, 8) and not a["mask"].all()  # last windows padded


def test_stitched_prediction_equals_whole_track_for_a_framewise_model(dataset):
    store, manifest = dataset
    cfg = DataConfig(
        features={"cls": "visual/dinov2/cls"},
        eval_window=16,
        eval_stride=5,
        faceless_predict="model",
    )
    reader, tracks = _tracks(store, manifest, "val", ["cls"], cfg)
    torch.manual_seed(0)
    model = build_model({"name": "frame_mlp", "hidden": 8}, {"cls": 16}).eval()
    probs = D.predict_probs(model, tracks, ["cls"], cfg, 3, torch.device("cpu"))
    t = tracks[0]
    with torch.no_grad():
        full = torch.sigmoid(model({"cls": torch.from_numpy(t.arrays["cls"]).float()[None]}))[0]
    np.testing.assert_allclose(probs[t.track_id], full.numpy(), atol=1e-5)
    cfg.faceless_predict = "nearest"
    lazy = [D.Track(x.track_id, x.n_frames, x.labels, x.face_valid) for x in tracks]
    filled = D.predict_probs(
        model, lazy, ["cls"], cfg, 3, torch.device("cpu"), None, reader, cfg.features
    )
    np.testing.assert_allclose(filled[t.track_id], D.fill_faceless(probs[t.track_id], t.face_valid))


def test_missing_group_or_array_is_a_user_error(dataset):
    store, manifest = dataset
    reader = D.open_store(str(store))
    with pytest.raises(UserError, match="convnext"):
        D.check_groups(reader, ["visual/convnext/cls"])
    cfg = DataConfig(features={"cls": "visual/convnext/cls"})
    with pytest.raises(UserError, match="no array"):
        _tracks(store, manifest, "val", ["cls"], cfg)
    model = build_model({"name": "frame_mlp"}, {"cls": 4})
    model.required_inputs = {"cls", "patch"}
    with pytest.raises(UserError, match="patch"):
        D.required_keys(model, {"cls": "visual/dinov2/cls"})
