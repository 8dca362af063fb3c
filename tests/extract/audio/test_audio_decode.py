"""Decoding real files: rate, mono, peak normalisation, start offsets, invalid cases, cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from extract.audio_decode import AudioDecodeConfig, clear_audio_cache, decode_audio, load_audio
from tests.extract.audio.conftest import BURSTS, make_case, tone_bursts, write_media


def _onset_offset(track, thr=0.2):
    on = np.nonzero(np.abs(track.samples) > thr)[0]
    return track.start + on[0] / track.sr, track.start + on[-1] / track.sr


@pytest.mark.parametrize("kind", ["25fps", "30fps", "vfr"])
def test_decodes_to_16k_mono_peak_normalised_on_container_time(tmp_path, kind):
    track = decode_audio(make_case(tmp_path, kind))
    assert track.valid and track.reason == ""
    assert track.sr == 16000 and track.samples.dtype == np.float32 and track.samples.ndim == 1
    assert abs(track.duration - 4.0) < 0.05
    assert np.abs(track.samples).max() == pytest.approx(1.0, abs=1e-6)
    first, last = _onset_offset(track)
    assert abs(first - BURSTS[0][0]) < 0.005
    assert abs(last - BURSTS[1][1]) < 0.005


@pytest.mark.parametrize("codec,ext", [("pcm_s16le", "mkv"), ("aac", "mp4")])
def test_stream_start_offset_is_honoured(tmp_path, codec, ext):
    offset = 0.7
    x = tone_bursts(48000, 3.0, BURSTS, offset=offset)  # bursts at container times BURSTS
    path = write_media(
        tmp_path / f"off.{ext}",
        audio=x,
        audio_rate=48000,
        audio_codec=codec,
        layout="mono",
        audio_offset=offset,
    )
    track = decode_audio(path)
    assert track.valid
    assert abs(track.start - offset) < 0.03  # AAC priming moves the first frame by < 1 frame
    first, _ = _onset_offset(track)
    assert abs(first - BURSTS[0][0]) < 0.005  # not at 1.0 - 0.7


def test_pts_gap_is_filled_so_samples_stay_on_their_times(tmp_path):
    x = tone_bursts(16000, 3.0, [(2.0, 2.3)])  # burst at 2.0 s of the written samples
    path = write_media(
        tmp_path / "gap.mkv",
        audio=x,
        audio_rate=16000,
        audio_codec="pcm_s16le",
        layout="mono",
        audio_gap=(1.0, 0.5),  # samples from 1.0 s on are presented 0.5 s later
    )
    track = decode_audio(path)
    assert track.valid
    first, _ = _onset_offset(track)
    assert abs(first - 2.5) < 0.005
    assert abs(track.duration - 3.5) < 0.02


def test_silent_audio_is_invalid_zeros(tmp_path, caplog):
    path = write_media(tmp_path / "silent.mp4")
    with caplog.at_level("WARNING"):
        track = decode_audio(path)
    assert not track.valid and "silent" in track.reason
    assert track.n_samples > 0 and not track.samples.any()
    assert "silent" in caplog.text and "silent.mp4" in caplog.text


def test_no_audio_stream_is_invalid_zeros(tmp_path):
    path = write_media(tmp_path / "mute.mp4", with_audio=False)
    track = decode_audio(path)
    assert not track.valid and track.reason == "no audio stream"
    assert abs(track.duration - 4.0) < 0.1 and not track.samples.any()


def test_broken_file_is_invalid_not_a_crash(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    track = decode_audio(str(path))
    assert not track.valid and "cannot open" in track.reason
    assert track.n_samples == 0


def test_missing_file_raises_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_audio(tmp_path / "nope.mp4")


def test_quiet_audio_below_threshold_is_silent(tmp_path):
    x = tone_bursts(16000, 2.0, BURSTS, amp=1e-5)
    path = write_media(
        tmp_path / "quiet.mkv",
        audio=x,
        audio_rate=16000,
        audio_codec="pcm_s16le",
        layout="mono",
        duration=2.0,
    )
    assert not decode_audio(path, AudioDecodeConfig(silence_peak=1e-3)).valid


def test_left_right_tracks_decode_once(tmp_path, monkeypatch):
    import extract.audio_decode as mod

    clear_audio_cache()
    path = make_case(tmp_path, "30fps")
    calls = []
    real = mod.decode_audio
    monkeypatch.setattr(mod, "decode_audio", lambda p, c=None: calls.append(p) or real(p, c))
    left = load_audio(path)
    right = load_audio(path)
    assert right is left and len(calls) == 1
    assert not left.samples.flags.writeable  # shared between tracks: read-only
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # file changed -> decode again
    load_audio(path)
    assert len(calls) == 2
    clear_audio_cache()
