"""VariantGenerator: grid, dependencies, derive, hide, update, stable names."""

import pytest

from musicsweep import MusicsweepError, VariantGenerator
from musicsweep.sweep.variants import NAME_KEY


def quickstart_generator() -> VariantGenerator:
    vg = VariantGenerator()
    vg.add("prompt", ["lofi", "epic"])
    vg.add("duration_s", [10, 20])
    vg.add("model", ["tiny"])
    vg.add("seed", lambda duration_s: [duration_s * 7])
    return vg


def test_grid_with_dependent_values() -> None:
    variants = quickstart_generator().variants()
    assert [(v["prompt"], v["duration_s"], v["seed"]) for v in variants] == [
        ("lofi", 10, 70),
        ("lofi", 20, 140),
        ("epic", 10, 70),
        ("epic", 20, 140),
    ]


def test_names_are_stable_readable_and_unique() -> None:
    first = [v[NAME_KEY] for v in quickstart_generator().variants()]
    second = [v[NAME_KEY] for v in quickstart_generator().variants()]
    assert first == second
    assert len(set(first)) == len(first)
    assert first[0].startswith("prompt=lofi_duration_s=10_seed=70_")
    assert "model=" not in first[0]  # constant keys stay out of the name


def test_dependency_declared_before_its_source_is_resolved_in_order() -> None:
    vg = VariantGenerator()
    vg.add("seed", lambda duration_s, prompt: [len(prompt) + duration_s])
    vg.add("prompt", ["ab", "abc"])
    vg.add("duration_s", [1])
    assert [v["seed"] for v in vg.variants()] == [3, 4]


def test_multiple_values_from_a_dependent_callable() -> None:
    vg = VariantGenerator()
    vg.add("duration_s", [10, 30])
    vg.add("seed", lambda duration_s: range(duration_s // 10))
    assert [(v["duration_s"], v["seed"]) for v in vg.variants()] == [(10, 0), (30, 0), (30, 1), (30, 2)]


def test_cycle_is_an_error_naming_the_keys() -> None:
    vg = VariantGenerator()
    vg.add("a", lambda b: [b])
    vg.add("b", lambda a: [a])
    with pytest.raises(MusicsweepError, match="cycle: a -> b -> a"):
        vg.variants()


def test_unknown_dependency_is_an_error() -> None:
    vg = VariantGenerator()
    vg.add("seed", lambda missing: [1])
    with pytest.raises(MusicsweepError, match="'seed' depends on unknown key 'missing'"):
        vg.variants()


def test_hide_keeps_value_but_leaves_name() -> None:
    vg = VariantGenerator()
    vg.add("prompt", ["a", "b"])
    vg.add("note", ["x", "y"], hide=True)
    variants = vg.variants()
    assert {v["note"] for v in variants} == {"x", "y"}
    assert all("note" not in v[NAME_KEY] for v in variants)
    assert len({v[NAME_KEY] for v in variants}) == 4  # the hash still tells them apart


def test_update_replaces_values_and_keeps_hide() -> None:
    vg = VariantGenerator()
    vg.add("prompt", ["a"])
    vg.add("seed", [1, 2], hide=True)
    vg.update("seed", [5])
    assert [v["seed"] for v in vg.variants()] == [5]
    assert "seed" not in vg.variants()[0][NAME_KEY]
    with pytest.raises(MusicsweepError, match="never added"):
        vg.update("nope", [1])


def test_derive_computes_a_field() -> None:
    vg = VariantGenerator()
    vg.add("prompt", ["lofi piano"])
    vg.derive("file_name", lambda prompt: prompt.replace(" ", "-"))
    assert vg.variants()[0]["file_name"] == "lofi-piano"


def test_empty_values_are_an_error() -> None:
    with pytest.raises(MusicsweepError, match="'prompt': no values"):
        VariantGenerator().add("prompt", [])
