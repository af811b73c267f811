//! conflux
