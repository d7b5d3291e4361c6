"""A deterministic swarm simulator: the players' own logic classes over simulated links.

How it works. ``engine.Simulation`` runs one event queue (``events.py``) on a
simulated clock. Each player (``player.py``) is a ``RequestorLogic`` and a
``DistributorLogic``, the classes the services run, fed events and ``now``
exactly as their socket loops feed them; the hub (``hub.py``) is ``HubLogic``
over the memory store, asked with real protobuf requests. Nothing here decides
what to ask, serve or refuse: the simulator only carries messages (``network.py``:
control frames after a latency, books as flows sharing each player's upload and
download rate) and records what happened (``report.py``). ``scenario.py`` holds
what a run is: players, seeds, rates, latency, joins, churn, and the bound.
"""
