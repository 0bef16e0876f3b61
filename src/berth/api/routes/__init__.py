"""Engine API routes, one module per resource; each declares the backend protocol it needs."""
