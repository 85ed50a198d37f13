"""The results table: one block per metric, one line per server, each tuskit line carrying its ratio
against every peer, and the goals printed beside the figures they judge."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Values = dict[str, dict[str, list[float]]]  # server name -> metric key -> one value per round


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    fmt: Callable[[float], str]
    better: str  # "higher" or "lower"; "" for counts, which get no ratio
    aggregate: Callable[[Sequence[float]], float] = statistics.median


@dataclass(frozen=True)
class Goal:
    """A target from an issue: on tuskit's ratio against `peer`, or on its own figure when `peer` is None."""

    metric: str
    text: str
    test: Callable[[float], bool]
    variant: str | None = None  # None: every tuskit variant
    peer: str | None = None

    def applies(self, metric: str, variant: str, peer: str | None) -> bool:
        return self.metric == metric and self.peer == peer and self.variant in (None, variant)


@dataclass(frozen=True)
class Server:
    name: str
    is_peer: bool


def advantage(ours: float, theirs: float, better: str) -> float | None:
    """tuskit's advantage: > 1 means tuskit did better, whichever direction better is."""
    if not better or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if better == "higher" else theirs / ours


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


class Report:
    def __init__(self, metrics: Sequence[Metric], goals: Sequence[Goal], servers: Sequence[Server],
                 values: Values) -> None:
        self.metrics = metrics
        self.goals = goals
        self.servers = servers
        self.peers = [s.name for s in servers if s.is_peer]
        self.values = values
        self.verdicts: list[tuple[bool | None, str]] = []  # (met, what), for the summary

    def _aggregate(self, metric: Metric, server: str) -> float | None:
        rounds = self.values.get(server, {}).get(metric.key, [])
        return metric.aggregate(rounds) if rounds else None

    def _judge(self, metric: Metric, variant: str, peer: str | None, value: float | None) -> str:
        """The goals that apply to this cell, each with its verdict (and a note in the summary)."""
        cells = []
        for goal in self.goals:
            if not goal.applies(metric.key, variant, peer):
                continue
            ok = None if value is None else goal.test(value)
            versus = f" vs {peer}" if peer else ""
            self.verdicts.append((ok, f"{metric.label}, {variant}{versus}: {goal.text}"))
            cells.append(f"goal {goal.text} {'n/a' if ok is None else 'met' if ok else 'MISSED'}")
        return "; ".join(cells)

    def _line(self, metric: Metric, server: Server) -> list[str]:
        rounds = self.values.get(server.name, {}).get(metric.key, [])
        ours = self._aggregate(metric, server.name)
        cells = [server.name, "-" if ours is None else metric.fmt(ours), " ".join(metric.fmt(v) for v in rounds)]
        if server.is_peer:
            return [*cells, *([""] * len(self.peers)), ""]
        for peer in self.peers:
            theirs = self._aggregate(metric, peer)
            ratio = advantage(ours, theirs, metric.better) if ours is not None and theirs is not None else None
            text = _times(ratio) if ratio is not None else ""
            judged = self._judge(metric, server.name, peer, ratio)
            cells.append(f"{text}  {judged}".strip())
        cells.append(self._judge(metric, server.name, None, ours))
        return cells

    def lines(self) -> list[str]:
        header = ["", "server", "result", "rounds", *(f"vs {peer}" for peer in self.peers), "goal"]
        rows: list[list[str]] = [header]
        for metric in self.metrics:
            for i, server in enumerate(self.servers):
                rows.append([metric.label if i == 0 else "", *self._line(metric, server)])
            rows.append([])
        widths = [max(len(r[i]) for r in rows if r) for i in range(len(header))]
        out = []
        for r in rows:
            if not r:
                out.append("")
                continue
            cells = [c.rjust(w) if i in (2, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
            out.append("  ".join(cells).rstrip())
        return out

    def _absent(self) -> list[str]:
        """Goals that name a server which did not run (skipped, or left out with --only)."""
        names = {s.name for s in self.servers}
        labels = {m.key: m.label for m in self.metrics}
        return [f"{labels[g.metric]}, {g.variant}{f' vs {g.peer}' if g.peer else ''}: {g.text}"
                for g in self.goals if (g.variant is not None and g.variant not in names)
                or (g.peer is not None and g.peer not in names)]

    def summary(self) -> str:
        """Call after lines(): how many goals were met, and which were not."""
        missed = [what for ok, what in self.verdicts if ok is False]
        unknown = [what for ok, what in self.verdicts if ok is None] + self._absent()
        met = sum(1 for ok, _ in self.verdicts if ok)
        text = f"goals: {met} met, {len(missed)} MISSED, {len(unknown)} not measured"
        return "\n".join([text, *(f"  MISSED: {m}" for m in missed), *(f"  not measured: {u}" for u in unknown)])
