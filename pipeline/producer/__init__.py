"""Driver side: what runs in the Tune driver, the Train controller and the workers."""

# ``callback`` turns hooks into encoded events, ``stream`` numbers and routes them to a
# sender per collector shard (``shard_lookup`` asks for the map), ``sender`` owns the socket thread,
# ``send_buffer`` holds what it has not delivered (no I/O but the spool),
# ``sender_config`` declares its bounds, ``replay`` delivers a spool left behind.
# Imports Ray only in ``callback``.
__all__: list[str] = []
