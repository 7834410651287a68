"""The same harness tests again, in a module of their own: both modules create table `harness`, so together they
pass in either order only if each module really gets its own database."""

from tests.integration.test_harness_postgres import (  # noqa: F401 - collected here a second time, on purpose
    test_each_module_gets_an_empty_database,
    test_rows_round_trip_through_real_postgres,
)
