"""What the home node runs when: tuners for channels, reloads, retries. Pure: no I/O, no clock.

The runner tells :class:`Plan` what happened (a channel's tasks ended, the config changed) with the
time, and carries out the :class:`Start` / :class:`Stop` actions it answers with; it calls
:meth:`Plan.step` again at :meth:`Plan.next_deadline`.

The rules, in full:

* **Tuners.** A channel that reads a tuner channel takes one of the device's ``tuners`` while it
  runs. Channels are served in config order: when there are more than tuners, the first ones run
  and the rest wait (``queued``) until a tuner is free. A channel waiting to retry holds no tuner,
  so a failing channel never starves the others; nothing running is ever stopped for a waiting
  one, except when a reload lowers ``tuners`` (the last ones in config order go back to waiting).
* **Faults.** A channel whose tasks fail (a busy tuner, an unknown channel, a lost peer) is
  retried after ``base_s``, doubling up to ``cap_s``; a run that lasted ``healthy_s`` starts the
  doubling over. Other channels are not touched. A tuner channel that ends by itself is a fault
  too (a live channel does not end), and so is a channel that only pulls from remotes (its upstream
  ended: a publisher restarting after its own fault comes back, maybe at a new address its address
  file names); a file channel that ends by itself is ``ended``.
* **Reload.** An unchanged channel (equal :class:`~ec_node.home.config.ChannelSpec`) keeps
  running untouched; a changed one is stopped and started with its new spec (its backoff cleared);
  a removed one is stopped and forgotten; a new one is queued.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from ec_node.home.config import ChannelSpec


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff after a channel's fault: ``base_s`` doubling up to ``cap_s``, reset by a run of ``healthy_s``."""

    base_s: float = 2.0
    cap_s: float = 60.0
    healthy_s: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th fault in a row (1, 2, ...)."""
        return float(min(self.base_s * 2 ** max(0, failures - 1), self.cap_s))


class Outcome(enum.Enum):
    """How a channel's run ended."""

    OK = "ok"  # its tasks returned by themselves
    BUSY = "busy"  # the tuner answered "all tuners busy" through the retries
    FAILED = "failed"  # any other error
    STOPPED = "stopped"  # the plan (or the node) asked it to stop


@dataclass(frozen=True)
class Start:
    """Start the channel's tasks; ``tuner`` is the slot it holds (None: it takes no tuner)."""

    name: str
    spec: ChannelSpec
    tuner: int | None


@dataclass(frozen=True)
class Stop:
    """Stop the channel's tasks; :meth:`Plan.exited` follows once they have ended."""

    name: str
    reason: str


Action = Start | Stop


@dataclass
class ChannelState:
    """What the plan knows about one channel."""

    spec: ChannelSpec
    state: str = "queued"  # queued | running | stopping | retrying | ended
    tuner: int | None = None
    failures: int = 0  # faults in a row
    retry_at: float | None = None
    started_at: float | None = None
    starts: int = 0
    last_error: str | None = None
    pending: ChannelSpec | None = field(default=None, repr=False)  # the spec to start once stopped
    removing: bool = False


class Plan:
    """The channels, their states and the tuners they hold."""

    def __init__(self, specs: Sequence[ChannelSpec], tuners: int | None, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.tuners = tuners  # None: as many as the channels want
        self.order = [s.name for s in specs]
        self.channels = {s.name: ChannelState(s) for s in specs}

    # -- what the runner asks ---------------------------------------------------------------------

    def step(self, now: float) -> list[Action]:
        """Start every channel that may start at ``now`` (retries that are due, tuners that are free)."""
        out: list[Action] = []
        for name in self.order:
            st = self.channels[name]
            if st.state == "retrying" and st.retry_at is not None and now >= st.retry_at:
                st.state, st.retry_at = "queued", None
            if st.state != "queued":
                continue
            slot = None
            if st.spec.uses_tuner:
                slot = self._free_tuner()
                if slot is None:
                    continue  # waits for a tuner, in config order
            st.state, st.tuner, st.started_at = "running", slot, now
            st.starts += 1
            out.append(Start(name, st.spec, slot))
        return out

    def exited(self, name: str, outcome: Outcome, now: float, error: str | None = None) -> list[Action]:
        """The channel's tasks have all ended; what starts now."""
        st = self.channels.get(name)
        if st is None:
            return self.step(now)
        ran = now - st.started_at if st.started_at is not None else 0.0
        st.tuner, st.started_at = None, None
        if st.removing:
            del self.channels[name]
        elif st.pending is not None:
            st.spec, st.pending, st.failures, st.last_error, st.state = st.pending, None, 0, None, "queued"
        elif outcome is Outcome.STOPPED:
            st.state = "queued"  # stopped by the plan (fewer tuners): waits for one again
        elif outcome is Outcome.OK and st.spec.source is not None and not st.spec.uses_tuner:
            st.state = "ended"  # a file played to its end
        else:
            st.failures = 1 if ran >= self.policy.healthy_s else st.failures + 1
            ended = "tuner stream ended" if st.spec.uses_tuner else "the stream it pulls ended"
            st.last_error = error or (ended if outcome is Outcome.OK else outcome.value)
            st.state, st.retry_at = "retrying", now + self.policy.delay(st.failures)
        return self.step(now)

    def reload(self, specs: Sequence[ChannelSpec], tuners: int | None, now: float) -> list[Action]:
        """Apply a changed config: keep the unchanged, restart the changed, stop the removed, add the new."""
        out: list[Action] = []
        new = {s.name: s for s in specs}
        for name, old in list(self.channels.items()):
            if name not in new:
                if old.state in ("running", "stopping"):
                    old.removing = True
                    if old.state == "running":
                        old.state = "stopping"
                        out.append(Stop(name, "removed from the config"))
                else:
                    del self.channels[name]
        for name, spec in new.items():
            st = self.channels.get(name)
            if st is None:
                self.channels[name] = ChannelState(spec)
            elif st.removing:  # removed, then added back before it had stopped: it starts again
                st.removing, st.pending = False, spec
            elif st.state in ("running", "stopping") and (st.spec != spec or st.pending is not None):
                st.pending = spec  # (changed while already stopping for a change: the latest spec wins)
                if st.state == "running":
                    st.state = "stopping"
                    out.append(Stop(name, "changed in the config"))
            elif st.spec != spec:
                st.spec, st.failures, st.retry_at, st.last_error = spec, 0, None, None
                if st.state != "stopping":
                    st.state = "queued"
        self.order = [s.name for s in specs]
        self.tuners = tuners
        out += self._fit_tuners()
        return out + self.step(now)

    def stop_all(self) -> list[Stop]:
        """Stop everything that runs (the node is shutting down)."""
        out = []
        for name in self.order:
            st = self.channels.get(name)
            if st is not None and st.state == "running":
                st.state = "stopping"
                out.append(Stop(name, "node stopping"))
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`step` may start something that cannot start now (the earliest retry)."""
        times = [st.retry_at for st in self.channels.values() if st.state == "retrying" and st.retry_at is not None]
        return min(times) if times else None

    def running(self) -> list[str]:
        """Channels whose tasks run or are being stopped."""
        return [n for n, st in self.channels.items() if st.state in ("running", "stopping")]

    # -- tuners -----------------------------------------------------------------------------------

    def _held(self) -> set[int]:
        return {st.tuner for st in self.channels.values() if st.tuner is not None}

    def _free_tuner(self) -> int | None:
        held = self._held()
        limit = self.tuners if self.tuners is not None else len(self.channels)
        if len(held) >= limit:
            return None
        return next(i for i in range(limit + len(held)) if i not in held)

    def _fit_tuners(self) -> list[Action]:
        if self.tuners is None:
            return []
        out: list[Action] = []
        holders = [n for n in self.order if n in self.channels and self.channels[n].tuner is not None]
        for name in holders[self.tuners :]:
            st = self.channels[name]
            if st.state == "running":
                st.state = "stopping"
                out.append(Stop(name, f"only {self.tuners} tuners"))
        # a holder beyond the count keeps its slot until it has stopped; renumbering is not needed
        return out


__all__ = ["Action", "ChannelState", "Outcome", "Plan", "RetryPolicy", "Start", "Stop"]
