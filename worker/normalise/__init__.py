"""The pure core: contract events to the canonical model Claire relies on. No I/O library is imported here."""
