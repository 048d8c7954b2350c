"""Fixtures for the SkyPilot backend tests: a sandbox no SkyPilot call can escape.

Every SkyPilot SDK call would silently start a local API server (~1.4 GB, ~30 s)
and read or write ``~/.sky``. Here a stray call fails fast instead: the local
server is disabled, the endpoint is a dead port, and HOME / SKY_RUNTIME_DIR point
at a temporary folder (so ``~/.sky``, its catalogs and chunkpilot's build cache
are the sandbox's). ``sky`` is imported only inside fixtures, after the sandbox
is in place, because SkyPilot reads SKY_RUNTIME_DIR when it is imported.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

SKY_GUARDS = {
    "SKYPILOT_DISABLE_LOCAL_API_SERVER": "1",
    "SKYPILOT_API_SERVER_ENDPOINT": "http://127.0.0.1:9",  # nothing listens on the discard port
    "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
    "CHUNKPILOT_LOG_LEVEL": "INFO",
}
# Variables that would hand the fake jobs real credentials or point SkyPilot elsewhere.
AMBIENT = ("SKYPILOT_CONFIG", "SKYPILOT_GLOBAL_CONFIG", "SKYPILOT_PROJECT_CONFIG", "HF_TOKEN",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
           "AWS_ENDPOINT_URL_S3", "CHUNKPILOT_STORE", "CHUNKPILOT_EXTRA_ACCELERATORS")


@pytest.fixture(scope="session", autouse=True)
def sky_sandbox(tmp_path_factory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("sky-home")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in SKY_GUARDS.items():
            mp.setenv(key, value)
        for key in AMBIENT:
            mp.delenv(key, raising=False)
        mp.setenv("HOME", str(home))
        mp.setenv("SKY_RUNTIME_DIR", str(home))
        mp.setenv("CHUNKPILOT_CACHE", str(home / ".cache" / "chunkpilot"))
        yield home


@pytest.fixture(scope="session")
def sky(sky_sandbox):
    """The real SkyPilot package, imported inside the sandbox."""
    import sky as sky_module

    assert not os.path.exists(os.path.join(sky_sandbox, ".sky", "catalogs")), "a catalog leaked into the sandbox"
    return sky_module


@pytest.fixture(scope="session")
def sky_catalog(sky) -> Path:
    """A small AWS price catalog (tests/data/sky_catalog) where SkyPilot looks for its catalogs,
    as `sky show-gpus` would have left one (kept for the session: SkyPilot caches what it read)."""
    from sky.catalog import common

    target = Path(common.get_catalog_path("aws/vms.csv"))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).resolve().parents[2] / "data" / "sky_catalog" / "aws" / "vms.csv", target)
    return target


@pytest.fixture
def fake_sky(sky, tmp_path):
    """A FakeSky that every backend built through make_backend (the CLI) uses."""
    from chunkpilot.control.backends import sky_sdk as sky_backend
    from tests.fakesky import FakeSky

    fake = FakeSky(tmp_path / "fake-sky")
    previous = sky_backend.use_sdk(fake)
    try:
        yield fake
    finally:
        sky_backend.use_sdk(previous)
        fake.shutdown()
