"""Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's leaderelection does it.

`decide` is the whole protocol as a pure function of the observed Lease, our identity and the
time; `LeaderElector` only reads the Lease, writes what `decide` returned (a PUT carrying the
read's resourceVersion, so of two racing candidates exactly one wins) and reports changes.

Expiry follows the Lease's own fields: `renewTime + leaseDurationSeconds`. A standby wakes at that
instant rather than on its next poll, so a killed leader is replaced `leaseDuration` after its
last renewal. Safety comes from the gap between the leader's renew deadline (10 s: it stops
acting) and the lease duration (15 s: others may take over); clocks must agree to within it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import aiohttp

from modeldeploy import metrics, names
from modeldeploy.k8s import ApiError, Kube

log = logging.getLogger("modeldeploy.leader")


class Action(StrEnum):
    ACQUIRE = "acquire"  # the Lease is missing, free or expired: write `body` to take it
    RENEW = "renew"  # we hold it: write `body` (a fresh renewTime)
    STANDBY = "standby"  # someone else holds a live Lease: write nothing, look again later
    LOST = "lost"  # we were leading and someone else holds it now: stop at once


@dataclass(frozen=True)
class Decision:
    action: Action
    body: dict[str, Any] | None = None  # the Lease to create (none observed) or replace
    expires: datetime | None = None  # STANDBY: when the holder's Lease runs out


def format_time(moment: datetime) -> str:
    """RFC 3339 with microseconds, as the Lease's MicroTime fields are written."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def expiry(spec: dict[str, Any], default_duration_s: float) -> datetime | None:
    """When the holder's claim ends; None when nobody holds it (empty holder or no renewTime)."""
    renewed = parse_time(spec.get("renewTime"))
    if not spec.get("holderIdentity") or renewed is None:
        return None
    duration = spec.get("leaseDurationSeconds") or default_duration_s
    return renewed + timedelta(seconds=float(duration))


def decide(
    observed: dict[str, Any] | None,
    *,
    identity: str,
    name: str,
    namespace: str,
    now: datetime,
    lease_duration_s: float = names.LEASE_DURATION_S,
    was_leading: bool = False,
) -> Decision:
    """What to do with the Lease as observed. Never takes a live Lease from another holder."""
    stamp = format_time(now)
    duration = max(1, round(lease_duration_s))
    if observed is None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "holderIdentity": identity,
                "leaseDurationSeconds": duration,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        # Deleted under a leader: recreating it is safe, a standby's create would have won the
        # race and then we would see its identity (as client-go does).
        return Decision(Action.RENEW if was_leading else Action.ACQUIRE, body)
    spec = observed.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if holder == identity:
        renewed = {**spec, "renewTime": stamp, "leaseDurationSeconds": duration}
        renewed.setdefault("acquireTime", stamp)
        return Decision(Action.RENEW, {**observed, "spec": renewed})
    if was_leading:
        return Decision(Action.LOST)  # released by someone else, or taken: never fight
    expires = expiry(spec, lease_duration_s)
    if expires is not None and expires > now:
        return Decision(Action.STANDBY, expires=expires)
    taken = {
        **spec,
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": int(spec.get("leaseTransitions") or 0) + 1,
    }
    return Decision(Action.ACQUIRE, {**observed, "spec": taken})


def released(observed: dict[str, Any], identity: str, now: datetime) -> dict[str, Any] | None:
    """The Lease handed back on a graceful stop (as client-go's ReleaseOnCancel), or None when
    it is not ours to release. A standby then takes it on its next look."""
    spec = observed.get("spec") or {}
    if spec.get("holderIdentity") != identity:
        return None
    stamp = format_time(now)
    free = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": stamp}
    return {**observed, "spec": free}


def next_wake_s(decision: Decision, now: datetime, retry_period_s: float) -> float:
    """Seconds until the next look: the retry period, or sooner when the holder's Lease runs
    out first, so a takeover happens when the Lease expires and not up to a period later."""
    if decision.action is Action.STANDBY and decision.expires is not None:
        until = (decision.expires - now).total_seconds() + 0.01
        return max(0.0, min(retry_period_s, until))
    return retry_period_s


def default_identity() -> str:
    """Pod name (or hostname) plus a random suffix, so a restarted process is a new candidate."""
    base = os.environ.get(names.ENV_POD_NAME) or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def lease_namespace(flag: str | None, env: dict[str, str], watched: list[str]) -> str:
    """--leader-election-namespace, else $POD_NAMESPACE, else the first watched namespace that is
    a plain name (not a glob), else `default`."""
    if flag:
        return flag
    if pod_namespace := env.get(names.ENV_POD_NAMESPACE):
        return pod_namespace
    plain = [ns for ns in watched if not set(ns) & set("*?[!,")]
    return plain[0] if plain else names.LEADER_ELECTION_DEFAULT_NAMESPACE


def utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Keeps trying to hold the Lease; calls `on_change(True/False)` when leadership changes.

    Losing it (another holder seen, or no successful renewal within the renew deadline) calls
    `on_change(False)` and then `on_lost()`, and ends the loop: the caller exits the process.
    """

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_change: Callable[[bool], None],
        on_lost: Callable[[], None],
        lease_duration_s: float = names.LEASE_DURATION_S,
        renew_deadline_s: float = names.RENEW_DEADLINE_S,
        retry_period_s: float = names.RETRY_PERIOD_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.kube = kube
        self.namespace, self.name, self.identity = namespace, name, identity
        self.on_change, self.on_lost = on_change, on_lost
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self.clock = clock
        self.leading = False
        self._last_renewed = 0.0  # monotonic time of the last successful write while leading
        self._holder = ""  # the other holder we last logged, so a standby logs each one once

    async def run(self) -> None:
        try:
            await self._loop()
        except Exception as err:
            # A dead elector would leave a leader acting without renewing: stop instead.
            log.exception("leader election failed")
            self._lose(f"unexpected error: {err!r}")

    async def _loop(self) -> None:
        while True:
            decision = await self._attempt()
            if decision is not None and decision.action is Action.LOST:
                self._lose("another holder has the Lease")
                return
            if self.leading and time.monotonic() - self._last_renewed > self.renew_deadline_s:
                self._lose(f"no renewal within {self.renew_deadline_s:g}s")
                return
            wait = self.retry_period_s
            if decision is not None:
                wait = next_wake_s(decision, self.clock(), self.retry_period_s)
            await asyncio.sleep(wait)

    async def _attempt(self) -> Decision | None:
        """One read-decide-write round; None when the API failed or another candidate won."""
        if self.leading:  # a hung request must not outlive the renew deadline
            timeout = self.renew_deadline_s - (time.monotonic() - self._last_renewed)
        else:
            timeout = self.renew_deadline_s
        try:
            return await asyncio.wait_for(self._round(), timeout=max(timeout, 0.1))
        except ApiError as err:
            if not err.conflict:  # a conflict means another candidate wrote first: no news
                log.warning("lease %s/%s: %s", self.namespace, self.name, err)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            log.warning("lease %s/%s: %s", self.namespace, self.name, err or type(err).__name__)
        return None

    async def _round(self) -> Decision:
        observed = await self.kube.get("Lease", self.namespace, self.name)
        decision = decide(
            observed,
            identity=self.identity,
            name=self.name,
            namespace=self.namespace,
            now=self.clock(),
            lease_duration_s=self.lease_duration_s,
            was_leading=self.leading,
        )
        if decision.body is None:
            holder = ((observed or {}).get("spec") or {}).get("holderIdentity") or ""
            if decision.action is Action.STANDBY and holder != self._holder:
                log.info(
                    "standing by: Lease %s/%s is held by %s", self.namespace, self.name, holder
                )
                self._holder = holder
            return decision
        if observed is None:
            await self.kube.create(decision.body)
        else:
            await self.kube.replace(decision.body)
        self._last_renewed = time.monotonic()
        if not self.leading:
            spec = decision.body["spec"]
            log.info(
                "became leader (Lease %s/%s, identity %s, transitions %d)",
                self.namespace, self.name, self.identity, spec["leaseTransitions"],
            )  # fmt: skip
            self._set(True)
        return decision

    def _set(self, leading: bool) -> None:
        self.leading = leading
        metrics.LEADER.set(1 if leading else 0)
        self.on_change(leading)

    def _lose(self, why: str) -> None:
        log.error("lost leadership of Lease %s/%s: %s", self.namespace, self.name, why)
        self._set(False)
        self.on_lost()

    async def release(self) -> None:
        """Hand the Lease back (graceful stop, after reconciles have drained)."""
        if not self.leading:
            return
        self.leading = False
        metrics.LEADER.set(0)
        try:
            observed = await self.kube.get("Lease", self.namespace, self.name)
            body = released(observed, self.identity, self.clock()) if observed else None
            if body is not None:
                await self.kube.replace(body)
                log.info("released Lease %s/%s", self.namespace, self.name)
        except (ApiError, TimeoutError, aiohttp.ClientError, OSError) as err:
            # Not fatal: the Lease then expires on its own after its duration.
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, err)
