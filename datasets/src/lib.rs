//! Converters from the public datasets to Beacon events, the synthetic
//! generator and the replay tool.
//!
//! Nothing is built here yet (issue 3). The crate exists so the workspace
//! layout and dependency direction are fixed from the start.
