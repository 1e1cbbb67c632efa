"""Prices: what a model's tokens cost, in whole micro-units of the operator's currency (CURRENCY),
as MODEL_PRICES sets them per million tokens for each model or alias.

A request's cost is worked out once, from the tokens it was charged:
(prompt × input_per_million + completion × output_per_million) / 1,000,000, rounded half up to
whole micros. Every total is a sum of those integers, so totals are exact at any level and in
any order. A model with no price costs 0 and is still counted in tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infergate.domain.model_names import canonical

MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    input_per_million_micros: int
    output_per_million_micros: int

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The cost in micros, rounded half up."""
        exact = prompt_tokens * self.input_per_million_micros + completion_tokens * self.output_per_million_micros
        return (exact + MILLION // 2) // MILLION

    def cost_of_charge(self, prompt_tokens: int, completion_tokens: int, charged: int) -> int:
        """The cost of `charged` tokens of a request that used `prompt_tokens` and `completion_tokens`:
        when less than all were charged (the model ran past its hold), the prompt comes first."""
        prompt = min(prompt_tokens, charged)
        return self.cost(prompt, min(completion_tokens, charged - prompt))

    def most_for(self, prompt_bound: int, completion_bound: int, tokens: int) -> int:
        """The most `tokens` of a request can cost, its prompt at most `prompt_bound` and its answer at
        most `completion_bound`: the dearer side first. What a budget holds for it."""
        if self.output_per_million_micros >= self.input_per_million_micros:
            completion = min(completion_bound, tokens)
            return self.cost(min(prompt_bound, tokens - completion), completion)
        prompt = min(prompt_bound, tokens)
        return self.cost(prompt, min(completion_bound, tokens - prompt))


FREE = Price(0, 0)


@dataclass(frozen=True)
class WorstCost:
    """The most a number of a request's tokens may cost: what a budget holds for them."""

    price: Price
    prompt_bound: int
    completion_bound: int

    def __call__(self, tokens: int) -> int:
        return self.price.most_for(self.prompt_bound, self.completion_bound, tokens)


NOTHING = WorstCost(Price(0, 0), 0, 0)


class PriceList:
    """MODEL_PRICES: the price of each model or alias named; any other costs nothing."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._named = dict(prices or {})
        self._prices = {canonical(name): price for name, price in self._named.items()}

    def of(self, requested: str | None, model: str) -> Price:
        """The price of a request that named `requested` (an alias, or None for the default) and
        was answered by `model`: the alias's price if it has one, else the model's."""
        for name in (requested, model):
            if name and canonical(name) in self._prices:
                return self._prices[canonical(name)]
        return FREE

    def most_of(self, requested: str | None, models: Iterable[str]) -> Price:
        """A price no answer to a request for `requested` can exceed, whichever of `models` answers."""
        prices = [self.of(requested, model) for model in models] or [FREE]
        return Price(max(price.input_per_million_micros for price in prices),
                     max(price.output_per_million_micros for price in prices))

    def named(self) -> dict[str, Price]:
        """Every price, under the name MODEL_PRICES gave it."""
        return dict(self._named)
