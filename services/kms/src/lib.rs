//! signet-kms (being written)
