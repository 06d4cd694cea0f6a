//! Host network setup (being written).
