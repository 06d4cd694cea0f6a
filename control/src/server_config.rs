//! Server configuration file (being written).
