"""Trials run side by side, and what is reported of them: medians and paired ratios.

The machine is shared with other work, so a figure measured alone says little.  Each
round runs every contestant once, in an order that rotates from round to round, and a
ratio is the median of the per-round ratios: a burst of load slows both sides of a
round, and the median drops the rounds it hit unevenly.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

#: One trial: run once, return the figure it measured (a rate or a duration).
Trial = Callable[[], float]


def alternate(
    trials: Mapping[str, Trial], rounds: int, progress: Callable[[str], None] | None = None
) -> dict[str, list[float]]:
    """Run every trial once per round, in an order that rotates, then runs backwards.

    With two trials the rounds go AB, BA, BA, AB, ...; with three, through all six
    orders: each trial runs as often first as last, and after each of the others.

    :returns: each trial's figures, in round order, so that index *i* of two lists
        belongs to the same round.
    """
    names = list(trials)
    figures: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        order = names[shift:] + names[:shift]
        if (number // len(names)) % 2:
            order.reverse()
        for name in order:
            figures[name].append(trials[name]())
        if progress is not None:
            progress(f"round {number + 1}/{rounds}")
    return figures


def median(values: Sequence[float]) -> float:
    """The median of *values*."""
    return float(statistics.median(values))


def paired_ratios(subject: Sequence[float], reference: Sequence[float]) -> list[float]:
    """``subject[i] / reference[i]`` for each round *i* whose reference is not zero."""
    return [a / b for a, b in zip(subject, reference, strict=True) if b]


def paired_ratio(subject: Sequence[float], reference: Sequence[float]) -> float:
    """The median over rounds of ``subject[i] / reference[i]``."""
    return median(paired_ratios(subject, reference))


@dataclass(frozen=True)
class Target:
    """A goal for one measurement: a bound on a ratio or on the median itself.

    :param text: how the README states it, e.g. ``≥ 2x Mailman``.
    :param on: ``ratio`` (runnerkit against the measurement's reference) or ``value``.
    :param at_least: the figure must be at least *bound*; otherwise at most.
    """

    text: str
    on: str
    bound: float
    at_least: bool
    reference: str | None = None

    def met(self, measurement: Measurement) -> bool | None:
        """Whether *measurement* meets the target, or None when it could not be judged."""
        if self.on == "ratio":
            if self.reference is None or self.reference not in measurement.figures:
                return None
            figure = measurement.ratio(self.reference)
        else:
            figure = measurement.median(measurement.subject)
        return figure >= self.bound if self.at_least else figure <= self.bound


@dataclass
class Measurement:
    """The figures of one measurement: each contestant's trials, runnerkit's first.

    :param key: a short identifier, stable across runs (used in JSON output).
    :param title: what was measured, for the table.
    :param unit: the unit of every figure, e.g. ``msg/s`` or ``ms``.
    """

    key: str
    title: str
    unit: str
    figures: dict[str, list[float]]
    targets: list[Target] = field(default_factory=list)
    note: str = ""

    @property
    def subject(self) -> str:
        return next(iter(self.figures))

    def median(self, name: str) -> float:
        return median(self.figures[name])

    def ratio(self, name: str) -> float:
        """runnerkit's figure over *name*'s, paired by round."""
        return self.paired(self.subject, name)

    def paired(self, name: str, reference: str) -> float:
        """*name*'s figure over *reference*'s, paired by round."""
        return paired_ratio(self.figures[name], self.figures[reference])

    def round_ratios(self, name: str) -> list[float]:
        """runnerkit's figure over *name*'s in each round: :meth:`ratio` is their median."""
        return paired_ratios(self.figures[self.subject], self.figures[name])

    def as_dict(self) -> dict[str, object]:
        others = [name for name in self.figures if name != self.subject]
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "medians": {name: self.median(name) for name in self.figures},
            "ratios": {name: self.ratio(name) for name in others},
            "figures": self.figures,
            "targets": [
                {
                    "target": target.text,
                    "met": target.met(self),
                    "on": target.on,
                    "bound": target.bound,
                    "at_least": target.at_least,
                    "reference": target.reference,
                }
                for target in self.targets
            ],
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: object) -> Measurement:
        """The measurement :meth:`as_dict` gave *data*; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a measurement must be an object, not {type(data).__name__}")
        key = data.get("key")
        if not isinstance(key, str) or not key:
            raise ValueError("a measurement has no 'key'")
        where = f"measurement {key!r}"
        texts = {}
        for name in ("title", "unit", "note"):
            value = data.get(name, "" if name == "note" else None)
            if not isinstance(value, str):
                raise ValueError(f"{where}: {name!r} must be a string")
            texts[name] = value
        figures = data.get("figures")
        if not isinstance(figures, dict) or not figures:
            raise ValueError(f"{where}: 'figures' must map each contestant to its figures")
        checked: dict[str, list[float]] = {}
        for name, values in figures.items():
            if not isinstance(values, list) or not all(
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and not math.isnan(value)
                for value in values
            ):
                raise ValueError(f"{where}: the figures of {name!r} must be a list of numbers")
            checked[name] = [float(value) for value in values]
        targets = []
        for item in data.get("targets", []):
            if not isinstance(item, dict) or "target" not in item:
                raise ValueError(f"{where}: a target must be an object with 'target'")
            if "on" not in item:
                continue  # written before targets were written whole: nothing to draw
            try:
                targets.append(
                    Target(
                        str(item["target"]),
                        str(item["on"]),
                        float(item["bound"]),
                        bool(item["at_least"]),
                        None if item.get("reference") is None else str(item["reference"]),
                    )
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{where}: target {item['target']!r} is incomplete") from error
        measurement = cls(key, texts["title"], texts["unit"], checked, targets, texts["note"])
        ratios = data.get("ratios", {})
        if not isinstance(ratios, dict):
            raise ValueError(f"{where}: 'ratios' must be an object")
        for name, written in ratios.items():
            # The ratios written beside the figures are the table's: they must follow.
            try:
                ratio = measurement.ratio(name)
            except (KeyError, ValueError, statistics.StatisticsError) as error:
                raise ValueError(f"{where}: no ratio over {name!r} from its figures") from error
            if not isinstance(written, int | float) or not math.isclose(
                ratio, written, rel_tol=1e-9
            ):
                raise ValueError(
                    f"{where}: the ratio over {name!r} is {written!r}, "
                    f"but its figures give {ratio!r}"
                )
        return measurement
