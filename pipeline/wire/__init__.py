"""What both processes share: the event schema, the codec, the sockets and the spool file format."""

__all__: list[str] = []
