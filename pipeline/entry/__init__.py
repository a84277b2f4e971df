"""Entry points: the ``tunebus`` command, its config file, the demo, the Ray actor."""

__all__: list[str] = []
