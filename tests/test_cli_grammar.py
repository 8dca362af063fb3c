"""The three command lines share one grammar: option spellings, defaults, help, --version."""

from __future__ import annotations

import argparse
import dataclasses

import pandas as pd
import pytest

import data_manifest.cli
import extract.cli
import train.cli
from data_manifest.cli_options import package_version, track_list
from data_manifest.manifest import make_manifest, unusable_reason, usable_rows

CLIS = {
    "auwild-manifest": data_manifest.cli,
    "auwild-extract": extract.cli,
    "auwild-train": train.cli,
}
# dest -> the option every command that has it must spell, default and type alike
SHARED = (
    "device",
    "store",
    "manifest",
    "out",
    "tracks",
    "json",
    "no_progress",
    "verbose",
    "traceback",
)
# older spellings kept for scripts: (command, flag) that is not the shared option of that name
LEGACY = {("auwild-manifest synth", "--tracks")}  # the number of tracks to synthesise


def commands():
    """(prog of the sub-command, its parser) for every sub-command of the three CLIs."""
    for module in CLIS.values():
        parser = module.build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for p in dict.fromkeys(sub.choices.values()):
            yield p.prog, p


def _signature(action: argparse.Action) -> tuple:
    return (
        tuple(action.option_strings),
        action.default,
        action.type,
        action.nargs,
        action.const,
        type(action).__name__,
    )


def test_shared_options_are_spelled_alike_everywhere():
    seen: dict[str, dict[tuple, list[str]]] = {d: {} for d in SHARED}
    flags_of = {}
    for prog, parser in commands():
        for action in parser._actions:
            if action.dest in SHARED and action.option_strings:
                seen[action.dest].setdefault(_signature(action), []).append(prog)
                for flag in action.option_strings:
                    flags_of.setdefault(flag, set()).add(action.dest)
            elif action.dest not in SHARED:
                for flag in action.option_strings:
                    if (prog, flag) not in LEGACY:
                        flags_of.setdefault(flag, set()).add(action.dest)
    for dest, variants in seen.items():
        assert len(variants) <= 1, f"{dest} differs: {variants}"
    # a shared flag never means something else in another command
    for dest in SHARED:
        for sig in seen[dest]:
            for flag in sig[0]:
                assert flags_of[flag] == {dest}, (flag, flags_of[flag])
    # the commands that take each shared option
    have = {d: sorted(p for ps in v.values() for p in ps) for d, v in seen.items()}
    assert "auwild-extract run" in have["store"] and "auwild-train fit" in have["store"]
    assert "auwild-extract inspect" in have["store"] and "auwild-train predict" in have["tracks"]
    assert (
        "auwild-manifest synth" in have["no_progress"]
        and "auwild-train ablate" in have["no_progress"]
    )
    assert "auwild-manifest validate" in have["json"] and "auwild-extract verify" in have["json"]
    assert len(have["traceback"]) == len(list(commands()))


def test_every_option_has_help_and_defaults_show():
    for prog, parser in commands():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{prog} {action.option_strings or action.dest} has no help"
    text = extract.cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "(default: 32)" in text and "(default: template)" in text and "(default: auto)" in text


@pytest.mark.parametrize("prog", sorted(CLIS))
def test_version(prog, capsys):
    assert CLIS[prog].main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"{prog} {package_version()}"


def test_extract_options_come_from_the_config_fields():
    from extract.encoders.base import known_audio_encoders, known_visual_encoders
    from extract.faces.base import known_landmark_backends
    from extract.faces.detectors import known_face_detectors
    from extract.job.config import ExtractConfig, config_from_args
    from extract.store.quantize import TOKEN_KINDS

    run = extract.cli.build_parser()._subparsers._group_actions[0].choices["run"]
    actions = {a.dest: a for a in run._actions}
    for f in dataclasses.fields(ExtractConfig):
        assert f.name in actions, f.name
        assert actions[f.name].option_strings == ["--" + f.name.replace("_", "-")]
        # the field defaults (token_dtype and patch_pool among them), parsed where text is parsed
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        parse = f.metadata.get("parse") or (lambda v: v)
        assert parse(actions[f.name].default) == default, f.name
    assert all(n in actions["landmarks"].help for n in known_landmark_backends())
    assert all(n in actions["landmarks"].help for n in known_face_detectors())
    assert actions["token_dtype"].choices == list(TOKEN_KINDS)
    assert all(n in actions["visual"].help for n in known_visual_encoders())
    assert all(n in actions["audio"].help for n in known_audio_encoders())
    args = run.parse_args(
        ["--manifest", "m", "--store", "s", "--audio", "logmel", "--audio-layers", "1,2",
         "--device", "cpu", "--patch-pool", "4"]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.audio == {"logmel": None} and cfg.audio_layers == (1, 2) and cfg.patch_pool == 4
    assert cfg.to_dict()["audio_layers"] == [1, 2]


def test_old_spellings_still_parse(tmp_path):
    ex = extract.cli.build_parser()
    a = ex.parse_args(["inspect", "s.zarr"])
    b = ex.parse_args(["inspect", "--store", "s.zarr"])
    assert a.store_positional == "s.zarr" and b.store == "s.zarr"
    assert ex.parse_args(["inspect", "s.zarr", "--json"]).json == "-"
    man = data_manifest.cli.build_parser()
    synth = man.parse_args(["synth", "--out", "d", "--tracks", "3", "--quiet"])
    assert synth.n_tracks == 3 and synth.no_progress
    assert man.parse_args(["validate", "m", "--json", "r.json"]).json == "r.json"
    listing = tmp_path / "test.txt"
    listing.write_text("b\na\n\n")
    tr = train.cli.build_parser()
    pred = tr.parse_args(["predict", "run", "--out", "o", "--tracks", str(listing)])
    assert pred.tracks == ["b", "a"]
    assert tr.parse_args(
        ["fit", "--store", "s", "--manifest", "m", "--out", "o", "--quiet"]
    ).no_progress


def test_track_list_forms(tmp_path):
    f = tmp_path / "ids"
    f.write_text("x\ny\n")
    assert track_list("a, b,,c") == ["a", "b", "c"]
    assert track_list(f"@{f}") == ["x", "y"]
    assert track_list(str(f)) == ["x", "y"]
    with pytest.raises(argparse.ArgumentTypeError, match="not found"):
        track_list(str(tmp_path / "missing.txt"))


def test_json_to_a_file_keeps_the_text(tmp_path, capsys):
    from data_manifest.cli_options import write_json

    assert write_json("-", '{"a": 1}') is True
    assert capsys.readouterr().out.strip() == '{"a": 1}'
    assert write_json(str(tmp_path / "r.json"), '{"a": 1}') is False
    assert (tmp_path / "r.json").read_text().strip() == '{"a": 1}'
    assert write_json(None, "{}") is False


def test_usable_rows_is_the_one_rule():
    df = make_manifest(
        [
            {"track_id": "a", "split": "train"},
            {"track_id": "b", "split": "train", "status": "missing_video", "error": "no file"},
            {"track_id": "c", "split": "val"},
        ]
    )
    usable = usable_rows(df)
    assert list(usable["track_id"]) == ["a", "c"]
    assert list(df.drop(usable.index)["track_id"]) == ["b"]
    assert unusable_reason(df.iloc[1].to_dict()) == "status missing_video: no file"
    assert unusable_reason(df.iloc[0].to_dict()) == ""
    no_status = pd.DataFrame({"track_id": ["a"], "split": ["train"]})
    assert len(usable_rows(no_status)) == 1


def test_every_caller_uses_usable_rows():
    """Extraction plan, training splits, prediction and the manifest commands share the rule."""
    import inspect

    import data_manifest.cli as mcli
    import extract.job.plan as plan
    import train.predict as predict

    for module in (mcli, plan, predict):
        assert "usable_rows(" in inspect.getsource(module), module.__name__
    import train.tracks as tracks

    assert "usable_rows(" in inspect.getsource(tracks)
