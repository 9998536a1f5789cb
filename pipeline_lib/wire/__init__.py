"""What the db-api's client and server share: the generated gRPC messages (`proto`), the Arrow IPC
and BSON codecs, request building, errors and TLS files. Imports only `contract` and `settings`."""
