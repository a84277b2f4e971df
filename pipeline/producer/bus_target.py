"""Where a worker's events go: the collector address, Curve keys and sender settings, and how they travel."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import zmq.utils.z85

from pipeline.producer.sender import SenderConfig
from pipeline.wire.sockets import CurveKeys

__all__ = ["ENV_ADDRESS", "ENV_CURVE_SECRET_KEY", "ENV_CURVE_SERVER_KEY", "BusTarget", "from_env",
           "check_callback_args", "given_curve", "lookup_target", "publish_target"]

log = logging.getLogger(__name__)

ENV_ADDRESS = "TUNEBUS_ADDRESS"
ENV_CURVE_SECRET_KEY = "TUNEBUS_CURVE_SECRET_KEY"
ENV_CURVE_SERVER_KEY = "TUNEBUS_CURVE_SERVER_KEY"
KV_NAMESPACE = "tunebus"


@dataclass(frozen=True, slots=True)
class BusTarget:
    """A collector to send to, the keys to talk to it, and the sender's bounds.

    The Tune driver's ``BusCallback.setup`` publishes a ``BusTarget`` in Ray's internal
    key-value store under the Ray job id (a trainable's actors, the Train controller and
    its workers all belong to the driver's job); a worker reads it once, lazily, at its
    first ``pipeline.log``. ``TUNEBUS_ADDRESS`` (with ``TUNEBUS_CURVE_SECRET_KEY`` and
    ``TUNEBUS_CURVE_SERVER_KEY``, key file paths) overrides it. The Train callback hands
    the same target to its workers directly (``pipeline.producer.train_callback``). The
    Curve keys travel with the address, whichever way the driver was given them (key
    files, or a Ray collector actor's ``curve``), and so does the shard map the driver
    found, so a driver and its workers route every trial to the same shard.
    """

    address: str
    curve: CurveKeys | None = None
    sender: SenderConfig = dataclasses.field(default_factory=SenderConfig)
    shards: tuple[str, ...] = ()
    """Every collector shard's bus address in shard order, as the driver's lookup found them
    (``(address,)``: one). Empty: not looked up yet (a ``TUNEBUS_ADDRESS`` target, a
    ``TrainBusCallback``'s before its first event): the producer asks ``address`` itself."""

    def __setstate__(self, state: list[Any]) -> None:
        """A pickle of before the shard map (three fields) sends every trial to its address."""
        values = dict(zip([f.name for f in dataclasses.fields(self)], state, strict=False))
        values.setdefault("shards", (values["address"],))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __getstate__(self) -> list[Any]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    def to_json(self) -> bytes:
        curve = None
        if self.curve is not None:
            curve = [_z85(k) for k in (self.curve.public, self.curve.secret, self.curve.server_public)]
        sender = {f.name: getattr(self.sender, f.name) for f in dataclasses.fields(self.sender)}
        sender["when_full"] = self.sender.when_full.value
        return json.dumps({"address": self.address, "curve": curve, "sender": sender,
                           "shards": list(self.shards)}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BusTarget:
        state = json.loads(data)
        curve = state.get("curve")
        keys = None
        if curve:
            public, secret, server = curve
            keys = CurveKeys(public.encode(), secret.encode(), server.encode() if server else None)
        address = str(state["address"])
        shards = tuple(str(a) for a in state.get("shards", (address,)))  # published before shard maps: one
        return cls(address, keys, SenderConfig(**state.get("sender", {})), shards)


def _z85(key: bytes | None) -> str | None:
    """A key as text: z85 as given, or a raw 32-byte key encoded."""
    if key is None:
        return None
    return zmq.utils.z85.encode(key).decode() if len(key) == 32 else key.decode()


ADDRESS_SCHEMES = ("tcp://", "ipc://", "inproc://")


def check_callback_args(address: object, end_timeout_s: float, shard_lookup_timeout_s: float = 0.0) -> None:
    """What every callback checks of its collector address and waits; one-line ValueErrors."""
    if not isinstance(address, str) or not address.startswith(ADDRESS_SCHEMES):
        raise ValueError(f"address must start with one of {ADDRESS_SCHEMES}, got {address!r}")
    if not end_timeout_s >= 0:
        raise ValueError(f"end_timeout_s must be >= 0, got {end_timeout_s!r}")
    if not (shard_lookup_timeout_s >= 0 and math.isfinite(shard_lookup_timeout_s)):
        raise ValueError(f"shard_lookup_timeout_s must be >= 0 and finite, got {shard_lookup_timeout_s!r}")


def given_curve(curve: CurveKeys | None, secret_file: str | None,
                server_file: str | None) -> CurveKeys | None:
    """A callback's CurveZMQ keys, given as keys (``curve``) or as ``tunebus keygen`` files; checked."""
    if curve is not None:
        if secret_file is not None or server_file is not None:
            raise ValueError("give CurveZMQ keys as curve= or as key files, not both")
        if not isinstance(curve, CurveKeys) or curve.server_public is None:
            raise ValueError("curve must be CurveKeys with the collector's public key (server_public), "
                             "e.g. start_collector_on_ray(...).curve")
        return curve
    if (secret_file is None) != (server_file is None):
        raise ValueError("CurveZMQ needs both curve_secret_key and curve_server_key")
    return CurveKeys.load(secret_file, server_file) if secret_file else None


def from_env() -> BusTarget | None:
    """The target ``TUNEBUS_ADDRESS`` (and the Curve key file variables) name, if set."""
    address = os.environ.get(ENV_ADDRESS)
    if not address:
        return None
    secret, server = os.environ.get(ENV_CURVE_SECRET_KEY), os.environ.get(ENV_CURVE_SERVER_KEY)
    return BusTarget(address, CurveKeys.load(secret, server) if secret else None)


def _job_key() -> bytes | None:
    import ray

    if not ray.is_initialized():
        return None
    return f"target:{ray.get_runtime_context().get_job_id()}".encode()


def publish_target(target: BusTarget) -> bool:
    """Put ``target`` where this Ray job's workers look for it; False without Ray running."""
    from ray.experimental import internal_kv

    key = _job_key()
    if key is None:
        return False
    internal_kv._internal_kv_put(key, target.to_json(), overwrite=True, namespace=KV_NAMESPACE)
    return True


def lookup_target() -> BusTarget | None:
    """The environment's target, else the one this Ray job's driver published, else None."""
    target = from_env()
    if target is not None:
        return target
    try:
        from ray.experimental import internal_kv

        key = _job_key()
        data = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE) if key else None
    except Exception as exc:  # noqa: BLE001 - no Ray, or no GCS: logging is off, training goes on
        log.debug("tunebus: no published target (%s)", exc)
        return None
    return BusTarget.from_json(data) if data else None
