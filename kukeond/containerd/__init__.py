"""The containerd runtime layer: one interface, a gRPC client and an in-memory fake."""
