"""Which rules the normaliser applies, as one number stored with every row it produced.

Bump ``NORMALISER_VERSION`` in the same commit as any change to what the normaliser outputs for some input (a
rule, a note, a derived field), and add a line to CHANGELOG.md saying what changed. Rows written or re-normalised
by an older version then show up in ``WHERE normaliser_version < NORMALISER_VERSION``, and
``carsys-ingest renormalise`` brings them up to date from their source snapshots (docs/operations.md). A change
that cannot alter any output (speed, refactoring) keeps the number.
"""

from __future__ import annotations

from typing import Final

NORMALISER_VERSION: Final = 3
