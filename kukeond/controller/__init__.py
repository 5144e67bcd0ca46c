"""Resource operations: realms, spaces, stacks, cells, containers, images, apply, reconcile."""
