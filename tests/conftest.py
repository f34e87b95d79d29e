import copy
from collections.abc import Iterator

import pytest

# Assertion helpers get pytest's rewriting, so their failures show full diffs.
pytest.register_assert_rewrite("harness", "pss")

import pulumi  # noqa: E402
from drills_support import Report  # noqa: E402
from harness import NO_TLS, SINGLE_PODS, Rendered, RenderedPair, render_both  # noqa: E402
from podrunner import PodRunner  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_pulumi_config() -> Iterator[None]:
    """Pulumi config is process-wide: no test sees another's."""
    yield
    pulumi.runtime.set_all_config({}, [])


def _render_pair(region1: dict[str, object] | None = None, region2: dict[str, object] | None = None) -> RenderedPair:
    pair = render_both(region1, region2)
    # A session fixture is set up inside whichever test asks for it first: the config rendering
    # left behind (region 2's) must not reach that test.
    pulumi.runtime.set_all_config({}, [])
    return pair


@pytest.fixture(scope="session")
def _regions_once() -> RenderedPair:
    return _render_pair()


@pytest.fixture(scope="session")
def _regions_without_tls_once() -> RenderedPair:
    return _render_pair({**NO_TLS, **SINGLE_PODS}, {**NO_TLS, **SINGLE_PODS})


@pytest.fixture
def regions(_regions_once: RenderedPair) -> RenderedPair:
    """Both stacks as their stack files render them, region 2's StackReference answered by region
    1's exports. Rendered once per run; each test gets its own deep copy (about 20 ms), so a test
    may change what it got (``exports``, captured ``inputs``) without another test seeing it."""
    return copy.deepcopy(_regions_once)


@pytest.fixture
def regions_without_tls(_regions_without_tls_once: RenderedPair) -> RenderedPair:
    """``regions`` with TLS off in both stacks (``NO_TLS``), as the pod runner can start them, and
    one pod per instance (``SINGLE_PODS``): the single-pod drills. Groups: tests/test_group_drills.py."""
    return copy.deepcopy(_regions_without_tls_once)


@pytest.fixture
def region1(regions: RenderedPair) -> Rendered:
    """Region 1 as its stack file renders it: the first of ``regions`` (a copy of its own)."""
    return regions[0]


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    """A drill module's figures, printed once the module is done (run with -s to see them)."""
    r = Report()
    yield r
    print()
    for line in r.lines():
        print(line)


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    """A pod runner of the test's own: every pod, proxy and directory removed afterwards, also when
    the test failed."""
    with PodRunner() as r:
        yield r
