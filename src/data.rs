//! Data sets (to be written).
