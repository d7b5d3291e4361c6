"""The hub (tracker): which players have which libraries, over one ROUTER socket.

- ``logic`` / ``handlers``: what a request does (bytes in, bytes out, ``now`` passed in)
- ``store`` (protocol and name -> backend table), ``store_sqlite``, ``store_memory``, ``index``
- ``broker``: the socket loop; ``pinger``: the hub's own reachability checks, in a thread
- ``serve`` / ``__main__``: run a hub (``python -m services.hub`` or ``emma hub``)
- ``client``: what players use to talk to hubs (``HubClient``)
"""
