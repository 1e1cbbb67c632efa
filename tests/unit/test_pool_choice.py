"""The pool's rule: which server a request goes to (domain/pool.py's `choose`, the rule the Redis
script runs too), and the route a model policy draws for a model or an alias."""

from __future__ import annotations

import pytest

from infergate.domain.errors import ModelNotFound, UpstreamError
from infergate.domain.model_policy import ModelPolicy
from infergate.domain.pool import Candidate, Choice, Load, Placement, Route, Server, choose, unchecked_placement
from tests.support.fakes import FixedCatalog


def route(*choices: tuple[str, list[Candidate]], continued: bool = False) -> Route:
    return Route("asked", tuple(Choice(model, tuple(candidates)) for model, candidates in choices),
                 conversation="c1" if continued else None, continued=continued)


def server(name: str, *, slots: int = 2, weight: float = 1.0, loaded: bool = False) -> Candidate:
    return Candidate(name, slots, weight, loaded)


def test_a_server_with_the_model_loaded_is_preferred_while_it_has_a_free_slot():
    wanted = route(("m", [server("a"), server("b", loaded=True)]))
    assert choose(wanted, {"a": Load(True, 0), "b": Load(True, 1)}) == Placement("b", "m")
    assert choose(wanted, {"a": Load(True, 0), "b": Load(True, 2)}) == Placement("a", "m"), "b is full"


def test_among_equals_the_fewest_in_flight_for_their_weight():
    wanted = route(("m", [server("a", slots=8), server("b", slots=8, weight=3.0)]))
    assert choose(wanted, {"a": Load(True, 1), "b": Load(True, 2)}) == Placement("b", "m"), "2/3 < 1/1"
    assert choose(wanted, {"a": Load(True, 1), "b": Load(True, 4)}) == Placement("a", "m")


def test_ties_go_to_each_server_in_turn_as_the_clock_moves():
    wanted = route(("m", [server("a"), server("b"), server("c")]))
    idle = {name: Load(True, 0) for name in "abc"}
    assert {choose(wanted, idle, tick=tick).server for tick in range(3)} == {"a", "b", "c"}


def test_requests_waiting_ahead_take_the_free_slots_first():
    wanted = route(("m", [server("a", slots=2)]))
    assert choose(wanted, {"a": Load(True, 1, ahead=1)}) is None, "one slot free, one request ahead of this one"
    assert choose(wanted, {"a": Load(True, 0, ahead=1)}) == Placement("a", "m")


def test_a_server_that_may_not_be_asked_is_passed_over():
    wanted = route(("m", [server("a", loaded=True), server("b")]))
    assert choose(wanted, {"a": Load(False), "b": Load(True, 1)}) == Placement("b", "m")
    assert choose(wanted, {"b": Load(True, 1)}) == Placement("b", "m"), "a server without a load is not asked"
    assert choose(wanted, {"a": Load(False), "b": Load(False)}) is None


def test_a_conversation_goes_on_where_it_began_while_that_server_has_a_free_slot():
    wanted = route(("m", [server("a", loaded=True), server("b")]), continued=True)
    loads = {"a": Load(True, 0), "b": Load(True, 1)}
    assert choose(wanted, loads, last="b") == Placement("b", "m")
    assert choose(wanted, {**loads, "b": Load(True, 2)}, last="b") == Placement("a", "m"), "b is full"
    first_turn = route(("m", [server("a", loaded=True), server("b")]))
    assert choose(first_turn, loads, last="b") == Placement("a", "m"), "a first turn goes where the model is loaded"


def test_an_alias_falls_back_to_its_next_model_when_the_first_has_no_free_server():
    wanted = route(("big", [server("a", slots=1)]), ("small", [server("b"), server("c")]))
    assert choose(wanted, {"a": Load(True, 0), "b": Load(True, 0), "c": Load(True, 0)}).model == "big"
    assert choose(wanted, {"a": Load(True, 1), "b": Load(True, 0), "c": Load(True, 1)}) == Placement("b", "small")
    assert choose(wanted, {"a": Load(False), "b": Load(True, 2), "c": Load(True, 0)}) == Placement("c", "small")


def test_without_the_store_a_request_goes_to_its_first_untried_server_with_the_model_loaded():
    wanted = route(("m", [server("a"), server("b", loaded=True)]), ("n", [server("c")]))
    assert unchecked_placement(wanted) == Placement("b", "m")
    assert unchecked_placement(wanted, ["b"]) == Placement("a", "m")
    assert unchecked_placement(wanted, ["a", "b"]) == Placement("c", "n")
    assert unchecked_placement(wanted, ["a", "b", "c"]) is None


# -- the route of a model or an alias ------------------------------------------------

POOL = [Server("gpu-1", slots=2), Server("gpu-2", slots=2), Server("cpu", kind="openai", slots=4, models=("small:1b",))]


def policy(catalog: FixedCatalog, **options) -> ModelPolicy:
    return ModelPolicy(POOL, catalog, default="big:70b", allowed=None, **options)


def test_a_route_lists_the_servers_that_serve_the_model_those_with_it_loaded_marked():
    catalog = FixedCatalog(names=["big:70b", "small:1b"], servers=("gpu-1", "gpu-2"), loaded={"gpu-2": ("big:70b",)})
    found = policy(catalog).route("big:70b")
    assert [(c.server, c.loaded) for c in found.choices[0].candidates] == [("gpu-1", False), ("gpu-2", True)]
    assert found.pooled and found.asked == "big:70b"
    assert [c.server for c in policy(catalog).route("small:1b").choices[0].candidates] == ["gpu-1", "gpu-2", "cpu"]


def test_an_alias_routes_through_its_models_in_order_and_lists_as_a_model():
    catalog = FixedCatalog(names=["big:70b", "small:1b"], servers=("gpu-1", "gpu-2"))
    chat = policy(catalog, aliases={"chat": ["big:70b", "small:1b"]})
    assert [choice.model for choice in chat.route("chat").choices] == ["big:70b", "small:1b"]
    assert "chat" in [entry.name for entry in chat.available()]


def test_a_model_no_server_serves_is_not_found_naming_it():
    catalog = FixedCatalog(names=["big:70b"], servers=("gpu-1", "gpu-2"))
    with pytest.raises(ModelNotFound, match="ghost"):
        policy(catalog).route("ghost")


def test_a_server_never_reached_may_serve_any_model_and_the_call_decides():
    found = policy(FixedCatalog(names=None, servers=("gpu-1", "gpu-2"))).route("new:8b")
    assert [c.server for c in found.choices[0].candidates] == ["gpu-1", "gpu-2"]
    with pytest.raises(UpstreamError):
        ModelPolicy([Server("gpu-1")], FixedCatalog(names=None, servers=("gpu-1",)), default="m", allowed=None).available()


def test_without_affinity_no_conversation_is_remembered():
    catalog = FixedCatalog(names=["big:70b"], servers=("gpu-1", "gpu-2"))
    assert policy(catalog, affinity=False).route("big:70b", conversation="c", continued=True).conversation is None
    assert policy(catalog).route("big:70b", conversation="c", continued=True).continued
