"""The fault suite's parts: the corpus of odd records and streams, and the harness that runs scenarios."""
