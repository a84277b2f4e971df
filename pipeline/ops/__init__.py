"""The operator's side: tools that ask a running collector how it is doing."""

__all__: list[str] = []
