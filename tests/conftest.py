"""Shared fixtures: one local Ray instance for the tests that run sweeps in this process."""

import os
import tempfile

import pytest
import ray

# Dataset digests are cached per machine (orchestrator.provenance); the tests' go with them.
os.environ.setdefault("VAECAM_CACHE_DIR", tempfile.mkdtemp(prefix="vaecam-test-cache-"))


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance for the whole session (starting one costs seconds): a sweep run in
    this process finds it initialised, uses it, and leaves it running."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()
