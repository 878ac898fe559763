//! signet-store (being written)
