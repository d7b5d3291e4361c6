"""A player (peer): its Distributor and Requestor processes and what they decide with.

- ``library`` (the .lib model, reading, writing), ``librarifier`` / ``hashing`` (making one),
  ``catalog`` (the one way a library is added to a player), ``state`` (state.db), ``identity``
- ``distributor_logic``: what the Distributor answers (frames in, ``Send``/``SendBook`` out, ``now`` passed in)
- ``distributor``: its socket loop (serves books with pread, tells the hub what it serves)
- ``requestor_logic``: what the Requestor decides (events in, actions out, ``now`` passed in), over
  ``picker`` (which book next), ``window`` (credit per remote), ``remote`` (a remote player's record),
  ``download`` (one library's progress and trust), ``ratelimit`` (token buckets), ``bitfield``
- ``requestor``: its socket loop; ``writer`` (verify and write a book), ``partfile`` (the partial file),
  ``syncer`` (fdatasync off the loop), ``hublink`` (the hub client in a worker thread)
"""
