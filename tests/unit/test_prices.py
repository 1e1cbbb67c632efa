"""What a request costs: whole micros, rounded half up once per request, from the price of the
name it asked for (an alias) or else of the model that answered."""

from __future__ import annotations

import pytest

from infergate.domain.prices import FREE, Price, PriceList

SMALL = Price(input_per_million_micros=150_000, output_per_million_micros=600_000)  # $0.15 and $0.60 per million


@pytest.mark.parametrize(("prompt", "completion", "micros"), [
    (0, 0, 0),
    (1_000_000, 1_000_000, 750_000),
    (10, 0, 2),        # 1.5 micros: half rounds up
    (3, 0, 0),         # 0.45 rounds down
    (1, 1, 1),         # 0.75
    (123, 45, 45),     # 18.45 + 27 = 45.45
])
def test_a_cost_is_whole_micros_rounded_half_up(prompt, completion, micros):
    assert SMALL.cost(prompt, completion) == micros


def test_costs_rounded_per_request_sum_exactly():
    requests = [(10, 0)] * 4  # 1.5 micros each, charged 2 each
    assert sum(SMALL.cost(*request) for request in requests) == 8


def test_a_charge_short_of_what_was_used_bills_the_prompt_first():
    assert SMALL.cost_of_charge(100, 50, charged=120) == SMALL.cost(100, 20)
    assert SMALL.cost_of_charge(100, 50, charged=60) == SMALL.cost(60, 0)
    assert SMALL.cost_of_charge(100, 50, charged=150) == SMALL.cost(100, 50)


def test_an_aliases_price_comes_before_its_models_and_an_unpriced_model_is_free():
    prices = PriceList({"chat": Price(1, 2), "llama3.1:8b": SMALL, "tiny": Price(5, 5)})
    assert prices.of("chat", "llama3.1:8b") == Price(1, 2)
    assert prices.of("llama3.1:8b", "llama3.1:8b") == SMALL
    assert prices.of(None, "llama3.1:8b") == SMALL
    assert prices.of("tiny:latest", "tiny:latest") == Price(5, 5)  # a bare name is name:latest
    assert prices.of("other", "other:7b") is FREE
