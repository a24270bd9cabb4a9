"""Fixtures of the image tests: the images, built once per test session."""

from __future__ import annotations

import pytest

from deploy import containers, images


@pytest.fixture(scope="session")
def built_images() -> dict[str, float]:
    """Every image of deploy/images.py built (`make images`): image name -> build seconds (0: up to date).
    The first build on a machine also makes the local base image."""
    return containers.build_images([spec.name for spec in images.IMAGES])
