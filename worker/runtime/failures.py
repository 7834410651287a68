"""Translate the clients' own exceptions (aiokafka, asyncpg, OSError) into the closed error hierarchy.

At start-up an operator needs one line naming the server and the variable to fix, not a client's traceback. Each
translation says which server (``host:port``, never the DSN with its password) and which setting is involved.
"""

from __future__ import annotations
