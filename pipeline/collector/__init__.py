"""Collector side, its own small process importing no Ray or Tune: receive, order, fan out, write, watch."""

__all__: list[str] = []
