//! The state that processes share: its layout ([`layout`]) and the memory
//! mapping that holds it ([`map`]).

pub mod layout;
pub mod map;

pub use layout::Shared;
pub use map::Mapping;
