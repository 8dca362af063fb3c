"""Audio encoders end to end: decode a real video, encode, pool onto its frame times."""

from __future__ import annotations

import numpy as np
import pytest

from extract.audio_align import frame_intervals, pool_to_frames
from extract.audio_decode import AudioTrack, decode_audio
from extract.encoders import AUDIO_ENCODERS, load_audio_encoder
from extract.encoders.audio_windows import plan_windows
from tests.extract.audio.conftest import BURSTS, make_case, read_frame_times, write_media

KINDS = ["logmel", "wavlm", "whisper"]


def _encoder(kind, models, **kw):
    return load_audio_encoder(kind, models.get(kind), **kw)


@pytest.fixture(scope="module")
def encoders(tiny_audio_models):
    return {k: _encoder(k, tiny_audio_models) for k in KINDS}


def _noise(seconds, seed=0):
    rng = np.random.default_rng(seed)
    return AudioTrack((0.3 * rng.standard_normal(int(seconds * 16000))).astype(np.float32))


@pytest.mark.parametrize("case", ["25fps", "30fps", "vfr"])
@pytest.mark.parametrize("kind", KINDS)
def test_bursts_land_on_the_frames_covering_them(tmp_path, encoders, kind, case):
    path = make_case(tmp_path, case)
    audio = decode_audio(path)
    times = read_frame_times(path)  # (T,) container presentation times
    enc = encoders[kind]
    feats, starts, ends = enc.encode(audio)
    assert feats.shape == (starts.shape[0], enc.dim) and feats.dtype == np.float32
    assert np.all(np.diff(starts) > 0) and np.all(ends > starts)
    pooled, covered = pool_to_frames(feats, starts, ends, times)
    assert pooled.shape == (times.shape[0], enc.dim)

    a, b = frame_intervals(times)
    inside = np.zeros(times.shape[0], bool)  # frames well inside a burst
    near = np.zeros(times.shape[0], bool)  # frames within 0.3 s of a burst
    for t0, t1 in BURSTS:
        inside |= (a >= t0 + 0.05) & (b <= t1 - 0.05)
        near |= (b > t0 - 0.3) & (a < t1 + 0.3)
    far = ~near & (b <= audio.end)
    assert inside.sum() >= 8 and far.sum() >= 30
    assert covered[a < audio.end - 0.05].all()
    assert not covered[a > audio.end + 0.05].any()  # vfr video runs past the audio
    if kind == "logmel":  # loudest mel band: the tone is 2 log10 units above the floor
        score = pooled.max(axis=1)
        assert score[inside].min() > score[far].max() + 1.0
    else:  # random encoders: distance to the mean of the silent frames
        score = np.linalg.norm(pooled - pooled[far].mean(axis=0), axis=1)
        assert score[inside].min() > 2.0 * score[far].max()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("media", ["silent", "no_audio"])
def test_silent_or_missing_audio_gives_invalid_zeros(tmp_path, encoders, kind, media):
    path = write_media(tmp_path / f"{media}.mp4", with_audio=media == "silent")
    audio = decode_audio(path)
    assert not audio.valid
    feats, starts, ends = encoders[kind].encode(audio)
    assert feats.shape[0] == starts.shape[0] > 0 and not feats.any()
    pooled, _ = pool_to_frames(feats, starts, ends, read_frame_times(path))
    assert not pooled.any()


def test_logmel_equals_whisper_feature_extractor_and_is_chunk_invariant():
    from transformers import WhisperFeatureExtractor

    audio = _noise(3.0)
    feats, starts, ends = load_audio_encoder("logmel", None).encode(audio)
    ref = (
        WhisperFeatureExtractor()(
            audio.samples, sampling_rate=16000, padding="longest", return_tensors="np"
        )
        .input_features[0]
        .T
    )  # (300, 80)
    assert feats.shape == ref.shape == (300, 80)
    np.testing.assert_allclose(feats, ref, atol=1e-4)
    np.testing.assert_allclose(starts[:2], [-0.0125, -0.0025])  # 25 ms windows, 10 ms hop
    np.testing.assert_allclose(ends - starts, 0.025)
    chunked, _, _ = load_audio_encoder("logmel", None, chunk_frames=37).encode(audio)
    np.testing.assert_array_equal(chunked, feats)


def test_wavlm_single_window_equals_one_pass(encoders):
    import torch

    enc = encoders["wavlm"]
    audio = _noise(5.0)
    feats, starts, ends = enc.encode(audio)
    x = audio.samples
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    with torch.inference_mode():
        ref = enc.model(torch.from_numpy(x)[None]).last_hidden_state[0].numpy()  # (N, D)
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-5)
    assert feats.shape[0] == (80000 - 400) // 320 + 1
    np.testing.assert_allclose(starts[:2], [0.0, 0.02])
    np.testing.assert_allclose(ends[:2], [0.025, 0.045])


def test_whisper_single_window_equals_one_pass_without_padding_frames(encoders):
    import torch

    enc = encoders["whisper"]
    audio = _noise(10.0)
    feats, starts, _ = enc.encode(audio)
    mel = enc.fe(audio.samples, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        ref = enc.encoder(mel).last_hidden_state[0].numpy()  # (1500, D) over 30 s
    assert feats.shape[0] == 500  # 10 s of real audio at 50 Hz; padding frames dropped
    np.testing.assert_allclose(feats, ref[:500], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(starts[:2], [-0.01, 0.01])


@pytest.mark.parametrize("kind", ["wavlm", "whisper"])
def test_windowed_frames_come_from_their_window_centres(tiny_audio_models, kind):
    enc = _encoder(kind, tiny_audio_models, window_s=3.0, overlap_s=1.0)
    audio = _noise(8.3, seed=1)
    feats, starts, _ = enc.encode(audio)
    assert feats.shape[0] == enc.n_frames(audio.n_samples)  # same grid as one pass
    np.testing.assert_allclose(np.diff(starts), 0.02, atol=1e-9)
    windows = plan_windows(audio.n_samples, 48000, 16000, enc.stride)
    assert len(windows) == 4
    x = audio.samples
    norm = ()
    if kind == "wavlm":
        norm = (float(x.mean()), float(1.0 / np.sqrt(x.var() + 1e-7)))
    centre0 = enc.receptive_field // 2 if kind == "wavlm" else 0
    for w in windows:  # every kept frame equals that window run on its own
        own = enc._run(x, [w], *norm)[0]  # (n_w, D)
        g = np.arange(feats.shape[0])
        c = g * enc.stride + centre0
        mine = (c >= w.keep_lo) & (c < w.keep_hi)
        assert mine.any()
        np.testing.assert_allclose(feats[mine], own[g[mine] - w.start // enc.stride], atol=1e-5)


def test_wavlm_layer_choice(tiny_audio_models, encoders):
    audio = _noise(2.0)
    one = _encoder("wavlm", tiny_audio_models, layers=1).encode(audio)[0]
    two = _encoder("wavlm", tiny_audio_models, layers=2).encode(audio)[0]
    mean = _encoder("wavlm", tiny_audio_models, layers=[1, 2]).encode(audio)[0]
    np.testing.assert_allclose(mean, (one + two) / 2, atol=1e-5)
    assert not np.allclose(one, two)
    with pytest.raises(ValueError, match="out of range"):
        _encoder("wavlm", tiny_audio_models, layers=7)


def test_fingerprints_name_model_layers_and_windows(tiny_audio_models, encoders):
    for kind in KINDS:
        fields = encoders[kind].fingerprint_fields()
        assert fields["encoder"] == kind and fields["sample_rate"] == 16000
    w = encoders["wavlm"].fingerprint_fields()
    assert w["content_hash"] and w["layers"] == "last" and w["window_s"] == 20.0
    other = _encoder("wavlm", tiny_audio_models, layers=[1, 2], overlap_s=4.0)
    assert other.fingerprint_fields()["layers"] == [1, 2]
    assert other.fingerprint_fields()["overlap_s"] == 4.0
    assert encoders["whisper"].fingerprint_fields()["window_s"] == 30.0


@pytest.mark.parametrize("kind", ["wavlm", "whisper"])
def test_missing_model_says_how_to_get_it(tmp_path, kind):
    with pytest.raises(Exception, match="download") as info:
        load_audio_encoder(kind, str(tmp_path / "no-such-model"))
    assert "no-such-model" in str(info.value)


def test_registry_lists_the_three_encoders(encoders):
    assert set(KINDS) <= set(AUDIO_ENCODERS)
    assert encoders["logmel"].dim == 80 and encoders["wavlm"].dim == 32
    assert [encoders[k].name for k in KINDS] == KINDS


@pytest.mark.parametrize("kind,n_expected", [("logmel", 1), ("wavlm", 0), ("whisper", 1)])
def test_very_short_audio_does_not_crash(encoders, kind, n_expected):
    audio = AudioTrack(np.full(150, 0.5, np.float32), start=2.0)
    feats, starts, ends = encoders[kind].encode(audio)
    assert feats.shape == (n_expected, encoders[kind].dim) and np.isfinite(feats).all()
    pooled, covered = pool_to_frames(feats, starts, ends, np.array([2.0]))
    assert covered.all() == (n_expected > 0)
