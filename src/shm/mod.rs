//! The state that processes share: its layout ([`layout`]), the memory
//! mapping that holds it ([`map`]), and its validated header ([`header`]).

pub mod header;
pub mod layout;
pub mod map;

pub use layout::Shared;
pub use map::Mapping;
