"""The Carsys event contract."""
