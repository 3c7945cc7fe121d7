"""The compatibility suite: the old worker's requests and responses (fixtures/) against the real service."""

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str, **fill) -> dict | list:
    text = (FIXTURES / name).read_text()
    for key, value in fill.items():
        text = text.replace("{" + key + "}", value)
    return json.loads(text)


def assert_shape(actual, expected, where="body"):
    """Field by field: every expected key present with its type (`str`, `number`, `null`, `a|b`) or value."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, want in expected.items():
            assert key in actual, f"{where}.{key} is missing from {actual!r}"
            assert_shape(actual[key], want, f"{where}.{key}")
        return
    if isinstance(expected, str) and set(expected.split("|")) <= {"str", "number", "null"}:
        kinds = {"str": str, "number": (int, float), "null": type(None)}
        ok = any(isinstance(actual, kinds[k]) and not isinstance(actual, bool) for k in expected.split("|"))
        assert ok, f"{where}: expected {expected}, got {actual!r}"
        return
    if isinstance(expected, str) and "|" in expected:
        assert actual in expected.split("|"), f"{where}: expected one of {expected}, got {actual!r}"
        return
    assert actual == expected, f"{where}: expected {expected!r}, got {actual!r}"


@pytest.fixture(scope="module")
def image_host(tmp_path_factory):
    from tests.support.images import png_bytes
    from tests.support.peers import FileServer

    root = tmp_path_factory.mktemp("faces")
    (root / "face.png").write_bytes(png_bytes(90, 160, (30, 200, 30)))
    with FileServer(root) as files:
        yield files.url
