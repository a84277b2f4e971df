"""Collector side: receive, order, fan out to sink queues, write; plus the services that watch it.

Nothing here imports Ray or Tune: the collector runs as its own small process.
"""
