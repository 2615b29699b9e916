"""Contract tests: the same cases run against every transport of the API."""
