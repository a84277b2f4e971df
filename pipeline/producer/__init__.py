"""Driver side: what runs in the Tune driver, the Train controller and the workers.

``callback`` turns hooks into encoded events, ``sender`` owns the socket thread,
``replay`` delivers a spool left behind. Imports Ray only in ``callback``.
"""
