import pytest

# Assertion helpers get pytest's rewriting, so their failures show full diffs.
pytest.register_assert_rewrite("harness", "pss")

import pulumi  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_pulumi_config():
    """Pulumi config is process-wide: no test sees another's."""
    yield
    pulumi.runtime.set_all_config({}, [])
