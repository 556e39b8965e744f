"""Shared fixtures: one local Ray instance for the tests that run sweeps in this process."""

import pytest
import ray


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance for the whole session (starting one costs seconds): a sweep run in
    this process finds it initialised, uses it, and leaves it running."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()
