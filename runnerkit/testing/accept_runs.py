"""Accept mode for documents that run once per parameter: rewrite only what every run agrees on.

A document that a parametrized fixture runs several times (:mod:`runnerkit.testing.specnodes`)
has one text for all its runs.  Rewriting an example's expected output for one run
would fail it in another that printed something else, or that passed, so an example
of such a document is rewritten only when every run of the document ran it, failed,
and printed the same output; otherwise it is reported as not accepted, naming the runs
that disagree.  Under xdist every run of a file is on one worker
(:mod:`runnerkit.testing.scheduling`), which sees them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from runnerkit.testing.accept_record import Acceptance, Refusal
from runnerkit.testing.specnodes import SpecItem

#: What a run saw of an example: the output to accept, ``None`` if it passed, or a
#: :class:`Refusal` when its failure cannot be accepted.
Seen = str | Refusal | None


@dataclass
class RunAgreement:
    """What each run of a parametrized document saw of each of its examples."""

    #: By (path, start) of the example: how many runs its document has, and what each
    #: run that ran it saw, by run id.
    _seen: dict[tuple[str, int], tuple[int, dict[str, Seen]]] = field(default_factory=dict)

    def see(self, item: pytest.Item, seen: Seen) -> None:
        """Note what *item*, an example of one run of a document, saw; others are ignored."""
        if not isinstance(item, SpecItem) or item.run.params is None:
            return
        example = item.example
        _, runs = self._seen.setdefault((example.path, example.start), (item.run.count, {}))
        runs[item.run.params.id] = seen

    def settle(self, acceptances: Iterable[Acceptance]) -> tuple[list[Acceptance], list[Refusal]]:
        """*acceptances*, less those the other runs of their documents disagree with."""
        agreed: list[Acceptance] = []
        refused: list[Refusal] = []
        for acceptance in acceptances:
            known = self._seen.get((acceptance.path, acceptance.start))
            reason = None if known is None else _disagreement(acceptance, *known)
            if reason is None:
                agreed.append(acceptance)
            else:
                refused.append(Refusal(acceptance.path, acceptance.line, reason))
        return agreed, refused


def _disagreement(acceptance: Acceptance, count: int, runs: dict[str, Seen]) -> str | None:
    """Why the runs of *acceptance*'s document do not agree on it, or None if they do."""
    if len(runs) < count:
        return (
            f"its document runs once per parameter and only {len(runs)} of its {count} runs"
            " ran it; run them all to accept it"
        )
    passed = sorted(run for run, seen in runs.items() if seen is None)
    if passed:
        return f"it passed in run {_ids(passed)} of its document, which the rewrite would fail"
    unaccepted = sorted(run for run, seen in runs.items() if isinstance(seen, Refusal))
    if unaccepted:
        return f"it cannot be accepted in run {_ids(unaccepted)} of its document"
    outputs = {seen for seen in runs.values() if isinstance(seen, str)}
    if len(outputs) > 1:
        return f"the runs of its document ({_ids(sorted(runs))}) printed different output"
    return None


def _ids(runs: list[str]) -> str:
    return ", ".join(f"[{run}]" for run in runs)
