"""Trade policy with redistribution: criteria of a country's households
(:mod:`~hatrade.policy.criteria`), exact gradients through the stationary equilibrium
(:mod:`~hatrade.policy.gradient`), the optimal policy of one country
(:mod:`~hatrade.policy.optimal`) and Nash tariff wars (:mod:`~hatrade.policy.nash`);
docs/policy.md."""

from hatrade.policy.criteria import CRITERIA, Criterion, evaluate_criteria, parse_criterion
from hatrade.policy.gradient import PolicySpace, criterion_gradient
from hatrade.policy.optimal import INSTRUMENTS, PolicyOptions, PolicyResult, optimal_policy

__all__ = [
    "CRITERIA",
    "INSTRUMENTS",
    "Criterion",
    "PolicyOptions",
    "PolicyResult",
    "PolicySpace",
    "criterion_gradient",
    "evaluate_criteria",
    "optimal_policy",
    "parse_criterion",
]
