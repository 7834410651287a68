"""`make demo`: the worker end to end on a local stack (real Kafka + real PostgreSQL), then everything stopped."""

from __future__ import annotations

import sys

import stack as devstack


def main() -> int:
    stack = devstack.up("demo")
    try:
        print(f"Kafka at {stack.kafka_bootstrap}, PostgreSQL at {stack.database_url}")
        print("(the pipeline is being built: see the issues)")
    finally:
        stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
