//! Unit tests of weighted fuel, peeking, rate changes and give-backs, with
//! explicit times: no clock, no sleeping.

use super::*;
