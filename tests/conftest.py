"""Fixtures shared by the test files."""
import pytest
from loguru import logger


@pytest.fixture()
def errors() -> list[str]:
    """The ERROR lines logged while the test runs."""
    lines: list[str] = []
    handle = logger.add(lines.append, level="ERROR", format="{message}")
    yield lines
    logger.remove(handle)
