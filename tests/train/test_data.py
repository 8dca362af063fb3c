"""Tracks, windows and whole-track prediction over a real store."""

import numpy as np
import pytest
import torch

from data_manifest.user_error import UserError
from tests.train.store_factory import make_dataset
from train import tracks as T
from train.config import DataConfig, ImbalanceConfig
from train.inference import fill_faceless, predict_probs
from train.models import build_model
from train.windows import FrameTable, assemble_window, train_mask, whole_tracks, window_starts


@pytest.fixture(scope="module", params=["fp16", "int8"])
def dataset(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("data")
    store, manifest = make_dataset(
        root, n_train=2, n_val=1, n_test=1, frames=40, patch_kind=request.param
    )
    return store, manifest


def _tracks(store, manifest, split, keys, cfg, read=True):
    reader = T.open_store(str(store))
    rows = T.split_rows(T.read_manifest(str(manifest)), split)
    features = cfg.features
    return reader, [T.load_track(reader, r, features, keys, cfg, read) for _, r in rows.iterrows()]


def test_window_starts_cover_every_frame():
    for n, w, s in [(10, 4, 3), (4, 8, 2), (17, 5, 5), (16, 4, 4)]:
        starts = window_starts(n, w, s)
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
    keep = train_mask(t, cfg)
    assert not keep[~t.face_valid].any()
    rates = T.positive_rates(tracks)
    assert rates.shape == (12,) and 0 < rates.min() < rates.max() < 1
    w = T.pos_weights(tracks, ImbalanceConfig())
    assert len(w) == 12 and all(1.0 <= x <= 10.0 for x in w)


def test_tracks_keep_the_store_dtypes(dataset):
    store, manifest = dataset
    features = {"cls": "visual/dinov2/cls", "patch": "visual/dinov2/patch"}
    cfg = DataConfig(features=features)
    _, tracks = _tracks(store, manifest, "train", ["cls", "patch"], cfg)
    quantised = bool(tracks[0].scales)
    assert tracks[0].arrays["patch"].dtype == (np.int8 if quantised else np.float16)
    assert tracks[0].arrays["cls"].dtype == np.float16


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
    probs = predict_probs(model, tracks, ["cls"], cfg, 3, torch.device("cpu"))
    t = tracks[0]
    with torch.no_grad():
        full = torch.sigmoid(model({"cls": torch.from_numpy(t.arrays["cls"]).float()[None]}))[0]
    np.testing.assert_allclose(probs[t.track_id], full.numpy(), atol=1e-5)
    cfg.eval_window = 0  # one pass over the whole track
    one = predict_probs(model, tracks, ["cls"], cfg, 3, torch.device("cpu"))
    np.testing.assert_allclose(one[t.track_id], full.numpy(), atol=1e-5)
    cfg.faceless_predict = "nearest"
    lazy = [x.without_arrays() for x in tracks]
    filled = predict_probs(
        model, lazy, ["cls"], cfg, 3, torch.device("cpu"), None, reader, cfg.features
    )
    np.testing.assert_allclose(filled[t.track_id], fill_faceless(one[t.track_id], t.face_valid))
    table = FrameTable(whole_tracks(tracks), ["cls"], cfg)  # a cache of the split, same result
    cached = predict_probs(model, lazy, ["cls"], cfg, 3, torch.device("cpu"), table=table)
    np.testing.assert_array_equal(cached[t.track_id], filled[t.track_id])


def test_fill_faceless_takes_the_nearest_face_earlier_on_ties():
    values = np.arange(6, dtype=float)[:, None]
    face = np.array([False, True, False, False, True, False])
    assert fill_faceless(values, face)[:, 0].tolist() == [1, 1, 1, 4, 4, 4]
    assert fill_faceless(values, np.zeros(6, bool)) is values


def test_assemble_window_pads_with_zeros_and_unknown_labels(dataset):
    store, manifest = dataset
    cfg = DataConfig(features={"cls": "visual/dinov2/cls"}, normalize="none")
    _, tracks = _tracks(store, manifest, "train", ["cls"], cfg)
    table = FrameTable(whole_tracks(tracks), ["cls"], cfg)
    n = tracks[0].n_frames
    b = assemble_window(table, [0], [n - 3], 8)
    assert b["mask"][0].tolist() == [True] * 3 + [False] * 5
    assert (b["cls"][0, 3:] == 0).all() and (b["labels"][0, 3:] == -1).all()
    assert torch.equal(b["cls"][0, :3], torch.from_numpy(tracks[0].arrays["cls"][-3:]).float())
    assert not b["train_mask"][0, 3:].any() and not b["face_valid"][0, 3:].any()


def test_missing_group_or_array_is_a_user_error(dataset):
    store, manifest = dataset
    reader = T.open_store(str(store))
    with pytest.raises(UserError, match="convnext"):
        T.check_groups(reader, ["visual/convnext/cls"])
    cfg = DataConfig(features={"cls": "visual/convnext/cls"})
    with pytest.raises(UserError, match="no array"):
        _tracks(store, manifest, "val", ["cls"], cfg)
    model = build_model({"name": "frame_mlp"}, {"cls": 4})
    model.required_inputs = {"cls", "patch"}
    with pytest.raises(UserError, match="patch"):
        T.required_keys(model, {"cls": "visual/dinov2/cls"})


def test_one_pass_falls_back_to_windows_when_a_track_does_not_fit(dataset, caplog):
    store, manifest = dataset
    cfg = DataConfig(
        features={"cls": "visual/dinov2/cls"}, eval_window=0, window=16, faceless_predict="model"
    )
    _, tracks = _tracks(store, manifest, "val", ["cls"], cfg)
    torch.manual_seed(0)
    inner = build_model({"name": "frame_mlp", "hidden": 8}, {"cls": 16}).eval()

    class Small(torch.nn.Module):  # "runs out of memory" beyond 20 frames
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.lengths = []

        def forward(self, batch):
            self.lengths.append(batch["cls"].shape[1])
            if batch["cls"].shape[1] > 20:
                raise torch.OutOfMemoryError("too long")
            return self.inner(batch)

    model = Small()
    with caplog.at_level("WARNING"):
        probs = predict_probs(model, tracks, ["cls"], cfg, 4, torch.device("cpu"))
    t = tracks[0]
    assert model.lengths[0] == t.n_frames and set(model.lengths[1:]) == {16}
    assert "does not fit in one pass" in caplog.text
    with torch.no_grad():
        full = torch.sigmoid(inner({"cls": torch.from_numpy(t.arrays["cls"]).float()[None]}))[0]
    np.testing.assert_allclose(probs[t.track_id], full.numpy(), atol=1e-5)


def test_track_normalisation_takes_audio_means_over_frames_with_audio(tmp_path):
    """Plain reference: the audio mean over audio/valid frames, the visual over face/valid."""
    store, manifest = make_dataset(
        tmp_path, n_train=2, n_val=1, n_test=1, frames=40, audio_gaps=True
    )
    features = {
        "cls": "visual/dinov2/cls",
        "audio": "audio/wavlm",
        "geometry": "visual/classical/geometry",
    }
    cfg = DataConfig(features=features, normalize="track")
    reader, tracks = _tracks(store, manifest, "train", ["audio", "cls", "geometry"], cfg)
    for t in tracks:
        has_audio = reader.read(t.track_id, "audio/valid").astype(bool)
        face = reader.read(t.track_id, "face/valid").astype(bool)
        assert 0 < has_audio.sum() < t.n_frames and not np.array_equal(has_audio, face)
        audio = reader.read(t.track_id, "audio/wavlm").astype(np.float32)
        reference = np.zeros(audio.shape[1])
        for f in range(t.n_frames):
            if has_audio[f]:
                reference += audio[f]
        reference /= has_audio.sum()
        np.testing.assert_allclose(t.means["audio"], reference, rtol=1e-5, atol=1e-6)
        # the frames without audio (zeros) would pull a mean over the face frames toward 0
        assert not np.allclose(audio[face].mean(0), reference, atol=1e-3)
        for key in ("cls", "geometry"):
            values = reader.read(t.track_id, features[key]).astype(np.float32)
            np.testing.assert_allclose(t.means[key], values[face].mean(0), rtol=1e-5, atol=1e-6)


def test_frame_mlp_joins_the_classical_features(dataset):
    """frame_mlp with `extra` reads geometry (T, G) and regions (T, R, D) flattened per frame."""
    store, manifest = dataset
    features = {
        "cls": "visual/classical/cls",
        "geometry": "visual/classical/geometry",
        "regions": "visual/classical/regions",
        "audio": "audio/logmel",
    }
    cfg = DataConfig(features=features, normalize="track")
    keys = ["audio", "cls", "geometry", "regions"]
    reader, tracks = _tracks(store, manifest, "train", keys, cfg)
    dims = T.feature_dims(reader, tracks[0].track_id, features)
    assert dims["regions"] == 5 and dims["regions_size"] == 15 and dims["geometry_size"] == 10
    spec = {"name": "frame_mlp", "hidden": 8, "use_audio": True, "extra": ["geometry", "regions"]}
    model = build_model(spec, dims).eval()
    assert T.required_keys(model, features) == keys
    table = FrameTable(whole_tracks(tracks), keys, cfg)
    batch = assemble_window(table, [0], [0], 8)
    with torch.no_grad():
        out = model(batch)  # (1, 8, 12)
        batch["regions"] = batch["regions"] + 1.0
        moved = model(batch)
    assert out.shape == (1, 8, 12) and not torch.allclose(out, moved)
