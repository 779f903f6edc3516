"""Loading manifests with libyaml: the same documents as PyYAML's safe loader, and its clearer errors."""

from __future__ import annotations

import pytest
import yaml

from sandbox.manifest_objects import YAML_LOADER, load_mappings


def test_libyaml_is_the_loader_here() -> None:
    """The speed of every stage reading Flux's install rests on it (PyYAML's wheels carry libyaml)."""
    assert YAML_LOADER is yaml.CSafeLoader


def test_the_mapping_documents_are_those_of_the_safe_loader() -> None:
    text = "a: 1\n---\n- not a mapping\n---\n---\nkind: X\nanchors: &a {x: [1, 2]}\nalias: *a\nwhen: 2024-01-01\n"
    assert load_mappings(text) == [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    assert [d.get("kind") for d in load_mappings(text)] == [None, "X"]


def test_invalid_yaml_raises_the_pure_python_parsers_error() -> None:
    text = "kind: Kustomization\nitems: [one, two\n"
    with pytest.raises(yaml.YAMLError) as pure:
        list(yaml.safe_load_all(text))
    with pytest.raises(yaml.YAMLError) as ours:
        load_mappings(text)
    assert str(ours.value) == str(pure.value)
    assert "expected ',' or ']', but got '<stream end>'" in str(ours.value)
