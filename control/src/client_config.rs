//! Client configurations (being written).
