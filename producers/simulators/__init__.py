"""Local stand-ins for the exchanges, for the demo, tests and benchmarks: nothing here talks to a real venue.

``fakevenue`` (a random walk speaking each venue's real WebSocket protocol) and ``fakerest`` (its REST
face), ``replayvenue`` (serves a recorded capture), ``localserver`` (the loopback server under both) and
``demo`` (what ``triarb up --demo`` starts), with the bundled demo session in ``data/demo``. The code that
connects to a real exchange is the rest of ``producers/``.
"""
