//! The datasets crate's integration tests: one binary, one module per suite
//! (one link of the dependency stack instead of one per file).

mod converters;
