//! One module per device; each offers the same functions, called only from [`crate::storage::Storage`].

pub mod cpu;
pub mod cuda;
pub mod host_cache;
