//! signet-registry (being written)
