//! The CPU backend.

pub mod reference;
