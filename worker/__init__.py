"""carsys-ingest worker."""
