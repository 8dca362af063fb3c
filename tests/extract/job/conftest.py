"""One synthetic world and one reference store, shared by the job tests (built once per session)."""

from __future__ import annotations

import pytest

from tests.extract.job.job_world import args_for, make_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("job"))


@pytest.fixture(scope="session")
def reference_store(world):
    from extract.cli import main as extract_main

    store = world["base"] / "reference.zarr"
    assert extract_main(args_for(world, store)) == 0
    return store
