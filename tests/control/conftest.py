from collections.abc import Iterator

import pytest

from tests.control.agent import Agent, running_agent, shared_dir


@pytest.fixture
def agent() -> Iterator[Agent]:
    with shared_dir("egresswatch-control-") as directory, running_agent(directory) as running:
        yield running
