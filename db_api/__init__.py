"""The db-api: a gRPC data service, the only component that opens the database."""
