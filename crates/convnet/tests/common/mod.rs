//! Helpers shared by the library's integration tests.
// Each test file uses its own subset.
#![allow(dead_code)]

pub mod fuzz;
pub mod reference;
pub mod test_dir;
pub mod tiny;
