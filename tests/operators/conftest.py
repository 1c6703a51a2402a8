from __future__ import annotations

import pytest

from tests.operators.helpers import task_context


@pytest.fixture
def ctx():
    return task_context()
