//! Backends. `cpu::reference` holds the readable reference ops that everything else is tested
//! against.

pub mod cpu;
